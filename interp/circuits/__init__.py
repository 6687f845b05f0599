"""Circuits: find a faithful component set (greedy pruning by real patching, or top-k of a ranking),
verify it on held-out prompts, name head roles."""

from .discovery import Circuit, CircuitConfig, complement_metric, discover_circuit, rank_components
from .pipeline import METHODS, SEARCHES, run_circuit, run_method, write_outputs
from .roles import HeadRoles, classify_heads
from .search import SearchConfig, SearchedCircuit, circuit_faithfulness, search_circuit

__all__ = ["Circuit", "CircuitConfig", "HeadRoles", "METHODS", "SEARCHES", "SearchConfig", "SearchedCircuit",
           "circuit_faithfulness", "classify_heads", "complement_metric", "discover_circuit", "rank_components",
           "run_circuit", "run_method", "search_circuit", "write_outputs"]
