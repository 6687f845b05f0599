"""Circuits: prune attribution scores to a faithful component set, verify it, name head roles."""

from .discovery import Circuit, CircuitConfig, complement_metric, discover_circuit, rank_components
from .pipeline import METHODS, run_circuit, run_method, write_outputs
from .roles import HeadRoles, classify_heads

__all__ = ["Circuit", "CircuitConfig", "HeadRoles", "METHODS", "classify_heads", "complement_metric",
           "discover_circuit", "rank_components", "run_circuit", "run_method", "write_outputs"]
