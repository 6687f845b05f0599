"""Models: loading real and tiny models as TransformerBridges, and addressing their hooks."""

from .hooks import HookNotFoundError, hook_names, resolve_hooks, scoped_hooks
from .load import DEFAULT_MODEL, ModelInfo, ModelNotFoundError, list_models, load_model, model_name, weight_hash

__all__ = [
    "DEFAULT_MODEL", "HookNotFoundError", "ModelInfo", "ModelNotFoundError", "hook_names",
    "list_models", "load_model", "model_name", "resolve_hooks", "scoped_hooks", "weight_hash",
]
