"""Circuit discovery: prune to the smallest component set that keeps a share of the metric.

Algorithm (node-level circuits as in Wang et al. 2022 and Hanna et al. 2024; docs/methods.md, Circuit discovery):
1. Rank the components (attention heads and MLPs) by an attribution method's score, largest
   first (``order='signed'``: components that push the metric up; ``'abs'``: by magnitude).
2. Faithfulness curve: for every size k = 0..n, keep the top-k components running normally on
   the clean prompts and patch *every other* component with its corrupted activation (or the
   clean mean); F(k) = (m(C_k) - m(empty)) / (m(all) - m(empty)).  Many sizes share one forward
   pass (``complement_metric``).  With every head and MLP corrupted the last position sees only
   corrupted information, so m(empty) equals m(corrupt) for tasks whose last token is shared.
3. The circuit is the smallest k with F(k) >= share, read off the measured curve.  F(k) is not
   monotone in k (a component that pushes the metric down can enter before one that restores
   it), so no search that assumes monotonicity can promise the smallest k; measuring every k can.
   ``grid=G`` (opt-in, cheaper) measures only ~G geometric sizes and returns precisely: the
   first grid size g with F(g) >= share, refined by bisection on (g_prev, g] (g_prev the grid
   size before g): mid = (lo + hi) // 2, hi = mid if F(mid) >= share else lo = mid, until
   hi = lo + 1; it returns hi, a size where F crosses ``share`` upwards (F(hi - 1) < share <=
   F(hi)); it is the smallest k only when F is monotone up to g.
4. Verification by real patching: the chosen circuit's F is a real patched run; we also report
   the denoising check (corrupted run with only the circuit's components patched from clean).

Cost: (n + 1) * B*T tokens of forward passes (n = number of components; ``grid=G``:
(G + log2(gap)) * B*T), batched ``max_tokens`` tokens a pass.
Memory: clean and corrupted activations of every head and MLP (see attribution/components.py).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from interp.attribution.components import AttributionResult, component_types
from interp.results import check_fields

from .circuit import Circuit
from .faithfulness import ComponentPatcher


def check_circuit_settings(share: float, source: str, types) -> None:
    """Validate the settings every circuit search shares (raises ValueError naming the bad one)."""
    if not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1], got {share}")
    if source not in ("corrupt", "mean"):
        raise ValueError(f"source must be 'corrupt' or 'mean', got {source!r}")
    component_types(types)


@dataclass(frozen=True)
class CircuitSettings:
    """What every component-circuit search takes (:class:`CircuitConfig`, ``search.SearchConfig``)."""

    share: float = 0.8
    """Fraction of the clean-vs-empty metric gap the circuit must recover (0 < share <= 1)."""
    types: tuple[str, ...] = ("attn_head", "mlp")
    """Component types that can enter the circuit."""
    source: str = "corrupt"
    """What components outside the circuit get: ``corrupt`` activations or the clean ``mean``."""
    max_tokens: int = 4096
    """Tokens per forward pass."""

    def __post_init__(self):
        check_circuit_settings(self.share, self.source, self.types)


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
    measured: dict[int, float] = {}

    def measure(sizes):
        sizes = [s for s in sizes if s not in measured]
        measured.update(zip(sizes, ev.metric([units[:k] for k in sizes])))

    grid = list(range(n + 1)) if cfg.grid is None else size_grid(n, cfg.grid)
    measure(grid)
    ev.set_ends(measured[n], measured[0])
    F = lambda k: ev.F(measured[k])  # noqa: E731
    hi = next(k for k in grid if F(k) >= cfg.share)  # exists: F(n) = 1 >= share
    lo = max([k for k in grid if k < hi], default=0)
    while hi - lo > 1:  # grid mode only: bisection on measured values (every size measured: hi = lo + 1)
        mid = (lo + hi) // 2
        measure([mid])
        hi, lo = (mid, lo) if F(mid) >= cfg.share else (hi, mid)
    sizes = sorted(measured)
    return ev.circuit(
        units[:hi], F(hi), t0, scores=[s for *_, s in ranked[:hi]], curve_sizes=sizes,
        curve_faithfulness=[F(s) for s in sizes], method=result.method, share=cfg.share,
        config={"types": list(cfg.types), "source": cfg.source, "order": cfg.order, "grid": cfg.grid})
