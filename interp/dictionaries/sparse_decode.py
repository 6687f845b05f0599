"""Sparse TopK kernels: decode from (indices, values) and encode only at given indices.

A TopK SAE keeps k of d_sae latents per row, so the dense decoder ``acts @ W_dec`` spends
``B * d_sae * d`` multiply-adds (and as much again twice in the backward pass) on zeros.
These two autograd functions touch only the k selected rows (Gao et al. 2024, section
"Kernels"; EleutherAI sparsify ``xformers.py``):

* :func:`sparse_decode(idx, vals, W_dec)` = ``sum_j vals[b, j] * W_dec[idx[b, j]]``
  (``torch.nn.functional.embedding_bag`` with per-sample weights, mode ``sum``).
  Backward: ``d vals[b, j] = <g[b], W_dec[idx[b, j]]>`` (a sampled dense-dense matmul,
  ``torch.sparse.sampled_addmm`` on the CSR pattern of ``idx``) and
  ``d W_dec[i] = sum_{(b, j): idx[b, j] = i} vals[b, j] * g[b]`` (``S^T g`` with ``S`` the
  sparse code as a COO matrix, ``torch.sparse.mm``).
* :func:`encode_at(x, W_enc, b_enc, idx)` = ``(x @ W_enc + b_enc).gather(1, idx)`` without
  the dense product (again ``sampled_addmm``); backward by ``embedding_bag`` (for ``x``)
  and ``S^T x`` (for ``W_enc``).  TopK training selects indices with a no-grad dense
  product and recomputes the k kept pre-activations with this function, so the encoder
  gradient is sparse too: of the six ``B x d_sae x d`` products of a dense TopK step
  (encode, decode, and two each in their backward passes) one remains.

Cost: ``O(B * k * d)`` time and ``O(B * k)`` extra memory; nothing of size ``B x d_sae``
besides the no-grad selection product.  The same torch sparse ops run on CUDA (cuSPARSE).

The plain PyTorch references, :func:`sparse_decode_reference` and
:func:`encode_at_reference`, build the dense ``[B, d_sae]`` matrix.  Set
``fast=False`` (or ``INTERP_REFERENCE=1``, interp/fastpath.py) makes :func:`sparse_decode` and
:func:`encode_at` use them (``tests/test_sparse_decode.py`` checks values and every gradient agree).
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from interp.fastpath import use_fast

def _check(idx: torch.Tensor, vals: torch.Tensor, n: int):
    if idx.shape != vals.shape or idx.ndim != 2:
        raise ValueError(f"sparse_decode: idx and vals must both be [batch, k], got {tuple(idx.shape)} and "
                         f"{tuple(vals.shape)}")
    if idx.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"sparse_decode: idx must be an integer tensor, got {idx.dtype}")
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= n):
        raise ValueError(f"sparse_decode: latent index out of range 0..{n - 1}")


def _pattern(idx: torch.Tensor, values: torch.Tensor, n_cols: int) -> torch.Tensor:
    """CSR matrix ``[B, n_cols]`` with ``values[b, j]`` at column ``idx[b, j]`` (k entries per row)."""
    B, k = idx.shape
    crow = torch.arange(0, B * k + 1, k, device=idx.device, dtype=torch.int64)
    with warnings.catch_warnings():  # "CSR support is in beta"
        warnings.simplefilter("ignore")
        return torch.sparse_csr_tensor(crow, idx.reshape(-1), values.reshape(-1), (B, n_cols),
                                       check_invariants=False)


def _sampled_dots(idx: torch.Tensor, a: torch.Tensor, b_t: torch.Tensor) -> torch.Tensor:
    """``out[r, j] = <a[r], b_t[:, idx[r, j]]>`` for a [B, d], b_t [d, n]: SDDMM, no dense [B, n]."""
    zeros = torch.zeros(idx.shape, dtype=a.dtype, device=a.device)
    S = _pattern(idx, zeros, b_t.shape[1])
    return torch.sparse.sampled_addmm(S, a, b_t, beta=0.0, alpha=1.0).values().view(idx.shape)


def _scatter_matmul(idx: torch.Tensor, vals: torch.Tensor, g: torch.Tensor, n_rows: int) -> torch.Tensor:
    """``out[i] = sum_{(r, j): idx[r, j] = i} vals[r, j] * g[r]`` -> [n_rows, d] (S^T g, COO sparse mm)."""
    B, k = idx.shape
    rows = torch.arange(B, device=idx.device).repeat_interleave(k)
    S_t = torch.sparse_coo_tensor(torch.stack([idx.reshape(-1), rows]), vals.reshape(-1), (n_rows, B),
                                  check_invariants=False)
    return torch.sparse.mm(S_t, g)


class _SparseDecode(torch.autograd.Function):
    @staticmethod
    def forward(ctx, idx, vals, W_dec):
        ctx.save_for_backward(idx, vals, W_dec)
        return F.embedding_bag(idx, W_dec, per_sample_weights=vals, mode="sum")

    @staticmethod
    def backward(ctx, grad_out):
        idx, vals, W_dec = ctx.saved_tensors
        grad_out = grad_out.contiguous()
        grad_vals = grad_W = None
        if ctx.needs_input_grad[1]:  # <g[b], W_dec[idx[b, j]]>
            grad_vals = _sampled_dots(idx, grad_out, W_dec.t())
        if ctx.needs_input_grad[2]:  # index-add of vals[b, j] * g[b] into row idx[b, j]
            grad_W = _scatter_matmul(idx, vals, grad_out, W_dec.shape[0])
        return None, grad_vals, grad_W


class _EncodeAt(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, W_enc, b_enc, idx):
        ctx.save_for_backward(x, W_enc, idx)
        return _sampled_dots(idx, x, W_enc) + b_enc[idx]

    @staticmethod
    def backward(ctx, grad_out):
        x, W_enc, idx = ctx.saved_tensors
        grad_out = grad_out.contiguous()
        grad_x = grad_W = grad_b = None
        if ctx.needs_input_grad[0]:  # sum_j g[b, j] * W_enc[:, idx[b, j]]
            grad_x = F.embedding_bag(idx, W_enc.t().contiguous(), per_sample_weights=grad_out, mode="sum")
        if ctx.needs_input_grad[1]:
            grad_W = _scatter_matmul(idx, grad_out, x, W_enc.shape[1]).t()
        if ctx.needs_input_grad[2]:
            grad_b = grad_out.new_zeros(W_enc.shape[1]).index_add_(0, idx.reshape(-1), grad_out.reshape(-1))
        return grad_x, grad_W, grad_b, None


def sparse_decode_reference(idx: torch.Tensor, vals: torch.Tensor, W_dec: torch.Tensor) -> torch.Tensor:
    """Dense reference: scatter ``vals`` into ``[B, d_sae]`` and multiply by ``W_dec``."""
    return vals.new_zeros(idx.shape[0], W_dec.shape[0]).scatter(1, idx, vals) @ W_dec


def encode_at_reference(x, W_enc, b_enc, idx):
    """Dense reference: the full pre-activation matrix, gathered at ``idx``."""
    return (x @ W_enc + b_enc).gather(1, idx)


def sparse_decode(idx: torch.Tensor, vals: torch.Tensor, W_dec: torch.Tensor,
                  fast: bool | None = None) -> torch.Tensor:
    """``out[b] = sum_j vals[b, j] * W_dec[idx[b, j]]`` -> ``[B, d]``; the dense reference with ``fast=False``."""
    _check(idx, vals, W_dec.shape[0])
    if not use_fast(fast):
        return sparse_decode_reference(idx, vals, W_dec)
    return _SparseDecode.apply(idx.long(), vals, W_dec)


def encode_at(x: torch.Tensor, W_enc: torch.Tensor, b_enc: torch.Tensor, idx: torch.Tensor,
              fast: bool | None = None) -> torch.Tensor:
    """Pre-activations ``(x @ W_enc + b_enc)[b, idx[b, j]]`` -> ``[B, k]`` without the dense product
    (with it: the reference, ``fast=False``)."""
    if x.ndim != 2 or idx.ndim != 2 or x.shape[0] != idx.shape[0] or x.shape[1] != W_enc.shape[0]:
        raise ValueError(f"encode_at: x [B, d] must match W_enc [d, d_sae] and idx [B, k]; got "
                         f"{tuple(x.shape)}, {tuple(W_enc.shape)}, {tuple(idx.shape)}")
    if not use_fast(fast):
        return encode_at_reference(x, W_enc, b_enc, idx)
    return _EncodeAt.apply(x, W_enc, b_enc, idx.long())
