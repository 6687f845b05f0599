"""TopK SAE with the AuxK dead-latent loss (Gao et al. 2024, arXiv 2406.04093; openai/sparse_autoencoder).

    z     = (x - b_dec) @ W_enc + b_enc                   # pre-activations [B, d_sae]
    f     = ReLU(TopK_k(z))                               # k latents per row
    x_hat = f @ W_dec + b_dec
    e     = x - x_hat
    e_hat = ReLU(TopK_{k_aux}(z restricted to dead latents)) @ W_dec
    loss  = ||x_hat - x||^2 / ||x - mean x||^2  +  aux_coeff * ||e_hat - e||^2 / ||e - mean e||^2

(normalised MSE as in the paper's ``normalized_mse``; aux_coeff = 1/32, k_aux = d_in / 2).
Dead latents (no firing over the trainer's ``dead_after_tokens`` window) come in as
``dead_mask``; without dead latents the AuxK term is zero.

The k (and k_aux) kept latents are selected with a no-grad dense product and their
pre-activations recomputed with :func:`~interp.dictionaries.sparse_decode.encode_at`; decoding
uses :func:`~interp.dictionaries.sparse_decode.sparse_decode`.  Both are exact (the selection
is piecewise constant) and fall back to dense references with ``INTERP_REFERENCE=1``.

Memory: the ``[B, d_sae]`` no-grad pre-activations; autograd keeps only ``[B, k]`` codes.
"""

from __future__ import annotations

import contextlib
import contextvars

import torch

from .base import EncodeOutput, SparseCoder, fvu
from .registry import register
from .sparse_decode import encode_at, sparse_decode


_DATA_PARALLEL = contextvars.ContextVar("interp_topk_data_parallel", default=False)


@contextlib.contextmanager
def data_parallel_normaliser(enabled: bool = True):
    """Inside this block (the trainer's data-parallel loop) the normalisers ``||x - mean x||^2`` are
    computed over the *global* batch (two all-reduces), and the loss is scaled by N / n_rank, so
    that the trainer's share weighting (n_rank / N) and gradient sum reproduce the single-process
    loss exactly.  Every rank must call ``loss`` the same number of times inside the block."""
    token = _DATA_PARALLEL.set(enabled)
    try:
        yield
    finally:
        _DATA_PARALLEL.reset(token)


def _normalized_mse(x_hat: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    tiny = torch.finfo(target.dtype).tiny
    if _DATA_PARALLEL.get() and torch.distributed.is_available() and torch.distributed.is_initialized():
        dist = torch.distributed
        with torch.no_grad():
            t = target.detach()
            stats = torch.cat([t.sum(0), t.new_tensor([t.shape[0]])])
            dist.all_reduce(stats)
            n_global = stats[-1]
            mean = stats[:-1] / n_global
            total = (t - mean).pow(2).sum().reshape(1)
            dist.all_reduce(total)
        scale = n_global / max(1, target.shape[0])
        return (x_hat - target).pow(2).sum() / total[0].clamp_min(tiny) * scale
    return fvu(x_hat, target)


@register("topk")
class TopKSAE(SparseCoder):
    """TopK SAE; ``cfg.k`` latents per row, AuxK with ``cfg.k_aux`` latents and weight ``cfg.aux_coeff``."""

    mse = staticmethod(_normalized_mse)

    def encode(self, x: torch.Tensor) -> EncodeOutput:
        xc = self._input(x)
        with torch.no_grad():
            pre = xc @ self.W_enc + self.b_enc
            idx = pre.topk(self.cfg.k, dim=-1, sorted=False).indices
        top = torch.relu(encode_at(xc, self.W_enc, self.b_enc, idx))
        acts = torch.zeros_like(pre).scatter(1, idx, top)  # dense view; gradients flow to the top-k
        return EncodeOutput(acts, pre, idx, top)

    def decode_code(self, code: EncodeOutput) -> torch.Tensor:
        return sparse_decode(code.top_idx, code.top_acts, self.W_dec) + self.b_dec

    def penalties(self, code: EncodeOutput, x, target, x_hat, dead_mask):
        """AuxK: the dead latents' reconstruction of the error, when there are dead latents."""
        if dead_mask is None or not bool(dead_mask.any()) or self.cfg.aux_coeff <= 0:
            return []
        k_aux = min(self.cfg.k_aux or max(1, self.cfg.d_in // 2), int(dead_mask.sum()))
        with torch.no_grad():
            idx = code.pre.masked_fill(~dead_mask, float("-inf")).topk(k_aux, dim=-1, sorted=False).indices
        vals = torch.relu(encode_at(self._input(x), self.W_enc, self.b_enc, idx))
        e_hat = sparse_decode(idx, vals, self.W_dec)
        return [("auxk", self.cfg.aux_coeff, _normalized_mse(e_hat, (target - x_hat).detach()))]
