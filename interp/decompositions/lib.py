"""The local interaction basis (LIB) of a chain of layers, and its interaction graph.

Bushnaq et al. 2024, "The local interaction basis: identifying computationally-relevant
and sparsely interacting features in neural networks" (arXiv 2405.10928); reference code
``ApolloResearch/rib`` (``rib/interaction_algos.py``, ``rib/linalg.py``), settings
``basis_formula="jacobian"``, ``edge_formula="squared"``.

Setting
-------
A chain of node layers ``f^0 -> f^1 -> ... -> f^L`` with maps ``f^{l+1} = g_l(f^l)``.
Each activation is ``[N, T_l, d_l]`` (``T_l`` positions; a ``[N, d]`` layer is ``T = 1``).
The caller supplies ``f^0`` and the maps (a pure module, or hook-patched forward passes of
a TransformerBridge, see :func:`bridge_chain`).  Activations are centred (``mu_l`` = mean
over samples and positions) instead of folding biases into a constant dimension.

Algorithm (from the output layer backwards)
-------------------------------------------
1. PCA: ``G = Cov(f^l) = U D U^T``; drop ``D < pca_threshold * D_max``;
   ``R = U D^-1/2`` (whitening), ``R+ = D^1/2 U^T``.  The last layer's basis is ``C^L = U``.
2. Jacobian of ``h(f) = C^{l+1 T} (g_l(f) - mu_{l+1})`` at ``mu + alpha (f - mu)`` (alpha = 1
   for ``integration="gradient"``, else Gauss-Legendre points on [0, 1]).
3. ``M' = 1/(N T_{l+1}) sum_x sum_{t,i} sum_s J_{t,i,s} J_{t,i,s}^T`` (``d_l x d_l``), exactly
   (one vector-Jacobian product per output node and position) or, with ``probes=P``,
   unbiasedly from ``P`` Gaussian output probes (``E[(J^T v)(J^T v)^T] = J^T J``).
4. ``M = R+ M' R+^T = V Lambda V^T`` (descending); drop ``Lambda < lambda_threshold * Lambda_max``.
5. ``C^l = R V Lambda^1/2`` (importance-scaled basis), ``f_hat = C^T (f - mu)``,
   ``C+ = Lambda^-1/2 V^T R+`` so that ``C+ C = I`` and ``C C+`` is the projector onto the
   kept PCA subspace.  ``basis="pca"`` uses ``C = U`` at every layer (the PCA baseline).
6. Edges ``E^l_ij = 1/(N T_{l+1}) sum_{x,t} (sum_s int_0^1 d f_hat^{l+1}_{t,i}(alpha f_hat^l) /
   d f_hat^l_{s,j} * f_hat^l_{s,j} d alpha)^2`` with ``f^l = mu + C+^T f_hat^l``.

LayerNorm variance (the paper's appendix on LayerNorm; reference ``rib/interaction_algos.py``,
``isolate_ln_var``, and ``rib/linalg.py: masked_eigendecompose``).  A LayerNorm acts on its
input both linearly and through one scalar, the variance it divides by.  rib splits the norm in
two: the layer before the norm's output carries that variance as an extra coordinate (coordinate
0, ``[var, residual]``), and the next map divides by it.  ``fit_lib(..., isolated=[n_0, ...])``
treats the first ``n_l`` coordinates of layer l as such: the PCA step eigendecomposes only the
block of the other coordinates (``U = diag(I_n, U')``, ``D = (G_00.., D')``) and the rotation
step likewise (``V = diag(I_n, V')``, ``Lambda = (M_00.., Lambda')``), so each isolated
coordinate is one basis direction of its own (node 0, before the sorted rest), never mixed into
the others, and never dropped by ``lambda_threshold``.  :mod:`lib_transformer` builds such
``[var, residual]`` layers for residual streams that feed a LayerNorm / RMSNorm.

Memory and cost: Gram matrices ``d_l^2`` (float64) per layer; the VJP kernels replicate a
batch of samples once per output probe, ``rows = batch * probes_per_pass`` (bounded by
``max_rows``).  Exact ``M'`` needs ``T_{l+1} k_{l+1}`` VJPs per sample and integration
point; edges the same (restricted by ``max_edge_nodes`` / ``edge_positions="last"``).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import torch

from interp.attribution.ig import quadrature
from interp.results import check_fields

Map = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class LIBConfig:
    """Settings of a LIB (or PCA-baseline) fit."""

    basis: str = "lib"
    """``lib`` (interaction basis) or ``pca`` (rotation by the covariance eigenvectors, the baseline)."""
    pca_threshold: float = 1e-10
    """Drop PCA directions with variance below this fraction of the largest."""
    lambda_threshold: float = 1e-10
    """Drop LIB directions with interaction eigenvalue below this fraction of the largest."""
    integration: str = "gradient"
    """``gradient`` (alpha = 1 only) or ``gauss-legendre`` (``n_alpha`` points on [0, 1])."""
    n_alpha: int = 1
    """Integration points for ``gauss-legendre``."""
    probes: int | None = None
    """``None``: exact Jacobian sums; an int: that many Gaussian output probes per sample for M' (seed 0)."""
    edges: bool = True
    """Compute the interaction graph."""
    max_edge_nodes: int | None = None
    """Only the first (most important) nodes of each layer enter the edge computation."""
    edge_positions: str = "all"
    """Output positions summed in the edges: ``all`` or ``last``."""
    batch_size: int = 128
    """Samples per VJP pass."""
    max_rows: int = 65536
    """Largest replicated batch (samples x probes) in one pass."""
    dtype: str = "float64"
    """Precision of the Gram / interaction matrices and bases."""
    skip_first: int = 0
    """Positions excluded from the statistics (e.g. 1 for a BOS/attention-sink token whose massive
    activations would dominate the covariance): left out of the means, Gram matrices and the sums
    over t and s, and held at their actual values (never scaled or projected) in the Jacobians."""

    def __post_init__(self):
        check_fields(self, {"basis": ("lib", "pca"), "integration": ("gradient", "gauss-legendre"),
                            "edge_positions": ("all", "last")},
                     {**dict.fromkeys(("n_alpha", "batch_size", "max_rows", "probes", "max_edge_nodes"), 1),
                      "skip_first": 0})
        if not (0 <= self.pca_threshold < 1 and 0 <= self.lambda_threshold < 1):
            raise ValueError("LIBConfig thresholds must be in [0, 1)")


