"""Attribution: scores of which components and edges carry a behaviour (patching, AtP, RelP, integrated
gradients, EAP/EAP-IG edge scores, edge patching).  Circuits built from these scores live in interp.circuits."""

from .atp import AtPConfig, attribution_patching, gradient_patching
from .components import (COMPONENT_TYPES, AttributionResult, ComponentType, cache_components, component_types,
                         register_component_type)
from .captum_ig import captum_layer_ig
from .edge_patching import EdgePatchResult, edge_patching
from .edges import EdgeGraph, EdgeScores, edge_attribution, edge_graph
from .ig import IGConfig, IGResult, LayerIGConfig, integrated_gradients, layer_integrated_gradients, quadrature
from .lrp_rules import LRP_RULES, RULE_SETS, LRPRule, lrp_rules, register_rule, resolve_rules
from .patching import (PATCH_SOURCES, PatchingConfig, activation_patching, complement_metric, run_with_masks)
from .relp import RelPConfig, relevance_patching

__all__ = [
    "AtPConfig", "IGConfig", "IGResult", "LayerIGConfig", "captum_layer_ig", "integrated_gradients",
    "layer_integrated_gradients", "quadrature",
    "COMPONENT_TYPES", "LRP_RULES", "PATCH_SOURCES", "RULE_SETS", "AttributionResult", "ComponentType",
    "LRPRule", "PatchingConfig", "RelPConfig", "activation_patching", "attribution_patching",
    "cache_components", "complement_metric", "component_types", "gradient_patching", "lrp_rules",
    "EdgeGraph", "EdgePatchResult", "EdgeScores", "edge_attribution", "edge_graph", "edge_patching",
    "register_component_type", "register_rule", "relevance_patching", "resolve_rules", "run_with_masks",
]
