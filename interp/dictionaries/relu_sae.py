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

from .base import EncodeOutput, ForwardOutput, SparseCoder, _mse_terms
from .registry import register


@register("relu")
class ReLUSAE(SparseCoder):
    """ReLU SAE; ``cfg.l1_coeff`` weighs the decoder-norm-weighted L1 term."""

    def encode(self, x: torch.Tensor) -> EncodeOutput:
        pre = self.pre_acts(x)
        return EncodeOutput(torch.relu(pre), pre, None, None)

    def loss(self, x, target=None, dead_mask=None) -> ForwardOutput:
        self._check_batch(x, target)
        target = x if target is None else target
        code = self.encode(x)
        x_hat = self.decode(code.acts)
        mse, batch_fvu = _mse_terms(x_hat, target)
        l1 = (code.acts * self.W_dec.norm(dim=-1)).sum(-1).mean()
        loss = mse + self.cfg.l1_coeff * l1
        l0 = (code.acts > 0).float().sum(-1).mean()
        return ForwardOutput(x_hat, code.acts, loss, {"mse": mse.detach(), "l1": l1.detach()}, batch_fvu, l0)
