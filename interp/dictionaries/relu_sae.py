"""ReLU SAE with a decoder-norm-weighted L1 penalty (Bricken et al. 2023; Anthropic, April 2024 update).

    f     = ReLU((x - b_dec) @ W_enc + b_enc)
    x_hat = f @ W_dec + b_dec
    loss  = mean_b ||x_hat - x||^2 + l1_coeff * mean_b sum_i f_i * ||W_dec[i]||

Weighting each latent's L1 by its decoder norm makes the penalty invariant to moving scale
between encoder and decoder, so the objective means the same with or without the trainer's
unit-norm projection (with unit rows it is the plain L1).  SAELens calls this architecture
``standard``.

Memory: the dense ``[batch, d_sae]`` code.
"""

from __future__ import annotations

import torch

from .base import EncodeOutput, SparseCoder
from .registry import register


@register("relu")
class ReLUSAE(SparseCoder):
    """ReLU SAE; ``cfg.l1_coeff`` weighs the decoder-norm-weighted L1 term."""

    def encode(self, x: torch.Tensor) -> EncodeOutput:
        pre = self.pre_acts(x)
        return EncodeOutput(torch.relu(pre), pre, None, None)

    def penalties(self, code: EncodeOutput, *_):
        """Decoder-norm-weighted L1: ``sum_i f_i ||W_dec[i]||``, averaged over rows."""
        return [("l1", self.cfg.l1_coeff, (code.acts * self.W_dec.norm(dim=-1)).sum(-1).mean())]
