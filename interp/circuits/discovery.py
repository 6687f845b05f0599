"""Component circuits: the smallest top-k set of a ranking, or greedy pruning by real patching.

Definitions (docs/methods.md, Circuit discovery).  C = every attention head and MLP.  For a set S of
components, m(S) is the batch-mean metric of the clean run with every component *outside* S
patched -- with its activation from the corrupted run (``source='corrupt'``, the ABC run for
IOI) or with the clean batch mean (``source='mean'``, mean-ablation).
F(S) = (m(S) - m(empty)) / (m(C) - m(empty)).  With every head and MLP corrupted the last position
sees only corrupted information, so m(empty) equals m(corrupt) for tasks whose last token is shared.
Both searches measure F with :class:`~interp.circuits.faithfulness.ComponentPatcher` (many sets
share one forward pass, ``complement_metric``) and report the denoising check (the corrupted run
with only the circuit's components patched from clean).

**Top-k** (:func:`discover_circuit`; node-level circuits as in Wang et al. 2022 and Hanna et al. 2024):
1. Rank the components by an attribution method's score, largest first (``order='signed'``:
   components that push the metric up; ``'abs'``: by magnitude).
2. Faithfulness curve: F(k) of the top-k components for every size k = 0..n.
3. The circuit is the smallest k with F(k) >= share, read off the measured curve.  F(k) is not
   monotone in k (a component that pushes the metric down can enter before one that restores
   it), so no search that assumes monotonicity can promise the smallest k; measuring every k can.
   ``grid=G`` (opt-in, cheaper) measures only ~G geometric sizes and returns precisely: the
   first grid size g with F(g) >= share, refined by bisection on (g_prev, g] (g_prev the grid
   size before g): mid = (lo + hi) // 2, hi = mid if F(mid) >= share else lo = mid, until
   hi = lo + 1; it returns hi, a size where F crosses ``share`` upwards (F(hi - 1) < share <=
   F(hi)); it is the smallest k only when F is monotone up to g.
Cost: (n + 1) * B*T tokens of forward passes (n = number of components; ``grid=G``:
(G + log2(gap)) * B*T), batched ``max_tokens`` tokens a pass.

**Greedy pruning by real patching** (:func:`search_circuit`; ACDC at the node level, Conmy et al. 2023).
Ranking by one attribution score misses components that matter only jointly, and its curve is not
monotone; this search decides with the ground truth itself, every decision a real patched run, and
keeps F(S) >= ``share + margin``:
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

Memory (both): clean and corrupted activations of every head and MLP (30 x 2 x B*T*576 floats
~ 2 MB for B*T = 128) plus one forward of ``max_tokens`` tokens.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np

from interp.attribution.components import AttributionResult, component_types
from interp.results import check_fields

from .circuit import Circuit
from .faithfulness import ComponentPatcher, Unit


@dataclass(frozen=True)
class CircuitSettings:
    """What every component-circuit search takes (:class:`CircuitConfig`, :class:`SearchConfig`); its checks
    (a ``ValueError`` naming the bad setting) are also ``run_circuit``'s."""

    share: float = 0.8
    """Fraction of the clean-vs-empty metric gap the circuit must recover (0 < share <= 1)."""
    types: tuple[str, ...] = ("attn_head", "mlp")
    """Component types that can enter the circuit."""
    source: str = "corrupt"
    """What components outside the circuit get: ``corrupt`` activations or the clean ``mean``."""
    max_tokens: int = 4096
    """Tokens per forward pass."""

    def __post_init__(self):
        if not 0 < self.share <= 1:
            raise ValueError(f"share must be in (0, 1], got {self.share}")
        check_fields(self, {"source": ("corrupt", "mean")}, {"max_tokens": 1})
        component_types(self.types)


@dataclass(frozen=True)
class CircuitConfig(CircuitSettings):
    """Settings of :func:`discover_circuit`."""

    order: str = "abs"
    """Rank by |score| (``abs``, default: a strongly negative linear estimate still marks a
    component the metric depends on, e.g. MLP0 acting as an extended embedding) or by score
    (``signed``: only components that push the metric up come first)."""
    grid: int | None = None
    """None (default): measure F at every size 0..n and return the smallest k with F >= share.
    An int G: measure ~G geometric sizes (always 0 and all) plus a bisection (module doc, step 3):
    cheaper, and the smallest k only where F is monotone."""

    def __post_init__(self):
        super().__post_init__()
        check_fields(self, {"order": ("signed", "abs")}, {"grid": 2})


