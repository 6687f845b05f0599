"""LIB on TransformerBridge residual layers (tiny model; the real model is slow)."""

from __future__ import annotations

import pytest
import torch
from torch.autograd.functional import jacobian

from interp.decompositions.lib import batched_vjp
from interp.decompositions.lib_transformer import ModelLIBSettings, lib_on_model, resid_map


def test_resid_map_reproduces_the_forward_pass(tiny_llama):
    model = tiny_llama
    toks = model.to_tokens(["abcdefgh", "12345678"])
    _, cache = model.run_with_cache(toks)
    g = resid_map(model, 0, 1)
    y = g(cache["blocks.0.hook_resid_post"])
    assert torch.allclose(y, cache["blocks.1.hook_resid_post"], atol=1e-5)  # float32 block map vs forward: 84 eps32
    # no hook left behind: a plain forward is unchanged
    assert torch.allclose(model(toks), model(toks))  # defaults: the same forward twice
    with pytest.raises(ValueError, match="layer_in"):
        resid_map(model, 1, 1)


def test_replicated_vjp_through_the_bridge_matches_autograd(tiny_llama):
    model = tiny_llama
    toks = model.to_tokens(["abcd", "wxyz"])
    _, cache = model.run_with_cache(toks)
    x = cache["blocks.0.hook_resid_post"].double()  # [2, 5, 32]
    g = resid_map(model, 0, 1)

    def h(z):
        return g(z.float()).double()[:, :, :3]  # three output coordinates per position

    T = x.shape[1]
    V = torch.zeros(T * 3, 2, T, 3, dtype=torch.float64)
    for t in range(T):
        for i in range(3):
            V[t * 3 + i, :, t, i] = 1
    got = batched_vjp(h, x, V, max_rows=8)  # [T*3, 2, T, 32]
    for b in range(2):
        J = jacobian(lambda z: h(z[None])[0], x[b])  # [T, 3, T, 32]
        assert torch.allclose(got[:, b], J.reshape(T * 3, T, 32), atol=1e-5)  # float32 Jacobian vs autograd: 84 eps32


def test_lib_on_tiny_model_runs_and_is_consistent(tiny_llama):
    s = ModelLIBSettings(layers=(0, 1), n_texts=4, seq_len=10, probes=4, edge_nodes=5, batch_size=2)
    texts = ["the quick brown fox", "jumps over the lazy dog", "hello world again!", "0123456789abc"]
    res, summary = lib_on_model(tiny_llama, s, texts)
    assert summary["tokens"] == [4, 10]
    b0 = res.bases[0]
    # float32 pseudo-inverse: ~8 eps32 x cond
    assert torch.allclose(b0.C_pinv @ b0.C, torch.eye(b0.k, dtype=b0.C.dtype), atol=1e-6)
    assert res.edges[0].shape == (5, 5) and (res.edges[0] >= 0).all()
    with pytest.raises(ValueError, match="increasing"):
        ModelLIBSettings(layers=(3, 2))
    with pytest.raises(ValueError, match="at least 2 texts"):
        lib_on_model(tiny_llama, s, ["short"])


@pytest.mark.slow
def test_lib_on_smollm2_residual_layers(smollm2):
    s = ModelLIBSettings(layers=(3, 4, 5), n_texts=8, seq_len=16, probes=4, edge_nodes=8, batch_size=2)
    res, summary = lib_on_model(smollm2, s)
    assert summary["tokens"] == [8, 16]
    for b in res.bases:
        # float32 pseudo-inverse: ~8 eps32 x cond
        assert torch.allclose(b.C_pinv @ b.C, torch.eye(b.k, dtype=b.C.dtype), atol=1e-6)
    assert all(E.shape == (8, 8) and (E >= 0).all() for E in res.edges)
