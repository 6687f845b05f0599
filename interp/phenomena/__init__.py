"""Extreme-token phenomena: attention sinks, active-dormant heads, massive activations and their
training dynamics (docs/methods.md, Extreme-token phenomena).  The Bigram-Backcopy toy model that shows the mechanism is in
:mod:`interp.toy.bigram_backcopy`.

    from interp.phenomena import default_domains, active_dormant, massive_run, sink_stats
    sink_stats(model, tokens)                     # SinkStats: sink score, value drain, residual peak
    res = active_dormant(model, default_domains()) # DormantResult: per-domain stats + head ablations
    res.report().write("sinks.html")              # or end a notebook cell with `res`
    massive_run(model)                            # MassiveResult: detection + zero/mean ablation
    massive_run(checkpoints="runs/bb")            # ... plus the five-parameter dynamics fit per layer

Every analysis returns a typed result (:mod:`interp.results`): ``summary()``, ``report()``,
``save()`` / ``load_result``.
"""

from .domains import Domain, default_domains, domain_tokens, domains_from_dir
from .dormant import DormantConfig, DormantResult, active_dormant
from .dynamics import DynamicsFit, checkpoint_dynamics, fit_dynamics
from .massive import (MassiveAblation, MassiveConfig, MassiveResult, MassiveStats, massive_ablation, massive_run,
                      massive_stats)
from .sinks import (SinkStats, StoreSinks, resid_peak_from_store, sink_scores_from_store, sink_stats,
                    store_position_stats)

__all__ = [
    "Domain", "DormantConfig", "DormantResult", "DynamicsFit", "MassiveAblation", "MassiveConfig", "MassiveResult",
    "MassiveStats",
    "SinkStats", "StoreSinks", "active_dormant", "checkpoint_dynamics", "default_domains", "domain_tokens",
    "domains_from_dir", "fit_dynamics", "massive_ablation", "massive_run", "massive_stats", "resid_peak_from_store",
    "sink_scores_from_store", "sink_stats", "store_position_stats",
]
