"""Build every method's vector from one task's build examples and compare them at equal KL."""

from __future__ import annotations

from typing import Sequence

from .build import grains, mean_difference
from .evaluate import DEFAULT_KL_TARGETS, SteeringComparison, SteeringTask, evaluate_steering

BUILDERS = ("mean_diff", "grains", "sae", "snmf")


def build_vector(model, method: str, task: SteeringTask, layer: int, k: int = 3, steps: int = 20, **kw):
    """The ``method`` vector from ``task.build`` at ``layer`` (one of :data:`BUILDERS`)."""
    b = task.build
    if method == "mean_diff":
        return mean_difference(model, [r["prompt"] + r["preferred"] for r in b],
                               [r["prompt"] + r["dispreferred"] for r in b], layer)
    if method == "grains":
        return grains(model, [r["prompt"] for r in b], [r["preferred"] for r in b], [r["dispreferred"] for r in b],
                      layer, k=k, steps=steps)
    if method in ("sae", "snmf"):
        from .features import feature_vector

        return feature_vector(model, method, task, layer, **kw)
    raise ValueError(f"unknown steering method {method!r}; known: {', '.join(BUILDERS)}")


def compare_methods(model, task: SteeringTask, layer: int, methods: Sequence[str] = ("mean_diff", "grains"),
                    kl_targets: Sequence[float] = DEFAULT_KL_TARGETS, n_new: int = 12, k: int = 3, steps: int = 20,
                    seed: int = 0, feature_kw: dict | None = None) -> SteeringComparison:
    """Build each method's vector on ``task.build`` and evaluate all of them on ``task.eval`` at equal KL."""
    for m in methods:
        if m not in BUILDERS:
            raise ValueError(f"unknown steering method {m!r}; known: {', '.join(BUILDERS)}")
    vecs = {m: build_vector(model, m, task, layer, k=k, steps=steps, **(feature_kw or {}) if m in ("sae", "snmf")
                            else {}) for m in methods}
    res = evaluate_steering(model, vecs, task, kl_targets, n_new=n_new, seed=seed)
    res.config.update({"layer": layer, "k": k, "ig_steps": steps, "methods": list(methods)})
    return res
