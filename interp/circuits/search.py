"""Circuit search by real patching: greedy node pruning (ACDC at the node level, Conmy et al. 2023).

Ranking components by one attribution score and keeping the top k (``discovery.py``) misses
components that matter only jointly, and its faithfulness curve is not monotone.  This module
searches for the circuit with the ground truth itself: every decision is a real patched run.

Definitions (docs/methods.md, Circuit discovery).  C = every attention head and MLP.  For a set S of
components, m(S) is the batch-mean metric of the clean run with every component *outside* S
patched -- with its activation from the corrupted run (``source='corrupt'``, the ABC run for
IOI) or with the clean batch mean (``source='mean'``, mean-ablation).
F(S) = (m(S) - m(empty)) / (m(C) - m(empty)).  The search keeps F(S) >= ``share + margin``.

Algorithm:
1. Prior order: components sorted by |attribution score| ascending (any method's scores; the
   cheapest to drop are tried first).  The prior only orders the tries; every accepted
   removal is a measured F.
2. Pruning pass with speculative prefixes.  S = C; q = the undecided components in prior
   order.  One batched forward pass evaluates S minus the first p components of q for
   p = 1, 2, 4, ... ``max_group``; the longest prefix whose F stays >= threshold is removed (and
   ``max_group`` adapts); if no prefix passes, q[0] is kept.  Most components are irrelevant,
   so whole groups go in one pass.
3. Refinement (ACDC's repeated sweeps): evaluate S minus each single member (one batch), try
   the removals in order of the F they leave, sequentially re-measuring, until a batch of all
   single removals finds none that keeps F >= threshold.  The returned circuit is then
   *1-minimal* on the discovery prompts: dropping any one member takes F below the threshold
   (``single_removal_F`` holds the measured values).
4. The circuit's F is measured once more, fresh, on the discovery prompts; the pipeline also
   measures it on held-out prompts (``circuit_faithfulness``).

Cost: about (|S_final| + |C|/max_group) * log2(max_group) masks in step 2 and
2 * |S| per sweep in step 3; each mask is one B*T-token forward, ``max_tokens`` tokens a pass.
Measured on SmolLM2-135M (300 components, 8 prompts, one thread on a shared, overloaded 2-core
CPU): IOI (T=16) 355 masks in 819 s; greater-than (T=18) 128 masks in 452 s.
Memory: clean and corrupted activations of every head and MLP (30 x 2 x B*T*576 floats ~ 2 MB
for B*T = 128) plus one forward of ``max_tokens`` tokens.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import torch
from interp.models.hooks import parse_component

from interp.attribution.components import AttributionResult, cache_components, component_types
from interp.attribution.patching import complement_metric, run_with_masks

from .discovery import check_circuit_settings, keep_mask, no_metric_gap, rank_components, unit_name

Unit = tuple  # (type name, layer, unit index tuple)


@dataclass(frozen=True)
class SearchConfig:
    """Settings of :func:`search_circuit`."""

    share: float = 0.8
    """Faithfulness the circuit must keep (0 < share <= 1)."""
    margin: float = 0.0
    """Prune only while F >= share + margin on the discovery prompts (slack for held-out prompts)."""
    types: tuple[str, ...] = ("attn_head", "mlp")
    """Component types that can enter the circuit."""
    source: str = "corrupt"
    """What components outside the circuit get: ``corrupt`` activations or the clean ``mean``."""
    max_group: int = 32
    """Largest prefix of the prior order removed in one try (powers of two up to it are tried)."""
    refine: bool = True
    """Run the refinement sweeps (step 3) that make the circuit 1-minimal."""
    max_tokens: int = 4096
    """Tokens per forward pass (masks per pass = max_tokens // (B*T))."""

    def __post_init__(self):
        check_circuit_settings(self.share, self.source, self.types)
        if self.margin < 0:
            raise ValueError(f"margin must be >= 0, got {self.margin}")
        if self.max_group < 1:
            raise ValueError("max_group must be >= 1")


@dataclass
class SearchedCircuit:
    """A circuit found by greedy pruning, with the measured evidence."""

    components: list[str]
    """Hook-name addresses (``blocks.9.attn.hook_z[3]``, ``blocks.4.hook_mlp_out``) in layer order."""
    n_total: int
    """Number of candidate components."""
    faithfulness: float
    """F of the circuit on the discovery prompts, from a fresh patched run."""
    threshold: float
    """share + margin: the F the pruning kept."""
    share: float
    metric_full: float
    """m(C): every component running (the clean run)."""
    metric_empty: float
    """m(empty): every component patched."""
    minimal: bool
    """True when the last sweep measured every single removal below the threshold."""
    single_removal_F: dict[str, float]
    """Member -> F of the circuit without it (from the last sweep; empty if ``refine`` is off)."""
    trajectory_sizes: list[int]
    """Circuit size after each accepted removal (starts at n_total)."""
    trajectory_F: list[float]
    """The measured F at each of those sizes."""
    n_masks: int
    """Patched runs (masks) evaluated by the search."""
    source: str
    seconds: float
    denoise_recovered: float = float("nan")
    """(m(corrupt run, circuit patched from clean) - m(corrupt)) / (m(clean) - m(corrupt))."""
    config: dict = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        return len(self.components) / self.n_total

    def to_json(self) -> dict:
        return {
            "components": list(self.components), "n_components": len(self.components), "n_total": self.n_total,
            "fraction": self.fraction, "faithfulness": self.faithfulness, "threshold": self.threshold,
            "share": self.share, "metric_full": self.metric_full, "metric_empty": self.metric_empty,
            "minimal": self.minimal, "single_removal_F": self.single_removal_F, "n_masks": self.n_masks,
            "source": self.source, "seconds": self.seconds, "denoise_recovered": self.denoise_recovered,
            "method": "greedy", "config": self.config,
        }


def all_units(model, acts, types) -> list[Unit]:
    """Every (type, layer, unit) of ``types`` in layer order."""
    out = []
    for t in types:
        unit_shape = tuple(acts[t.name][0].shape[2:2 + t.unit_axes])
        idxs = (torch.cartesian_prod(*[torch.arange(s) for s in unit_shape]).reshape(-1, len(unit_shape)).tolist()
                if unit_shape else [[]])
        for l in range(model.cfg.n_layers):
            out += [(t.name, l, tuple(i)) for i in idxs]
    return sorted(out, key=lambda u: (u[1], u[0] != "attn_head", u[2]))


class _Evaluator:
    """m(S) for many sets S, batched; counts masks."""

    def __init__(self, model, task, types, source, max_tokens):
        self.model, self.task, self.types, self.source, self.max_tokens = model, task, types, source, max_tokens
        self.ac, _, _ = cache_components(model, task.clean, types)
        self.ak, _, _ = cache_components(model, task.corrupt, types)
        self.shapes = {t.name: (model.cfg.n_layers, *self.ac[t.name][0].shape[2:2 + t.unit_axes]) for t in types}
        self.n_masks = 0

    def metric(self, sets: Sequence[Sequence[Unit]]) -> list[float]:
        self.n_masks += len(sets)
        vals = complement_metric(self.model, self.task, [keep_mask(s, self.shapes) for s in sets], self.types,
                                 source=self.source, acts=(self.ac, self.ak), max_tokens=self.max_tokens)
        return vals.tolist()


def circuit_faithfulness(model, task, components: Sequence[str], types=("attn_head", "mlp"),
                         source: str = "corrupt", max_tokens: int = 4096) -> dict:
    """F of a fixed circuit on ``task`` by real patching: ``{F, metric_full, metric_empty, metric_circuit}``."""
    ev = _Evaluator(model, task, component_types(types), source, max_tokens)
    units = [parse_component(c) for c in components]
    full, empty, mc = ev.metric([all_units(model, ev.ac, ev.types), [], units])
    gap = full - empty
    if no_metric_gap(full, empty):
        raise ValueError("the metric does not change between the full model and the all-patched model")
    return {"F": (mc - empty) / gap, "metric_full": full, "metric_empty": empty, "metric_circuit": mc, "n": task.n}


def search_circuit(model, task, prior: AttributionResult | None = None, config: SearchConfig | None = None,
                   progress: bool = False) -> SearchedCircuit:
    """Greedy pruning by real patching (see module doc).  ``prior`` orders the tries (None: layer order)."""
    cfg = config or SearchConfig()
    types = component_types(cfg.types)
    t0 = time.perf_counter()
    ev = _Evaluator(model, task, types, cfg.source, cfg.max_tokens)
    units = all_units(model, ev.ac, types)
    n = len(units)
    if prior is not None:
        missing = [t.name for t in types if t.name not in prior.scores]
        if missing:
            raise ValueError(f"the {prior.method} prior has no scores for {missing}")
        ranked = rank_components(prior, types, "abs")  # most important first
        order = [(t.name, l, idx) for t, l, idx, _ in reversed(ranked)]
    else:
        order = list(units)
    full, empty = ev.metric([units, []])
    gap = full - empty
    if no_metric_gap(full, empty):
        raise ValueError("the metric does not change between the full model and the all-patched model; "
                         "nothing to attribute (are clean and corrupted prompts identical?)")
    F = lambda m: (m - empty) / gap  # noqa: E731
    thr = cfg.share + cfg.margin
    S = set(units)
    traj_n, traj_F = [n], [1.0]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc="greedy pruning", leave=False)
    # step 2: pruning pass with speculative prefixes
    q = list(order)
    group = cfg.max_group
    while q:
        sizes = sorted({min(p, len(q)) for p in [2 ** i for i in range(group.bit_length())] + [group]})
        sets = [[u for u in S if u not in drop] for drop in (set(q[:p]) for p in sizes)]
        vals = [F(v) for v in ev.metric(sets)]
        ok = [(p, f) for p, f in zip(sizes, vals) if f >= thr]
        if ok:
            p, f = max(ok)
            S -= set(q[:p])
            traj_n.append(len(S))
            traj_F.append(f)
            group = min(cfg.max_group, 2 * p) if p == sizes[-1] else max(1, p)
        else:
            p, group = 1, max(1, group // 2)  # q[0] stays in the circuit
        q = q[p:]
        if bar is not None:
            bar.update(p)
    if bar is not None:
        bar.close()
    # step 3: refinement sweeps until no single removal keeps F >= threshold
    single: dict[Unit, float] = {}
    minimal = False
    while cfg.refine and S:
        members = sorted(S, key=lambda u: (u[1], u[0], u[2]))
        vals = [F(v) for v in ev.metric([[u for u in S if u != r] for r in members])]
        single = dict(zip(members, vals))
        cands = sorted((f, u) for u, f in single.items() if f >= thr)
        if not cands:
            minimal = True
            break
        removed = 0
        for _, u in reversed(cands):  # highest F left first, each re-measured on the current S
            if len(S) == 1:
                break
            f = F(ev.metric([[v for v in S if v != u]])[0])
            if f >= thr:
                S.discard(u)
                removed += 1
                traj_n.append(len(S))
                traj_F.append(f)
        if not removed:  # the batched and the single run disagree at the threshold (float noise)
            break
    members = sorted(S, key=lambda u: (u[1], u[0] != "attn_head", u[2]))
    f_final = F(ev.metric([members])[0])
    # denoising check: corrupted run with only the circuit patched in from clean
    km = keep_mask(members, ev.shapes)
    logits = run_with_masks(model, task.corrupt, ev.ac, {k: m[None] for k, m in km.items()}, types)
    m_den = task.metric(logits).float().mean().item()
    with torch.no_grad():
        dev = next(model.parameters()).device
        m_clean = task.metric(model(task.clean.to(dev))).float().mean().item()
        m_corr = task.metric(model(task.corrupt.to(dev))).float().mean().item()
    tname = {t.name: t for t in types}
    name = lambda u: unit_name(tname[u[0]], u[1], u[2])  # noqa: E731
    return SearchedCircuit(
        components=[name(u) for u in members], n_total=n, faithfulness=f_final, threshold=thr, share=cfg.share,
        metric_full=full, metric_empty=empty, minimal=minimal,
        single_removal_F={name(u): f for u, f in sorted(single.items(), key=lambda x: (x[0][1], x[0][0], x[0][2]))
                          if u in S},
        trajectory_sizes=traj_n, trajectory_F=traj_F, n_masks=ev.n_masks, source=cfg.source,
        seconds=time.perf_counter() - t0,
        denoise_recovered=(m_den - m_corr) / (m_clean - m_corr) if abs(m_clean - m_corr) > 1e-12 else float("nan"),
        config={"share": cfg.share, "margin": cfg.margin, "types": list(cfg.types), "source": cfg.source,
                "max_group": cfg.max_group, "refine": cfg.refine, "prior": None if prior is None else prior.method},
    )
