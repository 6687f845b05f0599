"""Semi-nonnegative matrix factorisation (SNMF) of MLP hidden activations.

Shafran, Geiger & Geva 2025, "Decomposing MLP activations into interpretable features via
semi-nonnegative matrix factorization" (arXiv 2506.10920); updates from Ding, Li & Jordan
2010, "Convex and semi-nonnegative matrix factorizations" (TPAMI).  Reference code:
``ordavid-s/snmf-mlp-decomposition``, ``factorization/seminmf.py``.

Algorithm
---------
The MLP activations (``blocks.L.mlp.hook_post``) of ``n`` tokens are the columns of
``A`` (``d_a x n``).  We find ``A ~ Z Y`` with ``Z`` (``d_a x k``) mixed-sign and sparse
(each column is a *neuron group*) and ``Y`` (``k x n``) non-negative (per-token
coefficients).  In Ding's notation ``F = Z`` and ``G = Y^T``; one iteration is

1. ``F <- A G (G^T G + ridge I)^-1``                     (exact least squares for F)
2. winner-take-all: keep the ``ceil(sparsity * d_a)`` largest ``|F_ij|`` per column
3. ``c_j = ||G_:j||``; ``G_:j /= c_j``; ``F_:j *= c_j``    (scale fix, ``F G^T`` unchanged)
4. ``P = A^T F``, ``Q = F^T F``, ``X+- = (|X| +- X)/2``;
   ``G <- G * sqrt((P+ + G Q-) / (P- + G Q+ + eps))``   (keeps ``G >= 0``; monotone in G)
5. keep the best ``||A - F G^T||_F^2``; stop when it has not improved by more than
   ``tol * ||A||_F^2`` for ``patience`` iterations.

Without step 2 every step is non-increasing in the loss (step 1 is a least-squares
optimum, step 4 is Ding's auxiliary-function update); WTA can raise it, which is why the
best iterate is kept.

Kernels
-------
Rows of ``A`` are tokens, so data are passed as ``X = A^T`` with shape ``[n, d_a]``, the
layout of :class:`interp.store.ActivationStore` rows.  The default kernel is *batched*:
``n_restarts`` independent factorisations advance together as ``[r, ., .]`` batched
matmuls, and ``X`` is visited in ``chunk_size``-row chunks (moved to ``device`` per chunk),
so ``X`` may live in CPU memory while the factors sit on the GPU.  The loss is summed chunk
by chunk from the residual (the expansion ``||X||^2 - 2 sum(P G) + sum(G^T G Q)`` loses
too much to cancellation in float32).  The plain
reference kernel (:func:`snmf_reference`) is a line-by-line transcription of the
updates; ``SNMFConfig(fast=False)`` or ``INTERP_REFERENCE=1`` (interp/fastpath.py) forces it
(one restart), ``SNMFResult.path`` says which kernel ran, and ``tests/test_snmf.py`` checks that
both agree.

Memory: factors ``r * (d_a + n) * k`` floats (twice, for the best iterate) plus one chunk
``r * chunk_size * d_a`` on the device; e.g. 100k tokens x 1536 neurons x k=50 x 4 restarts is
~160 MB of factors, with ``X`` (614 MB in float32) left on the CPU.  Time per iteration: the
Gram products, ``O(r * n * d_a * k)``; the ``k x k`` solve is negligible.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Sequence

import torch

from interp.fastpath import use_fast
from interp.results import check_fields

INITS = ("random", "svd", "kmeans")


@dataclass
class SNMFConfig:
    """Settings of one SNMF fit (defaults from Shafran et al.'s released code)."""

    k: int = 50
    """Number of features (columns of Z, rows of Y)."""
    sparsity: float = 0.01
    """Fraction of entries kept per column of Z by winner-take-all; 1.0 disables WTA."""
    init: str = "random"
    """``random`` (G ~ U(0,1), F ~ N(0,1)), ``svd`` (F = U sqrt(S), G = sqrt(S) V^T clamped) or ``kmeans``
    (15 Lloyd iterations)."""
    max_iter: int = 2000
    """Maximum number of multiplicative-update iterations."""
    patience: int = 1500
    """Stop after this many iterations without a loss improvement larger than ``tol``."""
    tol: float = 1e-4
    """Improvement threshold, relative to ``||A||_F^2`` (the reference code uses an absolute 1e-4)."""
    ridge: float = 1e-6
    """Ridge added to G^T G before the least-squares solve for F."""
    eps: float = 1e-6
    """Added to the denominator of the G update, and the floor for initial G."""
    n_restarts: int = 1
    """Independent fits run side by side in one batched kernel; the lowest loss wins."""
    seed: int = 0
    """Seed for the initialisation."""
    chunk_size: int = 8192
    """Rows of X processed per kernel call (bounds device memory)."""
    fast: bool | None = None
    """The batched kernel (``None``: unless ``INTERP_REFERENCE=1``), or with ``False`` the plain
    reference transcription (one restart)."""
    device: str | None = None
    """Device for the factors; ``None`` uses the device of X."""

    def __post_init__(self):
        check_fields(self, {"init": INITS}, dict.fromkeys(("k", "max_iter", "patience", "n_restarts", "chunk_size"), 1))
        if not 0.0 < self.sparsity <= 1.0:
            raise ValueError(f"SNMFConfig.sparsity must be in (0, 1], got {self.sparsity}")
        if self.tol < 0 or self.ridge < 0 or self.eps <= 0:
            raise ValueError("SNMFConfig.tol and ridge must be >= 0 and eps > 0")


@dataclass
class SNMFResult:
    """A fitted factorisation ``A ~ Z Y`` (``A`` = activations, neurons x tokens)."""

    Z: torch.Tensor
    """[d_a, k] mixed-sign sparse neuron groups (one feature per column)."""
    Y: torch.Tensor
    """[k, n] non-negative per-token coefficients."""
    loss: float
    """Best squared reconstruction error ``||A - Z Y||_F^2``."""
    rel_loss: float
    """``loss / ||A||_F^2`` (fraction of the squared norm unexplained)."""
    losses: list[float]
    """Loss per iteration of the winning restart."""
    best_iter: int
    """Iteration at which the returned factors were found."""
    n_iter: int
    """Iterations run (early stopping may end before ``max_iter``)."""
    seconds: float
    """Wall time of the fit."""
    config: dict = field(default_factory=dict)
    """The :class:`SNMFConfig` used, as a dict."""
    path: str = "batched"
    """The kernel that ran: ``batched`` or ``reference``."""

    @property
    def k(self) -> int:
        return self.Z.shape[1]

    def to_json(self) -> dict:
        """Every field but the factors, and their shapes ``k``, ``d_a``, ``n``."""
        return {"k": self.k, "d_a": self.Z.shape[0], "n": self.Y.shape[1],
                **{f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("Z", "Y")}}


# ---------------------------------------------------------------------------------------
# initialisation

def init_svd(X: torch.Tensor, k: int, eps: float, dev, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``F = V sqrt(S)``, ``G = U sqrt(S)`` clamped to ``>= eps``, for ``X = U S V^T`` (via X^T X)."""
    gram = torch.zeros(X.shape[1], X.shape[1], device=dev, dtype=torch.float64)
    for xc in X.split(chunk):
        xc = xc.to(dev, torch.float64)
        gram += xc.T @ xc
    evals, evecs = torch.linalg.eigh(gram)  # ascending
    S = evals.flip(0)[:k].clamp_min(0).sqrt()  # the k largest singular values
    V = evecs.flip(1)[:, :k]  # [d, k]
    G = torch.cat([(xc.to(dev, torch.float64) @ V / S.clamp_min(1e-12) * S.sqrt()).float()
                   for xc in X.split(chunk)])  # U sqrt(S), U = X V / S chunk by chunk
    return (V * S.sqrt()).float(), G.clamp_min(eps)


def init_kmeans(X: torch.Tensor, k: int, eps: float, dev, chunk: int,
                gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means, 15 iterations: ``F`` = centroids, ``G`` = one-hot assignments, floored at ``eps``."""
    n, d = X.shape
    if k > n:
        raise ValueError(f"init='kmeans' needs k <= n ({n}), got k={k}")
    centres = X[torch.randperm(n, generator=gen)[:k]].to(dev, torch.float32)
    labels = torch.empty(n, dtype=torch.long, device=dev)
    for _ in range(15):
        c2 = (centres * centres).sum(1)
        sums = torch.zeros(k, d, device=dev)
        for s in range(0, n, chunk):
            xc = X[s:s + chunk].to(dev, torch.float32)
            lab = (c2[None] - 2 * xc @ centres.T).argmin(1)
            labels[s:s + chunk] = lab
            sums.index_add_(0, lab, xc)
        counts = torch.bincount(labels, minlength=k)
        empty = counts == 0
        centres = sums / counts.clamp_min(1)[:, None]
        if empty.any():  # re-seed empty clusters from random rows
            centres[empty] = X[torch.randint(0, n, (int(empty.sum()),), generator=gen)].to(dev, torch.float32)
    return centres.T.contiguous(), torch.nn.functional.one_hot(labels, k).float().clamp_min(eps)


def _init(X, cfg: SNMFConfig, dev, restart: int, gen: torch.Generator):
    n, d = X.shape
    if cfg.init == "svd" and restart == 0:
        return init_svd(X, cfg.k, cfg.eps, dev, cfg.chunk_size)
    if cfg.init == "kmeans":
        return init_kmeans(X, cfg.k, cfg.eps, dev, cfg.chunk_size, gen)
    # random (and the extra restarts of an svd init)
    G = torch.rand(n, cfg.k, generator=gen).clamp_min(cfg.eps).to(dev)
    F = torch.randn(d, cfg.k, generator=gen).to(dev)
    return F, G


# ---------------------------------------------------------------------------------------
# kernels

def wta_(F: torch.Tensor, sparsity: float) -> torch.Tensor:
    """In place: keep the ``ceil(sparsity * d)`` largest |entries| of each column of ``F [..., d, k]`` (all of
    them at sparsity 1)."""
    top = F.abs().topk(max(1, math.ceil(sparsity * F.shape[-2])), dim=-2).indices
    return F.mul_(torch.zeros_like(F, dtype=torch.bool).scatter_(-2, top, True))


def _norm2(X: torch.Tensor, chunk: int) -> float:
    """``||X||_F^2`` in float64, chunk by chunk."""
    return sum(float((xc.double() ** 2).sum()) for xc in X.split(chunk))


def snmf_reference(X: torch.Tensor, F: torch.Tensor, G: torch.Tensor, cfg: SNMFConfig):
    """Plain transcription of the updates for one restart (``X [n,d]``, ``F [d,k]``, ``G [n,k]``).

    Returns ``(F_best, G_best, losses, best_iter, n_iter)``; ``losses[best_iter]`` is the
    loss of the returned factors.
    """
    A = X.to(F.device, torch.float32).T  # [d, n]
    eye = torch.eye(F.shape[1], device=F.device)
    best, best_F, best_G, best_it, since, losses = math.inf, F.clone(), G.clone(), 0, 0, []
    norm2 = _norm2(X, cfg.chunk_size)
    it = 0
    for it in range(cfg.max_iter):
        F = A @ G @ torch.linalg.inv(G.T @ G + cfg.ridge * eye)
        F = wta_(F, cfg.sparsity)
        c = G.norm(dim=0).clamp_min(1e-12)
        G = G / c
        F = F * c
        P, Q = A.T @ F, F.T @ F
        Pp, Pm = (P.abs() + P) / 2, (P.abs() - P) / 2
        Qp, Qm = (Q.abs() + Q) / 2, (Q.abs() - Q) / 2
        G = G * torch.sqrt((Pp + G @ Qm) / (Pm + G @ Qp + cfg.eps))
        loss = float(((A - F @ G.T).double() ** 2).sum())
        losses.append(loss)
        if loss < best - cfg.tol * norm2:
            best, best_F, best_G, best_it, since = loss, F.clone(), G.clone(), it, 0
        else:
            since += 1
            if since >= cfg.patience:
                break
    return best_F, best_G, losses, best_it, it + 1


def snmf_batched(X: torch.Tensor, F: torch.Tensor, G: torch.Tensor, cfg: SNMFConfig):
    """Batched, chunked kernel: ``F [r,d,k]``, ``G [r,n,k]`` advance together.

    Returns ``(F_best [r,d,k], G_best [r,n,k], losses [iters, r], best_iter [r], n_iter)``;
    ``losses[best_iter[i]][i]`` is the loss of restart ``i``'s returned factors.
    """
    dev = F.device
    r, d, k = F.shape
    ch = cfg.chunk_size
    eye = torch.eye(k, device=dev)
    norm2 = _norm2(X, ch)
    GtG = G.transpose(1, 2) @ G
    best = torch.full((r,), math.inf, dtype=torch.float64, device=dev)
    best_F, best_G = F.clone(), G.clone()
    best_it = torch.zeros(r, dtype=torch.long)
    since = torch.zeros(r, dtype=torch.long)
    losses: list[list[float]] = []
    it = 0
    for it in range(cfg.max_iter):
        # 1. least-squares F = X^T G (G^T G + ridge)^-1
        XtG = torch.zeros(r, d, k, device=dev)
        for xc, Gc in zip(X.split(ch), G.split(ch, dim=1)):
            XtG += torch.einsum("nd,rnk->rdk", xc.to(dev, torch.float32), Gc)
        F = torch.linalg.solve(GtG + cfg.ridge * eye, XtG.transpose(1, 2)).transpose(1, 2)
        # 2. winner-take-all on the columns of F, 3. scale fix
        wta_(F, cfg.sparsity)
        c = G.norm(dim=1, keepdim=True).clamp_min(1e-12)  # [r,1,k]
        G = G / c
        F = F * c
        # 4. multiplicative G update, chunk by chunk; accumulate the loss terms
        Q = F.transpose(1, 2) @ F
        Qp, Qm = Q.clamp_min(0), (-Q).clamp_min(0)
        loss = torch.zeros(r, dtype=torch.float64, device=dev)
        GtG = torch.zeros(r, k, k, device=dev)
        for xc, Gc in zip(X.split(ch), G.split(ch, dim=1)):  # Gc is a view: the update writes into G
            xc = xc.to(dev, torch.float32)
            P = torch.einsum("nd,rdk->rnk", xc, F)
            Gc *= torch.sqrt((P.clamp_min(0) + Gc @ Qm) / ((-P).clamp_min(0) + Gc @ Qp + cfg.eps))
            GtG += Gc.transpose(1, 2) @ Gc
            loss += ((xc - Gc @ F.transpose(1, 2)) ** 2).sum((1, 2)).double()
        losses.append(loss.tolist())
        # 5. keep the best iterate per restart; early stopping
        better = loss < best - cfg.tol * norm2  # on the factors' device
        best = torch.where(better, loss, best)
        best_F[better] = F[better]
        best_G[better] = G[better]
        best_it[better.cpu()] = it
        since = torch.where(better.cpu(), 0, since + 1)
        if bool((since >= cfg.patience).all()):
            break
    return best_F, best_G, losses, best_it, it + 1


def fit_snmf(X: torch.Tensor, cfg: SNMFConfig | None = None) -> SNMFResult:
    """Factorise activation rows ``X [n, d_a]`` (tokens x neurons) as ``X^T ~ Z Y``.

    ``X`` may sit on the CPU (also in float16); the factors live on ``cfg.device``.
    """
    import time

    cfg = cfg or SNMFConfig()
    if not isinstance(X, torch.Tensor) or X.ndim != 2 or X.shape[0] < 2 or X.shape[1] < 1:
        raise ValueError(f"fit_snmf needs a 2-D X [n>=2 tokens, d_a], got {getattr(X, 'shape', type(X))}")
    n, d = X.shape
    if not torch.isfinite(X).all():
        raise ValueError("fit_snmf: X contains NaN or inf")
    if cfg.k > min(n, d) and cfg.init == "svd":
        raise ValueError(f"init='svd' needs k <= min(n, d_a) = {min(n, d)}, got k={cfg.k}")
    dev = torch.device(cfg.device) if cfg.device else X.device
    gen = torch.Generator().manual_seed(cfg.seed)
    t0 = time.perf_counter()
    fast = use_fast(cfg.fast)
    if not fast:
        F, G, loss_list, best_it, n_iter = snmf_reference(X, *_init(X, cfg, dev, 0, gen), cfg)
    else:
        F0, G0 = map(torch.stack, zip(*[_init(X, cfg, dev, i, gen) for i in range(cfg.n_restarts)]))
        Fb, Gb, losses, best_its, n_iter = snmf_batched(X, F0, G0, cfg)
        w = int(torch.tensor(losses, dtype=torch.float64)[best_its, torch.arange(cfg.n_restarts)].argmin())
        F, G, best_it = Fb[w], Gb[w], int(best_its[w])
        loss_list = [row[w] for row in losses]
    best_loss = loss_list[best_it]
    return SNMFResult(Z=F, Y=G.T.contiguous(), loss=best_loss, losses=loss_list, best_iter=best_it,
                      rel_loss=best_loss / max(_norm2(X, cfg.chunk_size), 1e-30), n_iter=n_iter,
                      seconds=time.perf_counter() - t0, config=asdict(cfg),
                      path="batched" if fast else "reference")


# ---------------------------------------------------------------------------------------
# activations from a live model or from the activation store

@dataclass
class ActivationSet:
    """Activation rows of one hook (e.g. ``blocks.10.mlp.hook_post``), the token and context of each row."""

    X: torch.Tensor
    """[n, d] activation rows (float32, CPU)."""
    tokens: torch.Tensor
    """[n] token id of each row."""
    seq_pos: torch.Tensor
    """[n, 2] (sequence index, position) of each row."""


@torch.no_grad()
def collect_activations(model, texts: Sequence[str], hook: str, batch_size: int = 8) -> ActivationSet:
    """Run ``model`` over ``texts`` and keep ``hook``'s activation at every real token.

    Texts are right-padded per batch (causal attention: padding never changes earlier
    positions) and the padded positions are dropped, and so is the BOS row; texts are cut at 128 tokens.
    """
    from interp.models import resolve_hooks

    if isinstance(texts, str) or not texts:
        raise ValueError("collect_activations expects a non-empty list of strings")
    (hook,) = resolve_hooks(model, [hook])
    toks = [model.to_tokens(t)[0, :128].cpu() for t in texts]
    lens = torch.tensor([len(t) for t in toks])
    padded = torch.nn.utils.rnn.pad_sequence(toks, batch_first=True)  # right-padded with token 0
    pos = torch.arange(padded.shape[1])
    keep = (pos >= 1) & (pos < lens[:, None])  # real tokens after BOS, as a [text, position] mask
    rows = []
    for b in range(0, len(toks), batch_size):
        T = int(lens[b:b + batch_size].max())  # each batch padded to its own longest text
        acts = model.run_with_cache(padded[b:b + batch_size, :T].to(next(model.parameters()).device),
                                    names_filter=[hook])[1][hook]
        rows.append(acts.float().cpu()[keep[b:b + batch_size, :T]])
    return ActivationSet(X=torch.cat(rows), tokens=padded[keep], seq_pos=keep.nonzero())


def store_activations(store, hook: str, max_rows: int | None = None) -> ActivationSet:
    """Rows of ``hook`` of an :class:`interp.store.ActivationStore` (a seed-0 random subset if ``max_rows``).

    The subset is held in memory as float32 (``max_rows x d`` x 4 bytes; 20k x 1536 = 123 MB).
    """
    if hook not in store.hooks:
        raise KeyError(f"hook {hook!r} is not in the store (it holds {store.hooks})")
    n = store.n_rows
    idx = torch.arange(n)
    if max_rows is not None and max_rows < n:
        idx = torch.randperm(n, generator=torch.Generator().manual_seed(0))[:max_rows].sort().values
    return ActivationSet(X=store.rows(hook, idx, device="cpu", dtype=torch.float32),
                         tokens=store.tokens[idx], seq_pos=store.seq_pos[idx])
