"""LIB: whitening, invertibility, Jacobians against torch.autograd.functional, planted structure."""

from __future__ import annotations

import pytest
import torch
from torch.autograd.functional import jacobian

from interp.decompositions.lib import LIBConfig, batched_vjp, fit_lib, interaction_matrix, pca

torch.set_default_dtype(torch.float32)


def _data(N=400, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(d, d, generator=g, dtype=torch.float64)
    return torch.randn(N, d, generator=g, dtype=torch.float64) @ A + 0.3


def test_whitened_activations_have_identity_covariance():
    f = _data()
    mean, D, U = pca(f, 1e-12)
    w = (f - mean) @ U / D.sqrt()
    cov = w.T @ w / f.shape[0]
    assert torch.allclose(cov, torch.eye(6, dtype=torch.float64), atol=1e-10)  # float64 whitening: ~1e6 eps64


def _two_layer_maps(d=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    W1 = torch.randn(d, d, generator=g, dtype=torch.float64)
    W2 = torch.randn(d, 4, generator=g, dtype=torch.float64)
    return [lambda x: torch.tanh(x @ W1), lambda y: y @ W2 + 0.1 * y[:, :4] ** 2]


@pytest.mark.parametrize("basis", ["lib", "pca"])
def test_transform_is_invertible_on_kept_subspace(basis):
    f = _data()
    res = fit_lib(f, _two_layer_maps(), cfg=LIBConfig(basis=basis, edges=False))
    for b in res.bases:
        eye = torch.eye(b.k, dtype=torch.float64)
        assert torch.allclose(b.C_pinv @ b.C, eye, atol=1e-8)  # float64 pseudo-inverse: ~1e8 eps64 x cond
        # C C+ is a projector onto span(C); with no LIB direction dropped it is the
        # orthogonal projector onto the kept PCA subspace (the identity when nothing is dropped)
        P = b.C @ b.C_pinv
        assert torch.allclose(P @ P, P, atol=1e-8)  # float64 projector, as above
        if b.k == b.U.shape[1]:
            assert torch.allclose(P, b.U @ b.U.T, atol=1e-8)  # float64 projector, as above
    b0 = res.bases[0]
    assert b0.k == 6
    # float64 pseudo-inverse, as above
    assert torch.allclose(b0.C @ b0.C_pinv, torch.eye(6, dtype=torch.float64), atol=1e-8)
    assert torch.allclose(b0.inverse(b0.transform(f)), f, atol=1e-8)  # float64 round trip, as above


def test_batched_vjp_matches_autograd_jacobian():
    g = torch.Generator().manual_seed(2)
    W = torch.randn(4, 3, generator=g, dtype=torch.float64)

    def h(x):  # [B, T=3, 4] -> [B, T=2, 3], mixes positions nonlinearly
        att = torch.softmax(x @ x[:, -1:].transpose(1, 2), dim=1)  # [B, 3, 1]
        return torch.stack([torch.tanh((att * x).sum(1) @ W), (x[:, 0] * x[:, 1]) @ W], 1)

    x = torch.randn(5, 3, 4, generator=g, dtype=torch.float64)
    eye = torch.zeros(6, 5, 2, 3, dtype=torch.float64)
    for t in range(2):
        for i in range(3):
            eye[t * 3 + i, :, t, i] = 1
    got = batched_vjp(h, x, eye, max_rows=7)  # [6, B, 3, 4]
    for b in range(5):
        J = jacobian(lambda z: h(z[None])[0], x[b])  # [2, 3, 3, 4]
        assert torch.allclose(got[:, b], J.reshape(6, 3, 4), atol=1e-10)  # float64 Jacobian vs autograd: ~1e6 eps64


def test_interaction_matrix_and_edges_match_definition():
    """M' and the integrated edge formula against per-sample autograd Jacobians."""
    f = _data(N=30, d=5, seed=3)
    g = torch.Generator().manual_seed(4)
    W1 = torch.randn(5, 4, generator=g, dtype=torch.float64)
    maps = [lambda x: torch.tanh(x @ W1)]
    for integ, n_alpha in (("gradient", 1), ("gauss-legendre", 4)):
        cfg = LIBConfig(integration=integ, n_alpha=n_alpha, batch_size=7)
        res = fit_lib(f, maps, cfg=cfg)
        b0, b1 = res.bases
        Mp = interaction_matrix(maps[0], f, b0.mean, b1, cfg)
        import numpy as np

        xs, ws = np.polynomial.legendre.leggauss(n_alpha) if integ != "gradient" else (np.array([1.0]), np.array([2.0]))
        alphas, weights = (xs + 1) / 2, ws / 2
        M_ref = torch.zeros(5, 5, dtype=torch.float64)
        E_ref = torch.zeros(b1.k, b0.k, dtype=torch.float64)
        for x in f:
            for a, w in zip(alphas, weights):
                J = jacobian(lambda z: (maps[0](z[None])[0] - b1.mean) @ b1.C, b0.mean + a * (x - b0.mean))
                M_ref += w * J.T @ J
            fh = b0.transform(x)
            grad = sum(w * jacobian(lambda z: b1.transform(maps[0](b0.inverse(z)[None])[0]), a * fh)
                       for a, w in zip(alphas, weights))
            E_ref += (grad * fh) ** 2
        assert torch.allclose(Mp, M_ref / 30, rtol=1e-8, atol=1e-12)  # float64 probes vs the definition
        assert torch.allclose(res.edges[0], E_ref / 30, rtol=1e-8, atol=1e-12)  # float64, as above


def test_random_probes_estimate_interaction_matrix():
    f = _data(N=200, d=5, seed=5)
    W = torch.randn(5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    maps = [lambda x: torch.tanh(x @ W)]
    exact = fit_lib(f, maps, cfg=LIBConfig(edges=False))
    b0, b1 = exact.bases
    M = interaction_matrix(maps[0], f, b0.mean, b1, LIBConfig())
    Mp = interaction_matrix(maps[0], f, b0.mean, b1, LIBConfig(probes=64))
    assert (Mp - M).norm() < 0.1 * M.norm()


def test_planted_interaction_structure_is_recovered():
    """x = Q [s; n]: y1 = s1 s2, y2 = 2 s3, y3 = 3 s4; n (large variance) never reaches y."""
    g = torch.Generator().manual_seed(7)
    N = 4000
    s = torch.randn(N, 4, generator=g, dtype=torch.float64)
    n = 5 * torch.randn(N, 2, generator=g, dtype=torch.float64)
    Q, _ = torch.linalg.qr(torch.randn(6, 6, generator=g, dtype=torch.float64))
    x = torch.cat([s, n], 1) @ Q.T  # mixed coordinates

    def layer(x):
        z = x @ Q  # back to [s; n]
        return torch.stack([z[:, 0] * z[:, 1], 2 * z[:, 2], 3 * z[:, 3]], 1)

    lib = fit_lib(x, [layer], cfg=LIBConfig(lambda_threshold=1e-8))
    pca_res = fit_lib(x, [layer], cfg=LIBConfig(basis="pca"))
    b0 = lib.bases[0]
    assert b0.k == 4, f"LIB should keep the 4 relevant directions, kept {b0.k}"
    assert pca_res.bases[0].k == 6
    # the kept reading directions span exactly the s-subspace: C^T x depends on s only
    read = Q.T @ b0.C  # rows: [s; n] coordinates
    assert read[4:].abs().max() < 1e-6 * read.abs().max()  # 0 in exact arithmetic (n never reaches y); float64
    # importance order: s4 (9), s3 (4), then the s1/s2 pair (about 1 each)
    # sampling error of N = 4000 draws: ~sqrt(2/N) = 2% per Gaussian second moment (more for s1 s2); 0.15 ~ 5 sd
    assert b0.importance[0] / b0.importance[1] == pytest.approx(9 / 4, rel=0.15)
    assert b0.importance[2] / b0.importance[1] == pytest.approx(1 / 4, rel=0.15)
    # output PCA order y3, y2, y1; edges: y3 <- node0 only, y2 <- node1 only, y1 <- nodes 2, 3
    E = lib.edges[0] / lib.edges[0].max()
    expected = torch.zeros(3, 4, dtype=torch.bool)
    expected[0, 0] = expected[1, 1] = expected[2, 2] = expected[2, 3] = True
    assert (E[expected] > 0.01).all()
    assert E[~expected].max() < 1e-3  # 0 in exact arithmetic; sampled: 1e-3 of max
    # the PCA baseline spreads y1's inputs over more (non-zero) edges than LIB needs
    assert (pca_res.edges[0] / pca_res.edges[0].max() > 1e-3).sum() > (E > 1e-3).sum()


def test_bad_input_errors():
    with pytest.raises(ValueError, match="basis"):
        LIBConfig(basis="ica")
    with pytest.raises(ValueError, match="integration"):
        LIBConfig(integration="simpson")
    with pytest.raises(ValueError, match="max_edge_nodes must be >= 1"):  # 0 once meant silently no edges
        LIBConfig(max_edge_nodes=0)
    with pytest.raises(ValueError, match="names"):
        fit_lib(_data(), _two_layer_maps(), names=["a", "b"])
    with pytest.raises(ValueError, match="f0 must be"):
        fit_lib(torch.randn(3), _two_layer_maps())
    with pytest.raises(ValueError, match="NaN"):
        fit_lib(torch.full((5, 6), float("nan"), dtype=torch.float64), _two_layer_maps())
    with pytest.raises(ValueError, match="at least one map"):
        fit_lib(_data(), [])


def test_skip_first_position_matches_definition():
    """With skip_first=1, position 0 is left out of the statistics and held fixed in the Jacobians."""
    g = torch.Generator().manual_seed(9)
    W = torch.randn(4, 3, generator=g, dtype=torch.float64)
    f = torch.randn(6, 4, 4, generator=g, dtype=torch.float64)
    f[:, 0] *= 30  # a "massive" first position

    def layer(x):  # [B, T, 4] -> [B, T, 3]; every position reads the first one
        return torch.tanh(x @ W + 0.1 * x[:, :1] @ W) + 0.1 * torch.cumsum(x, 1) @ W

    cfg = LIBConfig(skip_first=1, integration="gauss-legendre", n_alpha=2)
    res = fit_lib(f, [layer], cfg=cfg)
    b0, b1 = res.bases
    assert torch.allclose(b0.mean, f[:, 1:].reshape(-1, 4).mean(0))  # allclose defaults: float32 means
    import numpy as np

    xs, ws = np.polynomial.legendre.leggauss(2)
    alphas, weights = (xs + 1) / 2, ws / 2
    M_ref = torch.zeros(4, 4, dtype=torch.float64)
    E_ref = torch.zeros(b1.k, b0.k, dtype=torch.float64)
    for x in f:
        for a, w in zip(alphas, weights):
            J = jacobian(lambda z: (layer(torch.cat([x[:1], z])[None])[0, 1:] - b1.mean) @ b1.C,
                         b0.mean + a * (x[1:] - b0.mean))  # [3, k1, 3, 4]
            M_ref += w * torch.einsum("tisd,tise->de", J, J)
        fh = b0.transform(x[1:])
        grad = sum(w * jacobian(lambda z: b1.transform(layer(torch.cat([x[:1], b0.inverse(z)])[None])[0, 1:]),
                                a * fh) for a, w in zip(alphas, weights))  # [3, k1, 3, k0]
        E_ref += ((grad * fh).sum(2) ** 2).sum(0)
    Mp = interaction_matrix(layer, f, b0.mean, b1, cfg)
    assert torch.allclose(Mp, M_ref / (6 * 3), rtol=1e-8, atol=1e-12)
    assert torch.allclose(res.edges[0], E_ref / (6 * 3), rtol=1e-8, atol=1e-12)


def _ln_split_chain(d=6, seed=3):
    """x -> f1 = [var(r), r] with r = W0 x (the layer before a LayerNorm's output, as in rib's LayerNormIn)
    -> y = W1 (r - mean r) / sqrt(var + eps) (LayerNormOut dividing by the *given* variance, then a linear map)."""
    g = torch.Generator().manual_seed(seed)
    W0 = torch.randn(d, d, generator=g, dtype=torch.float64)
    W1 = torch.randn(d, 5, generator=g, dtype=torch.float64)

    def ln_in(x):
        r = x @ W0
        return torch.cat([(r - r.mean(-1, keepdim=True)).pow(2).mean(-1, keepdim=True), r], -1)

    def ln_out(f):
        var, r = f[..., :1], f[..., 1:]
        return ((r - r.mean(-1, keepdim=True)) / (var + 1e-5).sqrt()) @ W1

    return [ln_in, ln_out]


def test_ln_variance_coordinate_is_isolated():
    """With ``isolated=[0, 1, 0]`` the variance coordinate of the layer before LN-out is one basis direction of
    its own, C[:, 0] = sqrt(M'_00) e_0 with M'_00 = E_x sum_i (d yhat_i / d var)^2 computed here by autograd,
    and no other direction touches it; without isolation the variance mixes into the other directions."""
    f = _data(N=300)
    maps = _ln_split_chain()
    res = fit_lib(f, maps, cfg=LIBConfig(edges=False), isolated=[0, 1, 0])
    b = res.bases[1]
    assert b.C.shape[0] == 7
    assert (b.C[1:, 0] == 0).all() and (b.C[0, 1:] == 0).all()  # exact: block-diagonal rotations
    assert (b.C_pinv[0, 1:] == 0).all() and (b.C_pinv[1:, 0] == 0).all()
    torch.testing.assert_close(b.C_pinv @ b.C, torch.eye(b.k, dtype=torch.float64), atol=1e-8, rtol=0)  # float64 eigh
    # independent M'_00: the output basis is the last layer's PCA rotation U (centred)
    f1 = maps[0](f)
    out = res.bases[2]
    M00 = 0.0
    for x in f1:
        J = jacobian(lambda z: (maps[1](z[None])[0] - out.mean) @ out.C, x)  # [k_out, 7]
        M00 += float((J[:, 0] ** 2).sum())
    M00 /= f1.shape[0]
    # float64 sums over 300 samples x 5 outputs; relative 1e-9 is ~1e5 x eps64
    assert float(b.C[0, 0]) == pytest.approx(M00 ** 0.5, rel=1e-9)
    assert float(b.importance[0]) == pytest.approx(M00 * float(f1[:, 0].var(unbiased=False)), rel=1e-9)
    # f_hat_0 is the centred variance, scaled: the LN statistic, alone
    fh = b.transform(f1)
    torch.testing.assert_close(fh[:, 0], (f1[:, 0] - f1[:, 0].mean()) * M00 ** 0.5, atol=1e-9, rtol=1e-9)
    # without isolation the variance coordinate is spread over the directions
    plain = fit_lib(f, maps, cfg=LIBConfig(edges=False)).bases[1]
    assert float(plain.C[0, 1:].abs().max()) > 1e-3
    with pytest.raises(ValueError, match="one count >= 0 per node layer"):
        fit_lib(f, maps, cfg=LIBConfig(edges=False), isolated=[1, 1])
    with pytest.raises(ValueError, match="zero variance"):
        fit_lib(torch.cat([torch.ones(300, 1, dtype=torch.float64), f], 1), [lambda x: x[:, 1:] @ torch.ones(6, 2, dtype=torch.float64)],
                cfg=LIBConfig(edges=False), isolated=[1, 0])


@pytest.mark.parametrize("n", [1, 3, 8])
def test_alpha_integral_is_igs_gauss_legendre_rule(n):
    """LIB's integral over alpha uses the one quadrature, interp.attribution.ig.quadrature: the same points
    and weights, which integrate x^k on [0, 1] exactly (1 / (k + 1)) up to degree 2n - 1, the defining
    property of an n-point Gauss-Legendre rule; the gradient mode is the single point alpha = 1."""
    from interp.attribution.ig import quadrature
    from interp.decompositions.lib import _alphas

    x, w = _alphas(LIBConfig(integration="gauss-legendre", n_alpha=n), torch.float64)
    qx, qw = quadrature(n)
    assert torch.equal(x, qx) and torch.equal(w, qw)
    for k in range(2 * n):
        # float64 rounding of nodes and weights: about 1e-16 per term, n <= 8 terms; 1e-13 is a wide margin
        assert abs(float((w * x ** k).sum()) - 1 / (k + 1)) < 1e-13, k
    # degree 2n is not exact (its error, 3.6e-10 at n = 8, is far above the rounding above): the check
    # above is the rule's own degree, not a rule that integrates more
    assert abs(float((w * x ** (2 * n)).sum()) - 1 / (2 * n + 1)) > 1e-12
    g = _alphas(LIBConfig(integration="gradient"), torch.float32)
    assert g[0].tolist() == [1.0] and g[1].tolist() == [1.0]
