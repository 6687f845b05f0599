"""LIB on TransformerBridge residual layers (tiny model; the real model is slow)."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.autograd.functional import jacobian

from interp.decompositions.lib import batched_vjp
from interp.decompositions.lib_transformer import ModelLIBSettings, lib_on_model, ln_statistic, resid_ln_map, resid_map


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


def _cov_rest(b, f, skip=1):
    """Cov of f_hat = C^T (f - mean) over samples and positions >= skip, nodes after the isolated one."""
    fh = b.transform(f[:, skip:]).reshape(-1, b.k)
    fh = fh - fh.mean(0)
    return (fh.T @ fh / fh.shape[0])[1:, 1:]


def test_lib_on_tiny_model_meets_the_basis_definition(tiny_llama):
    """Exact M' (probes=None), then two defining identities checked from outside fit_lib:
    Cov(f_hat) = diag(Lambda) (C = U D^-1/2 V Lambda^1/2 whitens, rotates, rescales) and the interaction
    matrix in f_hat coordinates, sum J_hat^T J_hat / (N T) with J from torch.autograd, is the identity
    (both on the non-isolated block; the isolated LN-statistic node 0 has its own diagonal entry, 1)."""
    s = ModelLIBSettings(layers=(0, 1), n_texts=4, seq_len=10, probes=None, edge_nodes=5, batch_size=2)
    texts = ["the quick brown fox", "jumps over the lazy dog", "hello world again!", "0123456789abc"]
    res, summary = lib_on_model(tiny_llama, s, texts)
    assert summary["tokens"] == [4, 10]
    toks = torch.stack([tiny_llama.to_tokens(t)[0][:10] for t in texts])
    _, cache = tiny_llama.run_with_cache(toks)
    f0, f1 = (torch.cat([ln_statistic(tiny_llama, L, r), r], -1).double()
              for L, r in ((0, cache["blocks.0.hook_resid_post"]), (1, cache["blocks.1.hook_resid_post"])))
    b0, b1 = res.bases
    assert b0.C.shape[0] == 33 and (b0.C[1:, 0] == 0).all() and (b0.C[0, 1:] == 0).all()
    # float64 transform of the same activations: 1e-8 relative to Lambda_max
    torch.testing.assert_close(_cov_rest(b0, f0), torch.diag(b0.importance[1:]), rtol=0, atol=1e-8 * float(b0.importance.max()))
    g = resid_ln_map(tiny_llama, 0, 1)
    Mh = torch.zeros(b0.k, b0.k, dtype=torch.float64)
    for x in f0:
        def h(z):
            return (g(z[None].float()).double()[0] - b1.mean) @ b1.C  # [T, k1]
        J = jacobian(h, x)[1:, :, 1:, :]  # output positions >= 1, input positions >= 1 (BOS held): [T-1, k1, T-1, 33]
        Jh = J @ b0.C_pinv.T  # d/d f_hat: f = mean + C+^T f_hat
        Mh += torch.einsum("tisj,tisk->jk", Jh, Jh)
    Mh /= f0.shape[0] * (f0.shape[1] - 1)
    # same float32 map in fit_lib and here; measured max |Mh - I| 3.4e-9 (rest block), 2.1e-8 (diagonal) at 1 thread;
    # 1e-6 leaves ~50x for other CPUs / thread counts (float32 Jacobian sums reordered: ~eps32 x sqrt(T k))
    torch.testing.assert_close(Mh[1:, 1:], torch.eye(b0.k - 1, dtype=torch.float64), rtol=0, atol=1e-6)
    torch.testing.assert_close(Mh.diagonal(), torch.ones(b0.k, dtype=torch.float64), rtol=0, atol=1e-6)
    assert res.edges[0].shape == (5, 5) and (res.edges[0] >= 0).all()
    assert torch.allclose(b1.transform(f1[:, 1:]).mean((0, 1)), torch.zeros(b1.k, dtype=torch.float64), atol=1e-8)
    with pytest.raises(ValueError, match="increasing"):
        ModelLIBSettings(layers=(3, 2))
    with pytest.raises(ValueError, match="at least 2 texts"):
        lib_on_model(tiny_llama, s, ["short"])


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2", "tiny-pythia"])
def test_ln_map_feeds_the_given_statistic_to_the_norm(name):
    """The [s, resid] map: fed the true statistic it is the forward pass; fed s* = 4 (s + eps) - eps the next
    norm(s) divide by twice their scale, i.e. the same as halving their normalised output by a hook."""
    from interp.models.modules import norm_params
    from interp.decompositions.lib_transformer import _norms_after
    from interp.models import load_model

    model = load_model(name, device="cpu")
    toks = model.to_tokens(["abcdefgh", "12345678"])
    _, cache = model.run_with_cache(toks)
    r0, r1 = cache["blocks.0.hook_resid_post"], cache["blocks.1.hook_resid_post"]
    norms = _norms_after(model, 0)
    for n, m in norms:  # the statistic is what the model's own norm divides by: scale^2 - eps
        eps = norm_params(m, model)[2]
        torch.testing.assert_close(ln_statistic(model, 0, r0), cache[n] ** 2 - eps,
                                   rtol=1e-4, atol=1e-6)  # float32
    s0 = ln_statistic(model, 0, r0)
    g = resid_ln_map(model, 0, 1)
    y = g(torch.cat([s0, r0], -1))
    torch.testing.assert_close(y[..., 1:], r1, rtol=1e-5, atol=1e-5)  # float32 forward, reconstructed norm path
    torch.testing.assert_close(y[..., :1], ln_statistic(model, 1, r1), rtol=1e-5, atol=1e-7)
    eps = norm_params(norms[0][1], model)[2]
    y2 = g(torch.cat([4 * (s0 + eps) - eps, r0], -1))[..., 1:]
    halve = [(n.replace("hook_scale", "hook_normalized"), lambda a, hook: a / 2) for n, _ in norms]
    with model.hooks(fwd_hooks=halve), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="A forward hook edited hook_scale")
        _, ref = model.run_with_cache(toks, names_filter="blocks.1.hook_resid_post")
    torch.testing.assert_close(y2, ref["blocks.1.hook_resid_post"], rtol=1e-5, atol=1e-5)  # float32 forward
    assert (y2 - r1).abs().max() > 1e-3  # the statistic matters


@pytest.mark.slow
def test_lib_on_smollm2_residual_layers(smollm2):
    s = ModelLIBSettings(layers=(3, 4, 5), n_texts=8, seq_len=16, probes=4, edge_nodes=8, batch_size=2)
    res, summary = lib_on_model(smollm2, s)
    assert summary["tokens"] == [8, 16]
    from interp.decompositions.lib_transformer import default_texts

    toks = torch.stack([smollm2.to_tokens(t)[0][:16] for t in default_texts(8)])
    _, cache = smollm2.run_with_cache(toks)
    for L, b in zip(s.layers, res.bases):  # C = U D^-1/2 V Lambda^1/2: Cov(f_hat) = diag(Lambda) off the LN node
        r = cache[f"blocks.{L}.hook_resid_post"].double()
        f = torch.cat([ln_statistic(smollm2, L, r), r], -1)
        assert b.C.shape[0] == 577 and (b.C[1:, 0] == 0).all() and (b.C[0, 1:] == 0).all()
        # float64 on the same activations; the last layer's importance is its PCA variance
        torch.testing.assert_close(_cov_rest(b, f), torch.diag(b.importance[1:]), rtol=0,
                                   atol=1e-8 * float(b.importance.max()))
    assert all(E.shape == (8, 8) and (E >= 0).all() for E in res.edges)


def test_lib_cli_isolate_ln_var_option(tmp_path):
    import json

    from interp.cli.main import main

    base = ["lib", "--model", "tiny-llama", "--layers", "0-1", "--n", "3", "--seq-len", "8", "--probes", "2",
            "--edge-nodes", "3"]
    assert main(base + ["--out", str(tmp_path / "a")]) == 0
    res = json.loads((tmp_path / "a" / "results.json").read_text())
    assert res["lib"]["dims"] == [33, 33] and res["settings"]["isolate_ln_var"] is True  # [statistic, 32 residual]
    assert "node 0 of each layer is the statistic" in res["notes"]
    assert main(base + ["--no-isolate-ln-var", "--out", str(tmp_path / "b")]) == 0
    res = json.loads((tmp_path / "b" / "results.json").read_text())
    assert res["lib"]["dims"] == [32, 32] and res["settings"]["isolate_ln_var"] is False
