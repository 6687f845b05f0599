"""interp: a mechanistic-interpretability workbench.

Models are TransformerLens ``TransformerBridge`` objects; TransformerLens hook names
(``blocks.8.hook_resid_post``) address every activation in the store, the analyses and
the reports.
"""

from interp.models import hook_names, list_models, load_model, resolve_hooks, scoped_hooks

__version__ = "0.1.0"
__all__ = ["hook_names", "list_models", "load_model", "resolve_hooks", "scoped_hooks", "__version__"]