def rank_components(result: AttributionResult, types, order: str = "signed"):
    """``[(type, layer, unit_index, score)]`` sorted best first (per-position scores are summed)."""
    missing = [t.name for t in types if t.name not in result.scores]
    if missing:
        raise ValueError(f"the {result.method} result has no scores for {missing}; run it with these components")
    rows = []
    for t in types:
        s = result.per_component(t.name)
        rows += [(t, pos[0], pos[1:], float(s[pos])) for pos in np.ndindex(s.shape)]
    return sorted(rows, key=lambda r: -r[3] if order == "signed" else -abs(r[3]))


def size_grid(n: int, points: int) -> list[int]:
    """0, all, and ``points`` roughly geometric sizes in between."""
    steps = [min(n, round(math.expm1(math.log1p(n) * i / max(1, points - 1)))) for i in range(points)]
    return sorted({0, n, *steps})


def discover_circuit(model, task, result: AttributionResult, config: CircuitConfig | None = None) -> Circuit:
    """The smallest top-k set of the ranking with faithfulness >= ``config.share`` (``grid=None``,
    default; with ``grid=G`` the grid-and-bisection size of the module doc, step 3)."""
    cfg = config or CircuitConfig()
    t0 = time.perf_counter()
    ranked = rank_components(result, component_types(cfg.types), cfg.order)
    units = [(t.name, l, idx) for t, l, idx, _ in ranked]
    n = len(ranked)
    ev = ComponentPatcher(model, task, cfg.types, cfg.source, cfg.max_tokens)
    grid = list(range(n + 1)) if cfg.grid is None else size_grid(n, cfg.grid)
    measured = dict(zip(grid, ev.metric([units[:k] for k in grid])))  # size -> m of its top-k set
    ev.ends(measured[n], measured[0])
    F = lambda k: ev.F(measured[k])  # noqa: E731
    hi = next(k for k in grid if F(k) >= cfg.share)  # exists: F(n) = 1 >= share
    lo = max([k for k in grid if k < hi], default=0)
    while hi - lo > 1:  # grid mode only: bisection on measured values (every size measured: hi = lo + 1)
        mid = (lo + hi) // 2  # strictly between two measured sizes: not measured yet
        measured[mid] = ev.metric([units[:mid]])[0]
        hi, lo = (mid, lo) if F(mid) >= cfg.share else (hi, mid)
    sizes = sorted(measured)
    return ev.circuit(
        units[:hi], F(hi), t0, scores=[s for *_, s in ranked[:hi]], curve_sizes=sizes,
        curve_faithfulness=[F(s) for s in sizes], method=result.method, share=cfg.share,
        config=asdict(cfg))


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

    group = cfg.max_group
    with tqdm(total=n, desc="greedy pruning", leave=False, disable=not progress) as bar:
        while q:  # step 2: pruning pass with speculative prefixes
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
    # step 3: refinement sweeps until no single removal keeps F >= threshold
    while True:  # S is not empty (F(empty) = 0 < threshold): every sweep measures each single removal
        members = sorted(S, key=lambda u: (u[1], u[0], u[2]))
        single = dict(zip(members, map(ev.F, ev.metric([[u for u in S if u != r] for r in members]))))
        cands = sorted((f, u) for u, f in single.items() if f >= thr)
        before = len(S)
        for _, u in reversed(cands):  # highest F left first, each re-measured on the current S
            if len(S) == 1:
                break
            f = ev.F(ev.metric([[v for v in S if v != u]])[0])
            if f >= thr:
                S.discard(u)
                traj.append((len(S), f))
        if len(S) == before:  # no candidate (1-minimal), or the single runs disagreed with the batch at the
            break  # threshold (float noise)
    members = [u for u in units if u in S]  # layer order
    return ev.circuit(
        members, ev.F(ev.metric([members])[0]), t0, scores=[prior_score[u] for u in members if prior_score],
        curve_sizes=[k for k, _ in traj], curve_faithfulness=[f for _, f in traj], method="greedy",
        share=cfg.share, threshold=thr, minimal=not cands,  # 1-minimal: the last sweep had no removal to try
        single_removal_F={ev.name(u): single[u] for u in members if u in single},
        config={**asdict(cfg), "prior": None if prior is None else prior.method})
