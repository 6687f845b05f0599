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
from dataclasses import dataclass
from typing import Sequence

from interp.config import takes_config
from interp.results import check_fields

from .components import (AttributionResult, cache_components, component_set, directed_result, directed_runs,
                         linear_scores)

DIRECTIONS = ("denoise", "noise")


@dataclass(frozen=True)
class AtPConfig:
    """Settings of :func:`attribution_patching` (and, with the LRP rules, of RelP's ``RelPConfig``)."""

    direction: str = "denoise"
    """``denoise``: gradient at the corrupted run, clean - corrupted activations (patching source
    ``denoise``); ``noise``: gradient at the clean run, corrupted - clean (source ``noise``)."""

    def __post_init__(self):
        check_fields(self, {"direction": DIRECTIONS})


def gradient_patching(model, task, components: Sequence[str], per_position, cfg: AtPConfig, method: str,
                      extra_fwd=(), record: dict | None = None) -> AttributionResult:
    """(a_source - a_base) . grad m at the base run, for every component (see module doc); ``extra_fwd``:
    forward hooks that shape the backward (RelP's rules), ``record``: settings for ``result.config``."""
    types, per_pos = component_set(components, per_position)
    t0 = time.perf_counter()
    src, base = directed_runs(task, cfg.direction)
    acts_src, _, logits_src = cache_components(model, src, types)
    acts_base, grads, m_base = cache_components(model, base, types, metric=task.metric, extra_fwd=extra_fwd,
                                                 method=method)
    config = {"direction": cfg.direction, "components": list(components), **(record or {})}
    return directed_result(method, cfg.direction, t0, task.metric(logits_src), m_base, per_pos, config=config,
                           scores=linear_scores(types, acts_src, acts_base, grads, per_pos))


@takes_config(AtPConfig)
def attribution_patching(model, task, components: Sequence[str] = ("resid", "attn_head", "mlp"),
                         per_position=False, *, config: AtPConfig) -> AttributionResult:
    """AtP scores for every component: 2 forward + 1 backward pass (see module doc).  Settings: the
    fields of :class:`AtPConfig` as keywords (``direction``), or ``config=``; not both."""
    return gradient_patching(model, task, components, per_position, config, method="atp")
