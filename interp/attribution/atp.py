"""Attribution patching (AtP): a first-order Taylor estimate of activation patching.

Algorithm (Nanda 2023; Kramar et al. 2024; docs/methods.md, Attribution patching (AtP)), denoising form:
    AtP(n) = (a_n(x_clean) - a_n(x_corrupt)) . dm/da_n |_(x_corrupt)
1. Forward the clean prompts, caching every component activation.
2. Forward the corrupted prompts caching activations, then one backward pass of sum_b m_b
   gives dm/da_n at every component at once.
3. Multiply the activation difference by the gradient, sum over the non-unit axes
   (d_model / d_head), average over the batch (optionally keep positions).
The noising form swaps the roles: (a_n(x_corrupt) - a_n(x_clean)) . dm/da_n |_(x_clean).

:func:`gradient_patching` is the shared engine; RelP (relp.py) is the same call made while
LRP rules modify the backward pass.

Cost: 2 forward passes + 1 backward pass for all components together.
Memory: activations of both runs and the gradients at every component hook (see components.py).
"""

from __future__ import annotations

import time
from typing import Sequence

from .components import AttributionResult, cache_components, component_types, linear_scores, per_position_set

DIRECTIONS = ("denoise", "noise")


def gradient_patching(model, task, components: Sequence[str], per_position, direction: str,
                      method: str, extra_fwd=(), config: dict | None = None) -> AttributionResult:
    """(a_source - a_base) . grad m at the base run, for every component (see module doc)."""
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}; choose from {DIRECTIONS}")
    types = component_types(components)
    per_pos = per_position_set(per_position, types)
    t0 = time.perf_counter()
    base, src = (task.corrupt, task.clean) if direction == "denoise" else (task.clean, task.corrupt)
    acts_src, _, logits_src = cache_components(model, src, types)
    acts_base, grads, m_base = cache_components(model, base, types, metric=task.metric, extra_fwd=extra_fwd,
                                                 method=method)
    scores = linear_scores(types, acts_src, acts_base, grads, per_pos)
    seconds = time.perf_counter() - t0
    m_src = task.metric(logits_src).float().mean().item()
    m_b = m_base.float().mean().item()
    m_clean, m_corr = (m_src, m_b) if direction == "denoise" else (m_b, m_src)
    return AttributionResult(method=method, scores=scores, seconds=seconds, metric_clean=m_clean,
                             metric_corrupt=m_corr, per_position=sorted(per_pos),
                             config={"direction": direction, "components": list(components), **(config or {})})


def attribution_patching(model, task, components: Sequence[str] = ("resid", "attn_head", "mlp"),
                         per_position=False, direction: str = "denoise") -> AttributionResult:
    """AtP scores for every component: 2 forward + 1 backward pass (see module doc)."""
    return gradient_patching(model, task, components, per_position, direction, method="atp")
