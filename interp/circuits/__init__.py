"""Circuits: one :class:`Circuit` type for component and edge circuits, one family of faithfulness
functions, and the searches and analyses that produce them (top-k and greedy component circuits,
edge circuits from EAP scores, transcoder feature circuits, discrete-SAE circuits, IOI head roles)."""

from .circuit import Circuit, as_edge_mask, component_edges, greedy_circuit, prune_circuit, top_n_circuit
from .discovery import CircuitConfig, SearchConfig, discover_circuit, rank_components, search_circuit
from .edge_circuits import EdgeResult, EdgeRunConfig, run_edges
from .faithfulness import (ComponentPatcher, Faithfulness, FaithfulnessCurve, circuit_faithfulness,
                           edge_circuit_faithfulness, faithfulness_curve)
from .pipeline import METHODS, SEARCHES, CircuitRunConfig, run_circuit, run_method
from .roles import HeadRoles, classify_heads

__all__ = [
    "Circuit", "CircuitConfig", "CircuitRunConfig", "ComponentPatcher", "EdgeResult", "EdgeRunConfig", "Faithfulness",
    "FaithfulnessCurve", "HeadRoles", "METHODS", "SEARCHES", "SearchConfig", "as_edge_mask", "circuit_faithfulness",
    "classify_heads", "component_edges", "discover_circuit", "edge_circuit_faithfulness", "faithfulness_curve",
    "greedy_circuit", "prune_circuit", "rank_components", "run_circuit", "run_edges", "run_method", "search_circuit",
    "top_n_circuit"]
