"""Extreme-token phenomena: attention sinks, active-dormant heads, massive activations and their
training dynamics (docs/methods.md, Extreme-token phenomena).  The Bigram-Backcopy toy model that shows the mechanism is in
:mod:`interp.toy.bigram_backcopy`.

    from interp.phenomena import default_domains, active_dormant, massive_stats, massive_ablation
    res = active_dormant(model, default_domains())          # sink/value/residual stats + ablations
    st = massive_stats(model, tokens); ab = massive_ablation(model, tokens, st)
    dyn = checkpoint_dynamics("runs/bb", tokens_for)        # five-parameter fit per layer
"""

from .domains import Domain, default_domains, domain_tokens, domains_from_dir
from .dormant import DormantConfig, DormantResult, ablation_losses, active_dormant
from .dynamics import DynamicsFit, checkpoint_dynamics, fit_dynamics
from .massive import MassiveAblation, MassiveConfig, MassiveStats, massive_ablation, massive_stats
from .sinks import SinkStats, resid_peak_from_store, sink_scores_from_store, sink_stats

__all__ = [
    "Domain", "DormantConfig", "DormantResult", "DynamicsFit", "MassiveAblation", "MassiveConfig", "MassiveStats",
    "SinkStats", "ablation_losses", "active_dormant", "checkpoint_dynamics", "default_domains", "domain_tokens",
    "domains_from_dir", "fit_dynamics", "massive_ablation", "massive_stats", "resid_peak_from_store",
    "sink_scores_from_store", "sink_stats",
]
