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
   measures it on held-out prompts (``faithfulness.circuit_faithfulness``).

Cost: about (|S_final| + |C|/max_group) * log2(max_group) masks in step 2 and
2 * |S| per sweep in step 3; each mask is one B*T-token forward, ``max_tokens`` tokens a pass
(SmolLM2-135M, 300 components: a few hundred masks; bench/results and docs/benchmarks.md).
Memory: clean and corrupted activations of every head and MLP (30 x 2 x B*T*576 floats ~ 2 MB
for B*T = 128) plus one forward of ``max_tokens`` tokens.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

from interp.attribution.components import AttributionResult, component_types
from interp.results import check_fields

from .circuit import Circuit
from .discovery import CircuitSettings, rank_components
from .faithfulness import ComponentPatcher, Unit


@dataclass(frozen=True)
class SearchConfig(CircuitSettings):
    """Settings of :func:`search_circuit` (``share``: the faithfulness the circuit must keep)."""

    margin: float = 0.0
    """Prune only while F >= share + margin on the discovery prompts (slack for held-out prompts)."""
    max_group: int = 32
    """Largest prefix of the prior order removed in one try (powers of two up to it are tried);
    masks per forward pass = max_tokens // (B*T)."""

    def __post_init__(self):
        super().__post_init__()
        check_fields(self, at_least={"margin": 0, "max_group": 1})


def search_circuit(model, task, prior: AttributionResult | None = None, config: SearchConfig | None = None,
                   progress: bool = False) -> Circuit:
    """Greedy pruning by real patching (see module doc).  ``prior`` orders the tries (None: layer
    order) and gives the members their scores.  The circuit's ``curve_sizes`` / ``curve_faithfulness``
    are the sizes the pruning reached (from all components down) and the F measured at each."""
    cfg = config or SearchConfig()
    t0 = time.perf_counter()
    ev = ComponentPatcher(model, task, cfg.types, cfg.source, cfg.max_tokens)
    units = ev.units()
    n = len(units)
    prior_score: dict[Unit, float] = {}
    q = list(units)  # the undecided components, in the order they are tried
    if prior is not None:
        ranked = rank_components(prior, component_types(cfg.types), "abs")  # most important first
        prior_score = {(t.name, l, idx): s for t, l, idx, s in ranked}
        q = list(reversed(prior_score))
    ev.ends()
    thr = cfg.share + cfg.margin
    S = set(units)
    traj = [(n, 1.0)]  # (size reached, F measured there)
    from tqdm.auto import tqdm

    bar = tqdm(total=n, desc="greedy pruning", leave=False, disable=not progress)
    # step 2: pruning pass with speculative prefixes
    group = cfg.max_group
    while q:
        sizes = sorted({min(p, len(q)) for p in [2 ** i for i in range(group.bit_length())] + [group]})
        sets = [[u for u in S if u not in drop] for drop in (set(q[:p]) for p in sizes)]
        ok = [(p, f) for p, f in zip(sizes, map(ev.F, ev.metric(sets))) if f >= thr]
        if ok:
            p, f = max(ok)
            S -= set(q[:p])
            traj.append((len(S), f))
            group = min(cfg.max_group, 2 * p) if p == sizes[-1] else max(1, p)
        else:
            p, group = 1, max(1, group // 2)  # q[0] stays in the circuit
        q = q[p:]
        bar.update(p)
    bar.close()
    # step 3: refinement sweeps until no single removal keeps F >= threshold
    single: dict[Unit, float] = {}
    minimal = False
    while S:
        members = sorted(S, key=lambda u: (u[1], u[0], u[2]))
        single = dict(zip(members, map(ev.F, ev.metric([[u for u in S if u != r] for r in members]))))
        cands = sorted((f, u) for u, f in single.items() if f >= thr)
        if not cands:
            minimal = True
            break
        before = len(S)
        for _, u in reversed(cands):  # highest F left first, each re-measured on the current S
            if len(S) == 1:
                break
            f = ev.F(ev.metric([[v for v in S if v != u]])[0])
            if f >= thr:
                S.discard(u)
                traj.append((len(S), f))
        if len(S) == before:  # the batched and the single run disagree at the threshold (float noise)
            break
    members = [u for u in units if u in S]  # layer order
    return ev.circuit(
        members, ev.F(ev.metric([members])[0]), t0, scores=[prior_score[u] for u in members if prior_score],
        curve_sizes=[k for k, _ in traj], curve_faithfulness=[f for _, f in traj], method="greedy",
        share=cfg.share, threshold=thr, minimal=minimal,
        single_removal_F={ev.name(u): single[u] for u in members if u in single},
        config={**dataclasses.asdict(cfg), "prior": None if prior is None else prior.method})
