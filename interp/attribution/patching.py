"""Activation patching, the ground truth: many patches per forward pass.

Algorithm (denoising, Meng et al. 2022; Wang et al. 2022; docs/methods.md, Activation patching):
    AP(n) = m(run(x_corrupt | a_n <- a_n(x_clean))) - m(x_corrupt)
1. Cache every component activation on the *source* run (clean for denoising).
2. Stack k copies of the *base* batch (corrupt for denoising) into one ``[k*B, T]`` batch.
3. Copy i carries patch i: a boolean mask ``[k, L, *units(, T)]`` per component type marks which
   unit (and position) of which layer takes the source value; one hook per layer applies
   ``torch.where(mask, source, act)``.  One forward pass scores k components.
4. score_i = mean_b m(copy i)_b - mean_b m(base)_b.

Patch sources are small siblings in :data:`PATCH_SOURCES`: ``denoise`` (clean into corrupt),
``noise`` (corrupt into clean), ``mean`` (batch-mean clean activation into clean, i.e.
mean-ablation), ``zero`` (zeros into clean, zero-ablation).

:func:`run_with_masks` is the primitive underneath, also used by circuit discovery to run the
model with everything *outside* a component set patched (:func:`complement_metric`).

Design: many patches share one batched forward, and exact shortcuts (fastpath.py; off with
``fast=False`` or ``INTERP_REFERENCE=1``) skip what the metric cannot see: the blocks before the first
layer patched in a pass see the base run's values in every copy, so they are replayed from the base run's
cache; when the metric reads only the last position (checked on the base run's logits), only that
position is unembedded (a large-vocabulary model spends much of a forward there).

Cost: ``n_components / k`` forward passes of ``k*B*T`` tokens (``k`` from ``max_tokens``), each from the
first patched block on.
Memory: the source cache (see components.py) plus one ``k*B*T`` forward.
"""

from __future__ import annotations

import itertools
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Sequence

import torch

from interp.config import takes_config
from interp.fastpath import use_fast
from interp.models import scoped_hooks
from interp.results import check_fields

from .components import AttributionResult, ComponentType, cache_components, component_set
from .fastpath import PrefixCache, fast_forward, reads_last_position_only


PATCH_SOURCES = {"denoise": "corrupt", "noise": "clean", "mean": "clean", "zero": "clean"}
"""Patch source -> the run that is patched (what goes into it: the module doc)."""


def _source_values(source: str, clean: torch.Tensor, corrupt: torch.Tensor) -> torch.Tensor:
    """The values patch source ``source`` puts in, from one hook's clean and corrupted activations."""
    if source == "mean":
        return clean.mean(0, keepdim=True).expand_as(clean)
    if source == "zero":
        return torch.zeros_like(clean)
    return clean if source == "denoise" else corrupt


@dataclass(frozen=True)
class PatchingConfig:
    """Settings of :func:`activation_patching`."""

    source: str = "denoise"
    """One of ``denoise``, ``noise``, ``mean``, ``zero`` (see ``PATCH_SOURCES``)."""
    max_tokens: int = 4096
    """Tokens per forward pass; sets how many patches share one pass (k = max_tokens // (B*T))."""
    progress: bool = True
    """Show a tqdm progress bar."""
    fast: bool | None = None
    """Skip work the metric cannot see (replayed prefix blocks, last-position logits); None: on unless
    ``INTERP_REFERENCE=1``.  False runs every copy's full forward (the reference)."""

    def __post_init__(self):
        check_fields(self, {"source": PATCH_SOURCES}, {"max_tokens": 1})


def run_with_masks(
    model,
    tokens: torch.Tensor,
    sources: dict[str, list[torch.Tensor]],
    masks: dict[str, torch.Tensor],
    types: Sequence[ComponentType],
    prefix: PrefixCache | None = None,
    last_only: bool = False,
) -> torch.Tensor:
    """Logits of ``k`` stacked copies of ``tokens`` ``[B, T]``, copy i patched where ``masks`` say.

    ``sources[type][layer]`` is ``[B, T, *units, *rest]``; ``masks[type]`` is bool
    ``[k, L, *units]`` (all positions) or ``[k, L, *units, T]`` (per position).  Returns logits
    ``[k*B, T, V]`` (``[k*B, 1, V]`` with ``last_only``).  ``prefix`` (captured on ``tokens``) replays
    the blocks before the first patched layer; ``last_only`` unembeds only the last position
    (fastpath.py); neither changes a value the metric reads.
    """
    B = tokens.shape[0]
    k = next(iter(masks.values())).shape[0]
    device = next(model.parameters()).device
    hooks = []
    patched = []  # the layers the hooks patch: the blocks before the first are replayed
    for t in types:
        if t.name not in masks:
            continue
        mask_t = masks[t.name].to(device)
        per_pos = mask_t.ndim == 2 + t.unit_axes + 1
        for l in range(model.cfg.n_layers):
            m_l = mask_t[:, l]
            if not m_l.any():
                continue

            src = sources[t.name][l]
            m = m_l.movedim(-1, 1) if per_pos else m_l.unsqueeze(1)  # [k, T|1, *units]
            m = m.reshape(k, 1, *m.shape[1:], *[1] * (src.ndim - 2 - t.unit_axes))  # [k, 1, T|1, *units, 1..]

            def fn(act, hook, m=m, src=src):
                a = act.reshape(k, B, *act.shape[1:])
                return torch.where(m, src.to(act.device, act.dtype).unsqueeze(0), a).reshape(act.shape)

            hooks.append((t.hook_name(l), fn))
            patched.append(l)
    first = min(patched, default=0)
    with torch.no_grad(), scoped_hooks(model, fwd=hooks), fast_forward(model, prefix, k, first, last_only):
        return model(tokens.to(device).repeat(k, 1))


