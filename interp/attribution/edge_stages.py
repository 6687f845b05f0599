"""|edge score| summed per (sender stage, receiver stage): the coarse picture of an edge attribution.

The residual stream of an ``L``-layer model has ``2L + 1`` writer stages (embeddings, then the heads
and the MLP of each layer) and ``2L + 1`` reader stages (the attention inputs q/k/v and the MLP
input of each layer, then the logits); :func:`stage_matrix` adds ``|score|`` of every edge of an
:class:`~interp.attribution.edges.EdgeScores` into the (writer stage, reader stage) block it joins
(one ``index_put_`` with accumulation: O(N_s N_r) time and memory, float64 sums).
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
    if s_st.max() > 2 * L or r_st.max() > 2 * L:
        raise ValueError(f"edge graph stages exceed 2L = {2 * L} for {L} MLP layers")
    M = torch.zeros(2 * L + 1, 2 * L + 1, dtype=torch.float64)
    a = res.scores.abs().double()
    M.index_put_((s_st[:, None].expand_as(a).reshape(-1), r_st[None, :].expand_as(a).reshape(-1)), a.reshape(-1),
                 accumulate=True)
    rows = ["embed"] + [f"{w}{l}" for l in range(L) for w in ("heads L", "MLP")]
    cols = [f"{w}{l}" for l in range(L) for w in ("attn L", "MLP")] + ["logits"]
    return M.tolist(), rows, cols
