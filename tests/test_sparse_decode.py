"""Sparse TopK kernels agree with their dense PyTorch references in values and every gradient."""

import pytest
import torch

from interp.dictionaries import sparse_decode as sd
from interp.dictionaries.base import SAEConfig
from interp.dictionaries.registry import make


def _data(B=37, k=5, n=50, d=12, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    W_dec = torch.randn(n, d, generator=g, dtype=dtype, requires_grad=True)
    W_enc = torch.randn(d, n, generator=g, dtype=dtype, requires_grad=True)
    b_enc = torch.randn(n, generator=g, dtype=dtype, requires_grad=True)
    x = torch.randn(B, d, generator=g, dtype=dtype, requires_grad=True)
    idx = torch.stack([torch.randperm(n, generator=g)[:k] for _ in range(B)])
    vals = torch.rand(B, k, generator=g, dtype=dtype, requires_grad=True)
    return W_dec, W_enc, b_enc, x, idx, vals


def _grads(out, inputs, seed=3):
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype)
    return torch.autograd.grad(out, inputs, g)


def test_sparse_decode_matches_dense_values_and_grads():
    W_dec, _, _, _, idx, vals = _data()
    fast = sd.sparse_decode(idx, vals, W_dec)
    ref = sd.sparse_decode_reference(idx, vals, W_dec)
    torch.testing.assert_close(fast, ref)  # float64 data: assert_close defaults (rtol 1e-7)
    for a, b in zip(_grads(fast, [vals, W_dec]), _grads(ref, [vals, W_dec])):
        torch.testing.assert_close(a, b)  # float64 defaults


def test_sparse_decode_gradcheck():
    W_dec, _, _, _, idx, vals = _data(B=6, k=3, n=9, d=4)
    assert torch.autograd.gradcheck(lambda v, w: sd._SparseDecode.apply(idx, v, w), (vals, W_dec))


def test_encode_at_matches_dense_values_and_grads():
    _, W_enc, b_enc, x, idx, _ = _data()
    fast = sd.encode_at(x, W_enc, b_enc, idx)
    ref = sd.encode_at_reference(x, W_enc, b_enc, idx)
    torch.testing.assert_close(fast, ref)  # float64 defaults
    for a, b in zip(_grads(fast, [x, W_enc, b_enc]), _grads(ref, [x, W_enc, b_enc])):
        torch.testing.assert_close(a, b)  # float64 defaults


def test_encode_at_gradcheck():
    _, W_enc, b_enc, x, idx, _ = _data(B=5, k=3, n=8, d=4)
    assert torch.autograd.gradcheck(lambda a, w, b: sd._EncodeAt.apply(a, w, b, idx), (x, W_enc, b_enc))


def test_repeated_indices_accumulate():
    """The same latent twice in a row counts twice (index-add semantics), like the dense scatter-add."""
    W = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    idx = torch.tensor([[1, 1], [2, 5]])
    vals = torch.tensor([[1.0, 2.0], [0.5, -1.0]], dtype=torch.float64, requires_grad=True)
    out = sd.sparse_decode(idx, vals, W)
    torch.testing.assert_close(out[0], 3.0 * W[1])  # float64 defaults
    (gW,) = torch.autograd.grad(out.sum(), [W])
    torch.testing.assert_close(gW[1], torch.full((3,), 3.0, dtype=torch.float64))  # float64 defaults


def test_topk_sae_step_same_with_and_without_kernels(monkeypatch, fast):
    """A whole TopK training loss (incl. AuxK) gives the same loss and parameter gradients either way; the
    switch (the ``fast`` fixture) picks the kernels: the dense references run exactly when it says so."""
    torch.manual_seed(0)
    sae = make(SAEConfig(arch="topk", d_in=16, d_sae=64, k=4, k_aux=8)).double()
    x = torch.randn(40, 16, dtype=torch.float64)
    dead = torch.zeros(64, dtype=torch.bool)
    dead[::3] = True
    names = ("sparse_decode_reference", "encode_at_reference")
    calls = dict.fromkeys(names, 0)
    for name in names:
        def counted(*a, _f=getattr(sd, name), _n=name):
            calls[_n] += 1
            return _f(*a)
        monkeypatch.setattr(sd, name, counted)
    results = []
    for env in ("0" if fast else "1", "1" if fast else "0"):  # the switch's own path first, then the other
        monkeypatch.setenv("INTERP_REFERENCE", env)
        calls.update(dict.fromkeys(names, 0))
        sae.zero_grad()
        out = sae.loss(x, dead_mask=dead)
        out.loss.backward()
        assert all((calls[n] > 0) is (env == "1") for n in names), calls  # each dense reference iff asked for
        results.append((out.loss.detach(), [p.grad.clone() for p in sae.parameters()]))
    torch.testing.assert_close(results[0][0], results[1][0])  # float32 defaults (rtol 1.3e-6 = 11 eps32): k-term sums
    for a, b in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(a, b)  # float32 defaults (rtol 1.3e-6 = 11 eps32)


def test_bad_input_errors():
    W = torch.randn(10, 4)
    with pytest.raises(ValueError, match="out of range"):
        sd.sparse_decode(torch.tensor([[0, 10]]), torch.ones(1, 2), W)
    with pytest.raises(ValueError, match=r"\[batch, k\]"):
        sd.sparse_decode(torch.tensor([0, 1]), torch.ones(2), W)
    with pytest.raises(ValueError, match="integer"):
        sd.sparse_decode(torch.zeros(1, 2), torch.ones(1, 2), W)
    with pytest.raises(ValueError, match="must match"):
        sd.encode_at(torch.randn(3, 5), torch.randn(4, 10), torch.zeros(10), torch.zeros(3, 2, dtype=torch.long))