@takes_config(PatchingConfig)
def activation_patching(model, task, components: Sequence[str] = ("resid", "attn_head", "mlp"),
                        per_position=False, *, config: PatchingConfig) -> AttributionResult:
    """Patch every component one at a time (batched k per pass) and record the metric change.

    Settings: the fields of :class:`PatchingConfig` as keywords (``source``, ``max_tokens``,
    ``progress``, ``fast``), or ``config=``; not both.
    """
    from tqdm.auto import tqdm

    cfg = config
    types, per_pos = component_set(components, per_position)
    base = PATCH_SOURCES[cfg.source]
    t0 = time.perf_counter()
    fast = use_fast(cfg.fast)
    prefix = PrefixCache(model) if fast else None
    runs = {}  # clean / corrupt: (component activations, logits)
    for run in ("clean", "corrupt"):
        with prefix.capture() if fast and base == run else nullcontext():
            runs[run] = cache_components(model, getattr(task, run), types)[::2]
    acts = {run: a for run, (a, _) in runs.items()}
    m = {run: task.metric(logits).float().mean().item() for run, (_, logits) in runs.items()}
    last = fast and reads_last_position_only(task.metric, runs[base][1])
    base_tokens = getattr(task, base)
    L = model.cfg.n_layers
    sources = {t.name: [_source_values(cfg.source, acts["clean"][t.name][l], acts["corrupt"][t.name][l])
                        for l in range(L)] for t in types}
    B, T = base_tokens.shape
    k_max = max(1, cfg.max_tokens // (B * T))
    shapes = {t.name: tuple(acts["clean"][t.name][0].shape[2:2 + t.unit_axes])
              + ((T,) if t.name in per_pos else ()) for t in types}
    jobs = [(t, (l, *idx)) for t in types for l in range(L) for idx in itertools.product(*map(range, shapes[t.name]))]
    scores = {t.name: torch.zeros(L, *shapes[t.name]) for t in types}
    with tqdm(total=len(jobs), desc=f"patching ({cfg.source})", leave=False, disable=not cfg.progress) as bar:
        for start in range(0, len(jobs), k_max):
            chunk = jobs[start:start + k_max]
            masks = {t.name: torch.zeros(len(chunk), L, *shapes[t.name], dtype=torch.bool) for t in types}
            for i, (t, cell) in enumerate(chunk):
                masks[t.name][(i, *cell)] = True
            out = run_with_masks(model, base_tokens, sources, masks, types, prefix=prefix, last_only=last)
            out = task.metric(out).float().reshape(len(chunk), B).mean(1).cpu()
            for i, (t, cell) in enumerate(chunk):
                scores[t.name][cell] = out[i] - m[base]
            bar.update(len(chunk))
    return AttributionResult(
        method="patch", scores=scores, seconds=time.perf_counter() - t0, metric_clean=m["clean"],
        metric_corrupt=m["corrupt"], per_position=sorted(per_pos),
        config={"source": cfg.source, "max_tokens": cfg.max_tokens, "patches_per_pass": k_max,
                "components": list(components),
                "forward": "full" if not fast else "prefix replay" + (" + last-position logits" if last else "")},
    )


def complement_metric(model, task, keep_masks: Sequence[dict[str, torch.Tensor]],
                      types: Sequence[ComponentType], source: str = "corrupt",
                      acts: tuple | None = None, max_tokens: int = 4096) -> torch.Tensor:
    """Batch-mean metric of the clean run with every component *outside* each keep set patched.

    ``keep_masks[j][type]`` is bool ``[L, *units]`` (True = in the circuit, runs normally).
    Components outside take the corrupted activation (``source='corrupt'``) or the clean
    batch mean (``source='mean'``).  Returns one metric per keep set.  Faithfulness
    ``F(C) = (m(C) - m(empty)) / (m(all) - m(empty))`` is built from these.
    """
    if source not in ("corrupt", "mean"):
        raise ValueError(f"complement source must be 'corrupt' or 'mean', got {source!r}")
    ac, ak = acts or [cache_components(model, run, types)[0] for run in (task.clean, task.corrupt)]
    src = {t.name: [_source_values("noise" if source == "corrupt" else "mean", ac[t.name][l], ak[t.name][l])
                    for l in range(model.cfg.n_layers)] for t in types}
    B, T = task.clean.shape
    k_max = max(1, max_tokens // (B * T))
    out = []
    for start in range(0, len(keep_masks), k_max):
        chunk = keep_masks[start:start + k_max]
        masks = {t.name: torch.stack([~km[t.name].bool() for km in chunk]) for t in types}
        logits = run_with_masks(model, task.clean, src, masks, types)
        out.append(task.metric(logits).float().reshape(len(chunk), B).mean(1).cpu())
    return torch.cat(out)
