"""interp.attribution.edge_stages.stage_matrix (moved out of interp/cli/cmd_edges.py): every block
equals a brute-force sum of |score| over the edges, with the blocks named from each node's kind and
layer (not from its stage number)."""

from __future__ import annotations

import pytest
import torch

from interp.attribution.edge_stages import stage_matrix
from interp.attribution.edges import edge_attribution
from interp.models import load_model
from interp.tasks import ioi_task


def _row(n) -> str:
    return "embed" if n.kind in ("embed", "pos") else (f"heads L{n.layer}" if n.kind == "head" else f"MLP{n.layer}")


def _col(n) -> str:
    return "logits" if n.kind == "logits" else (f"attn L{n.layer}" if n.kind in ("q", "k", "v") else f"MLP{n.layer}")


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama"])
def test_stage_matrix_is_the_blockwise_sum_of_abs_scores(name):
    model = load_model(name, device="cpu", dtype=torch.float64)
    res = edge_attribution(model, ioi_task(model, n=2, seed=0), "eap")
    z, rows, cols = stage_matrix(res)
    want = {}
    g = res.graph
    for i, u in enumerate(g.senders):
        for j, v in enumerate(g.receivers):
            key = (_row(u), _col(v))
            want[key] = want.get(key, 0.0) + abs(float(res.scores[i, j]))
    got = {(r, c): z[a][b] for a, r in enumerate(rows) for b, c in enumerate(cols)}
    assert set(want) <= set(got)
    for key, val in got.items():
        # float64 sums of the same float64 numbers in another order: relative 1e-12 (~ eps64 x #edges)
        assert val == pytest.approx(want.get(key, 0.0), rel=1e-12, abs=1e-300), key
    assert sum(map(sum, z)) > 0
