"""|edge score| summed per (sender stage, receiver stage): the coarse picture of an edge attribution.

The residual stream of an ``L``-layer model has ``2L + 1`` writer stages (embeddings, then the heads
and the MLP of each layer) and ``2L + 1`` reader stages (the attention inputs q/k/v and the MLP
input of each layer, then the logits); :func:`stage_matrix` adds ``|score|`` of every edge of an
:class:`~interp.attribution.edges.EdgeScores` into the (writer stage, reader stage) block it joins
as ``S^T |scores| R`` with one-hot stage matrices ``S [N_s, 2L+1]``, ``R [N_r, 2L+1]`` (O(N_s N_r L)
time, O(N_s N_r) memory, float64 sums).
"""

from __future__ import annotations

import torch


def stage_matrix(res) -> tuple[list[list[float]], list[str], list[str]]:
    """``(z, rows, columns)``: ``z[i][j]`` = sum of |score| over the edges from sender stage ``i``
    (rows ``embed, heads L0, MLP0, heads L1, ...``) to receiver stage ``j`` (columns ``attn L0``
    (q/k/v), ``MLP0``, ..., ``logits``).  ``res``: an ``EdgeScores`` (``graph`` and ``scores``)."""
    g = res.graph
    s_st = torch.tensor([n.stage for n in g.senders]) + 1  # -1 (embeddings) -> 0
    r_st = torch.tensor([n.stage for n in g.receivers])
    L = len({n.layer for n in g.receivers if n.kind == "mlp"})
    S, R = (torch.nn.functional.one_hot(st, 2 * L + 1).double() for st in (s_st, r_st))  # stage > 2L raises
    M = S.T @ res.scores.abs().double() @ R
    rows = ["embed"] + [f"{w}{l}" for l in range(L) for w in ("heads L", "MLP")]
    cols = [f"{w}{l}" for l in range(L) for w in ("attn L", "MLP")] + ["logits"]
    return M.tolist(), rows, cols
