"""Node and edge ablations in a LIB / PCA basis: how many nodes and edges a chain needs.

Following Bushnaq et al. 2024 (arXiv 2405.10928, section 4) and ``ApolloResearch/rib``
(``rib/ablations.py``):

* **Node ablation** at layer l: keep the first ``n`` basis directions,
  ``f <- mu + C+^T (mask * C^T (f - mu))`` (the others sit at their mean, 0 in ``f_hat``),
  run the rest of the chain and score the output.
* **Edge ablation** between layers l and l+1: keep the ``E`` strongest edges of
  ``LIBResult.edges[l]``; output node ``i`` is computed from an input whose nodes ``j`` with
  a removed edge ``(j -> i)`` are set to 0 (their mean), one masked copy of the batch per
  output node (``rows = N x k_{l+1}``), then the chain runs on.
* :func:`min_nodes` / :func:`min_edges` bisect for the smallest count whose score stays
  at or above a target (the score is assumed monotone in the count, as in the reference).

Cost: an edge-ablated pass costs ``k_{l+1}`` forward passes of map ``l``; evaluate on a
subset of samples where that is large.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from .lib import LIBResult, _as3, run_chain

Metric = Callable[[torch.Tensor], float]


def _native(x3: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return x3.squeeze(1) if like.ndim == 2 else x3


@torch.no_grad()
def node_ablated_score(res: LIBResult, maps: Sequence, acts: list[torch.Tensor], layer: int, n_keep: int,
                       metric: Metric) -> float:
    """Score with only the first ``n_keep`` directions of ``layer`` kept."""
    _no_skip(res)
    b = res.bases[layer]
    f = acts[layer]
    fh = b.transform(_as3(f))
    fh[..., n_keep:] = 0
    return metric(run_chain(_native(b.inverse(fh), f).to(f.dtype), maps[layer:])[-1])


@torch.no_grad()
def edge_ablated_score(res: LIBResult, maps: Sequence, acts: list[torch.Tensor], layer: int, n_edges: int,
                       metric: Metric) -> float:
    """Score with only the ``n_edges`` strongest edges from ``layer`` to ``layer + 1`` kept (batches of at most
    the fit's ``LIBConfig.max_rows`` rows)."""
    _no_skip(res)
    E = res.edges[layer]
    if E is None:
        raise ValueError(f"no edges were computed for layer {layer} (LIBConfig.edges / max_edge_nodes)")
    b_in, b_out = res.bases[layer], res.bases[layer + 1]
    k_out, k_in = E.shape
    if k_out != b_out.k or k_in != b_in.k:
        raise ValueError("edge ablation needs edges over all kept nodes (fit without max_edge_nodes)")
    keep = (E.flatten().argsort(descending=True).argsort() < n_edges).view(k_out, k_in)  # rank < n_edges
    f = acts[layer]
    outs = []
    for x in b_in.transform(_as3(f)).split(max(1, res.config["max_rows"] // k_out)):  # [B, T, k_in] batches
        B = x.shape[0]
        masked = x.unsqueeze(0) * keep[:, None, None, :].to(x.dtype)  # [k_out, B, T, k_in]
        inp = b_in.inverse(masked.reshape(k_out * B, *x.shape[1:]))
        y = b_out.transform(_as3(maps[layer](_native(inp, f).to(f.dtype))))  # [k_out*B, T_out, k_out]
        y = y.reshape(k_out, B, y.shape[1], k_out)
        outs.append(y.diagonal(dim1=0, dim2=3))  # [B, T_out, k_out]: node i from its own masked copy i
    x_next = _native(b_out.inverse(torch.cat(outs)), acts[layer + 1]).to(acts[layer + 1].dtype)
    return metric(run_chain(x_next, maps[layer + 1:])[-1])


def _no_skip(res: LIBResult) -> None:
    if res.config.get("skip_first", 0):
        raise ValueError("ablations are not implemented for fits with LIBConfig.skip_first > 0")


@dataclass
class AblationCount:
    """The smallest number of nodes (:func:`min_nodes`) or edges (:func:`min_edges`) of one layer that keeps
    the score at the target."""

    needed: int
    """Smallest count reaching the target (``total`` if even all of them do not)."""
    total: int
    """Count available (kept basis directions, or non-zero edges)."""
    score: float
    """Score at ``needed``."""
    reached: bool
    """Whether the target was reached."""


def _min_count(total: int, score: Callable[[int], float], target: float) -> AblationCount:
    """Bisection for the smallest n in [0, total] with score(n) >= target (score assumed non-decreasing)."""
    full = score(total)
    (needed, s), lo, hi = (total, full), 0, total
    while full >= target and lo < hi:
        mid = (lo + hi) // 2
        s_mid = score(mid)
        if s_mid >= target:
            hi, needed, s = mid, mid, s_mid
        else:
            lo = mid + 1
    return AblationCount(needed, total, s, s >= target)


def min_nodes(res: LIBResult, maps, acts, layer: int, metric: Metric, target: float) -> AblationCount:
    return _min_count(res.bases[layer].k,
                      lambda n: node_ablated_score(res, maps, acts, layer, n, metric), target)


def min_edges(res: LIBResult, maps, acts, layer: int, metric: Metric, target: float) -> AblationCount:
    return _min_count(int((res.edges[layer] > 0).sum()),
                      lambda n: edge_ablated_score(res, maps, acts, layer, n, metric), target)
