"""Build every method's vector from one task's build examples and compare them at equal KL."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from interp.config import takes_config

from .build import GrainsConfig, grains, mean_difference
from .evaluate import DEFAULT_KL_TARGETS, SteeringComparison, SteeringTask, evaluate_steering
from .features import FeatureSteering, feature_vector

BUILDERS = ("mean_diff", "grains", "sae", "snmf")


def build_vector(model, method: str, task: SteeringTask, layer: int, grains_config: GrainsConfig | None = None,
                 feature_config: FeatureSteering | None = None):
    """The ``method`` vector from ``task.build`` at ``layer`` (one of :data:`BUILDERS`); ``grains_config`` is
    read by ``grains``, ``feature_config`` by ``sae`` and ``snmf``."""
    b = task.build
    if method == "mean_diff":
        return mean_difference(model, [r["prompt"] + r["preferred"] for r in b],
                               [r["prompt"] + r["dispreferred"] for r in b], layer)
    if method == "grains":
        return grains(model, [r["prompt"] for r in b], [r["preferred"] for r in b], [r["dispreferred"] for r in b],
                      layer, config=grains_config)
    if method in ("sae", "snmf"):
        return feature_vector(model, method, task, layer, config=feature_config)
    raise ValueError(f"unknown steering method {method!r}; known: {', '.join(BUILDERS)}")


@dataclass(frozen=True)
class SteeringCompareConfig:
    """The settings of :func:`compare_methods`."""

    methods: Sequence[str] = ("mean_diff", "grains")
    """Builders compared (of :data:`BUILDERS`)."""
    kl_targets: Sequence[float] = DEFAULT_KL_TARGETS
    """Next-token KL targets every vector is calibrated to."""
    n_new: int = 12
    """Tokens generated per evaluation prompt."""
    seed: int = 0
    grains: GrainsConfig = field(default_factory=GrainsConfig)
    features: FeatureSteering = field(default_factory=FeatureSteering)
    """Read by the ``sae`` and ``snmf`` builders."""


@takes_config(SteeringCompareConfig)
def compare_methods(model, task: SteeringTask, layer: int, *, config: SteeringCompareConfig) -> SteeringComparison:
    """Build each method's vector on ``task.build`` and evaluate all of them on ``task.eval`` at equal KL."""
    c = config
    for m in c.methods:
        if m not in BUILDERS:
            raise ValueError(f"unknown steering method {m!r}; known: {', '.join(BUILDERS)}")
    vecs = {m: build_vector(model, m, task, layer, c.grains, c.features) for m in c.methods}
    res = evaluate_steering(model, vecs, task, c.kl_targets, n_new=c.n_new, seed=c.seed)
    res.config.update({"layer": layer, "k": c.grains.k, "ig_steps": c.grains.steps, "methods": list(c.methods)})
    return res