@dataclass
class LayerBasis:
    """The basis of one node layer (named in :attr:`LIBResult.names`): ``f_hat = C^T (f - mean)``,
    ``f ~ mean + C+^T f_hat``."""

    mean: torch.Tensor
    """[d] mean activation."""
    C: torch.Tensor
    """[d, k] basis (columns = directions, most important first)."""
    C_pinv: torch.Tensor
    """[k, d] left inverse: ``C_pinv @ C = I_k``."""
    importance: torch.Tensor
    """[k] Lambda (LIB) or variance (PCA, last layer) of each direction: isolated directions first, the rest descending."""
    U: torch.Tensor
    """[d, d_kept] PCA eigenvectors kept."""

    @property
    def k(self) -> int:
        return self.C.shape[1]

    def transform(self, f: torch.Tensor) -> torch.Tensor:
        """``[..., d] -> [..., k]``."""
        return (f.to(self.C.dtype) - self.mean) @ self.C

    def inverse(self, f_hat: torch.Tensor) -> torch.Tensor:
        """``[..., k] -> [..., d]``."""
        return f_hat.to(self.C.dtype) @ self.C_pinv + self.mean


@dataclass
class LIBResult:
    """Bases of every node layer and the interaction graph between consecutive layers."""

    names: list[str]
    """Node-layer names, input first."""
    bases: list[LayerBasis]
    """One basis per node layer."""
    edges: list[torch.Tensor | None]
    """``edges[l]`` is ``[k_{l+1}, k_l]``: strength of the edge from node j of layer l to node i of layer l+1."""
    seconds: float
    """Wall time of the fit."""
    config: dict = field(default_factory=dict)
    """The :class:`LIBConfig`, as a dict (``basis``: ``lib`` or ``pca``)."""

    def to_json(self, top: int = 20) -> dict:
        """Every summary number, and as ``nodes`` / ``edges`` the graph among the ``top`` nodes of each layer:
        ``{id, layer, index, importance}`` and the non-zero edges ``{source, target, weight}``."""
        nodes = [{"id": f"{self.names[l]}:{i}", "layer": l, "index": i, "importance": float(b.importance[i])}
                 for l, b in enumerate(self.bases) for i in range(min(top, b.k))]
        edges = [{"source": f"{self.names[l]}:{j}", "target": f"{self.names[l + 1]}:{i}",
                  "weight": float(E[i, j])} for l, E in enumerate(self.edges) if E is not None
                 for i, j in (E[:top, :top] > 0).nonzero().tolist()]
        return {
            "basis": self.config["basis"], "names": self.names, "seconds": self.seconds,
            "config": self.config, "dims": [int(b.mean.numel()) for b in self.bases],
            "kept": [b.k for b in self.bases], "importance": [b.importance[:top].tolist() for b in self.bases],
            "nodes": nodes, "edges": edges,
        }


# ---------------------------------------------------------------------------------------
# helpers

def _as3(f: torch.Tensor) -> torch.Tensor:
    return f.unsqueeze(1) if f.ndim == 2 else f


def _alphas(cfg: LIBConfig, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Points and weights of the integral over alpha: IG's Gauss-Legendre quadrature on [0, 1], or alpha = 1."""
    x, w = (torch.ones(1), torch.ones(1)) if cfg.integration == "gradient" else quadrature(cfg.n_alpha)
    return x.to(dtype), w.to(dtype)


def run_chain(f0: torch.Tensor, maps: Sequence[Map], batch_size: int = 4096) -> list[torch.Tensor]:
    """Activations of every node layer (native shapes), computed in batches without gradients."""
    acts = [f0]
    with torch.no_grad():
        for g in maps:
            acts.append(torch.cat([g(x) for x in acts[-1].split(batch_size)]))
    return acts


def _skip(T: int, skip: int) -> int:
    """Positions to skip in a layer with ``T`` positions (none for 2-D layers or too-short ones)."""
    return skip if 1 < T and skip < T else 0


def masked_eigh(A: torch.Tensor, n: int, threshold: float, why: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Kept eigenpairs (eigenvalues descending) of symmetric ``A``, its first ``n`` coordinates isolated.

    The first ``n`` eigenvectors are the unit vectors ``e_0 .. e_{n-1}`` with "eigenvalues" ``A_ii`` (each
    must be > 0, else the ``ValueError`` says ``why``), always kept; the rest are the eigenpairs of the block
    ``A[n:, n:]`` (rib's ``masked_eigendecompose``) above ``threshold`` times the largest of them.
    """
    D, U = torch.linalg.eigh(A[n:, n:])
    D, U = D.flip(0), U.flip(1)
    iso = A.diagonal()[:n]
    if not bool((iso > 0).all()):
        raise ValueError(f"an isolated coordinate (one of the first {n}) {why}")
    keep = D > threshold * D[:1].clamp_min(1e-300)
    return torch.cat([iso, D[keep]]), torch.block_diag(torch.eye(n).to(U), U[:, keep])


def pca(f: torch.Tensor, threshold: float, dtype=torch.float64, skip_first: int = 0, isolated: int = 0):
    """Mean ``[d]``, kept eigenvalues ``[m]`` (descending) and eigenvectors ``[d, m]`` of ``Cov(f)``.

    ``isolated``: the first this many coordinates are their own directions (:func:`masked_eigh`),
    placed first and always kept.
    """
    if f.ndim == 3:
        f = f[:, _skip(f.shape[1], skip_first):]
    x = f.reshape(-1, f.shape[-1]).to(dtype)
    xc = x - x.mean(0)
    why = "has zero variance, so it cannot be a basis direction; is it the LayerNorm statistic of this layer?"
    return x.mean(0), *masked_eigh(xc.T @ xc / x.shape[0], isolated, threshold, why)


def batched_vjp(h: Map, x: torch.Tensor, V: torch.Tensor, max_rows: int) -> torch.Tensor:
    """``J_h(x)^T v`` for each probe: ``x [B, *in]``, ``V [P, B, *out]`` -> ``[P, B, *in]``.

    The batch is replicated once per probe so that one backward pass gives all VJPs (works
    for any ``h``, including hook-patched model forwards).
    """
    B = V.shape[1]
    per = max(1, max_rows // B)
    out = []
    for v in V.split(per):
        p = v.shape[0]
        xr = x.unsqueeze(0).expand(p, *x.shape).reshape(p * B, *x.shape[1:]).detach().requires_grad_(True)
        with torch.enable_grad():
            y = h(xr)
            (grad,) = torch.autograd.grad((y.reshape(v.shape) * v.to(y.dtype)).sum(), xr)
        out.append(grad.reshape(p, B, *x.shape[1:]))
    return torch.cat(out)


def _unit_probes(T: int, k: int, B: int, dtype, device, positions) -> torch.Tensor:
    """``[len(positions) * k, B, T, k]``: one unit output probe per (position, node), for every sample."""
    eye = torch.eye(T * k, dtype=dtype, device=device).view(T, k, T, k)[list(positions)]
    return eye.reshape(-1, 1, T, k).expand(-1, B, -1, -1)


# ---------------------------------------------------------------------------------------
# fitting

def interaction_matrix(g: Map, f: torch.Tensor, mean_in: torch.Tensor, out_basis: LayerBasis,
                       cfg: LIBConfig) -> torch.Tensor:
    """``M' = 1/(N T_out) sum_x sum_{t,i,s} J_{t,i,s} J_{t,i,s}^T`` for ``h = C_out^T (g(f) - mu_out)``.

    ``f`` is layer l's activations in ``g``'s input shape (``[N, d]`` or ``[N, T, d]``).
    """
    dt = getattr(torch, cfg.dtype)
    N, d = f.shape[0], f.shape[-1]
    alphas, weights = _alphas(cfg, dt)
    gen = torch.Generator().manual_seed(0)
    M = torch.zeros(d, d, dtype=dt, device=f.device)

    def h(x):
        return (_as3(g(x)).to(dt) - out_basis.mean) @ out_basis.C

    with torch.no_grad():
        T_out = h(f[:1]).shape[1]
    mu = mean_in.to(f.dtype)
    sk_in = _skip(f.shape[1], cfg.skip_first) if f.ndim == 3 else 0
    sk_out = _skip(T_out, cfg.skip_first)
    for x in f.split(cfg.batch_size):
        B = x.shape[0]
        if cfg.probes is None:
            V = _unit_probes(T_out, out_basis.k, B, dt, f.device, range(sk_out, T_out))
        else:
            V = torch.randn(cfg.probes, B, T_out, out_basis.k, generator=gen, dtype=dt).to(f.device)
            V[:, :, :sk_out] = 0
        for a, w in zip(alphas, weights):
            # skipped positions stay as they are
            xa = torch.cat([x[:, :sk_in], mu + float(a) * (x[:, sk_in:] - mu)], 1)
            # [P, B, T, d], the skipped input positions left out
            Jt = batched_vjp(h, xa, V, cfg.max_rows).to(dt).reshape(V.shape[0], B, -1, d)[:, :, sk_in:]
            M += float(w) * torch.einsum("pbtd,pbte->de", Jt, Jt)
    return M / (N * (T_out - sk_out) * (cfg.probes or 1))  # probes: the mean over them


def fit_lib(f0: torch.Tensor, maps: Sequence[Map], names: Sequence[str] | None = None,
            cfg: LIBConfig | None = None, acts: list[torch.Tensor] | None = None,
            isolated: Sequence[int] | None = None) -> LIBResult:
    """Fit the LIB (or PCA) basis of every node layer of the chain ``f0 -> maps[0] -> ...``.

    ``f0`` is ``[N, d_0]`` or ``[N, T_0, d_0]``; ``maps[l]`` takes layer ``l``'s activations
    (same rank as produced) to layer ``l+1``'s.  ``acts`` may pass precomputed activations.
    ``isolated[l]``: how many leading coordinates of layer l are kept as their own basis
    directions (e.g. 1 for a ``[LayerNorm variance, residual]`` layer; module docstring).
    """
    cfg = cfg or LIBConfig()
    if not isinstance(f0, torch.Tensor) or f0.ndim not in (2, 3) or len(f0) < 2:
        raise ValueError(f"fit_lib: f0 must be [N>=2, d] or [N, T, d], got {getattr(f0, 'shape', type(f0))}")
    if len(maps) < 1:
        raise ValueError("fit_lib needs at least one map (two node layers)")
    names = list(names) if names is not None else [f"layer{l}" for l in range(len(maps) + 1)]
    if len(names) != len(maps) + 1:
        raise ValueError(f"fit_lib: {len(maps)} maps need {len(maps) + 1} names, got {len(names)}")
    iso = [0] * len(names) if isolated is None else [int(n) for n in isolated]
    if len(iso) != len(names) or any(n < 0 for n in iso):
        raise ValueError(f"fit_lib: isolated needs one count >= 0 per node layer ({len(names)}), got {isolated}")
    dt = getattr(torch, cfg.dtype)
    t0 = time.perf_counter()
    raw = acts if acts is not None else run_chain(f0, maps)
    for l, n in enumerate(iso):
        if n >= raw[l].shape[-1]:
            raise ValueError(f"fit_lib: layer {names[l]!r} has {raw[l].shape[-1]} coordinates, cannot isolate {n}")
    if not all(torch.isfinite(a).all() for a in raw):
        raise ValueError("fit_lib: activations contain NaN or inf")
    L = len(raw) - 1
    bases: list[LayerBasis | None] = [None] * (L + 1)
    for l in range(L, -1, -1):
        mean, D, U = pca(raw[l], cfg.pca_threshold, dt, skip_first=cfg.skip_first, isolated=iso[l])
        if cfg.basis == "pca" or l == L:
            bases[l] = LayerBasis(mean, U, U.T.contiguous(), D, U)
            continue
        R = U / D.sqrt()
        Rp = D.sqrt()[:, None] * U.T
        Mr = Rp @ interaction_matrix(maps[l], raw[l], mean, bases[l + 1], cfg) @ Rp.T
        Mr = (Mr + Mr.T) / 2
        why = f"of {names[l]!r} has no interaction with the next layer (its M entry is 0): no LIB direction"
        lam, V = masked_eigh(Mr, iso[l], cfg.lambda_threshold, why)
        bases[l] = LayerBasis(mean, R @ V * lam.sqrt(), (V / lam.sqrt()).T @ Rp, lam, U)  # C, C+
    edges = [edge_strengths(maps[l], raw[l], bases[l], bases[l + 1], cfg) if cfg.edges else None
             for l in range(L)]
    return LIBResult(names, bases, edges, time.perf_counter() - t0, asdict(cfg))


def edge_strengths(g: Map, f: torch.Tensor, b_in: LayerBasis, b_out: LayerBasis, cfg: LIBConfig) -> torch.Tensor:
    """``E_ij = 1/(N T_out) sum_{x,t} (sum_s int d f_hat_out[t,i] / d f_hat_in[s,j] * f_hat_in[s,j])^2``."""
    dt = getattr(torch, cfg.dtype)
    f3 = _as3(f)
    N, T = f3.shape[:2]
    k_in, k_out = (min(b.k, cfg.max_edge_nodes or b.k) for b in (b_in, b_out))
    alphas, weights = _alphas(cfg, dt)
    Cp_in = b_in.C_pinv[:k_in]
    Cd = b_out.C[:, :k_out]
    sk_in = _skip(T, cfg.skip_first)

    def h(fh, f_b):  # [B, T, k_in] -> [B, T_out, k_out]; f_b: the batch's activations (a replica per probe)
        x = fh @ Cp_in.to(fh.dtype) + b_in.mean.to(fh.dtype)  # dropped / unselected nodes sit at the mean
        # skipped positions keep their actual activation (of the batch's replica per probe)
        x = torch.cat([f_b[:, :sk_in].repeat(len(x) // len(f_b), 1, 1).to(x.dtype), x[:, sk_in:]], 1)
        x = x.squeeze(1) if f.ndim == 2 else x
        y = _as3(g(x.to(f.dtype)))
        return (y.to(dt) - b_out.mean) @ Cd

    with torch.no_grad():
        fh_all = b_in.transform(f3)[..., :k_in]  # [N, T, k_in]
        T_out = h(fh_all[:1], f3[:1]).shape[1]
    sk_out = _skip(T_out, cfg.skip_first)
    positions = [T_out - 1] if cfg.edge_positions == "last" else list(range(sk_out, T_out))
    n_pos = len(positions)
    E = torch.zeros(k_out, k_in, dtype=dt, device=f.device)
    for fh, f_b in zip(fh_all.split(cfg.batch_size), f3.split(cfg.batch_size)):
        B = fh.shape[0]
        V = _unit_probes(T_out, k_out, B, dt, f.device, positions)  # [n_pos*k_out, B, T_out, k_out]
        acc = sum(float(w) * batched_vjp(lambda z: h(z, f_b), a * fh, V, cfg.max_rows)
                  for a, w in zip(alphas, weights))  # [n_pos*k_out, B, T, k_in]
        # sum over the input positions s, squared, summed over output positions and samples
        E += ((acc * fh)[:, :, sk_in:].sum(2) ** 2).reshape(n_pos, k_out, B, k_in).sum((0, 2))
    return E / (N * n_pos)
