"""JumpReLU SAE with straight-through threshold gradients (Rajamanoharan et al. 2024, arXiv 2407.14435).

    z     = (x - b_dec) @ W_enc + b_enc
    f     = z * H(z - theta),   theta = exp(log_theta) > 0
    x_hat = f @ W_dec + b_dec
    loss  = mean_b ||x_hat - x||^2 + l0_coeff * mean_b sum_i H(z_i - theta_i)

H has zero gradient almost everywhere, so the threshold learns through a straight-through
estimator with the rectangle kernel K(u) = 1{|u| < 1/2} of bandwidth eps
(``cfg.jumprelu_bandwidth``), as in the paper and SAELens ``jumprelu_sae.py``:

    d f / d theta = -(theta / eps) * K((z - theta) / eps)          (JumpReLU)
    d H / d theta = -(1 / eps)     * K((z - theta) / eps)          (Step, the L0 term)
    d f / d z     = H(z - theta)   (the pre-activation gradient flows only where f > 0)

No gradient reaches z through the L0 term (the paper's choice).  The threshold is stored as
``log_threshold`` and written to SAELens files as ``threshold``.

Memory: the dense ``[batch, d_sae]`` code and pre-activations.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .base import EncodeOutput, SparseCoder
from .registry import register


def _threshold_fn(step: bool):
    """``H(z - theta)`` (``step``) or ``z * H(z - theta)``, with the rectangle-kernel pseudo-derivative for
    (the step passes no gradient to z, the JumpReLU passes ``H(z - theta)``)."""

    class Fn(torch.autograd.Function):
        @staticmethod
        def forward(ctx, z, theta, eps: float):
            ctx.save_for_backward(z, theta)
            ctx.eps = eps
            h = (z > theta).to(z.dtype)
            return h if step else z * h

        @staticmethod
        def backward(ctx, g):
            z, theta = ctx.saved_tensors
            rect = ((z - theta) / ctx.eps).abs().lt(0.5).to(z.dtype)  # K(u) = 1{|u| < 1/2}
            grad_theta = (-((1.0 if step else theta) / ctx.eps) * rect * g).sum(0)
            return None if step else (z > theta).to(g.dtype) * g, grad_theta, None

    return Fn


JumpReLUFn, StepFn = _threshold_fn(False), _threshold_fn(True)


@register("jumprelu")
class JumpReLUSAE(SparseCoder):
    """JumpReLU SAE; ``cfg.l0_coeff`` weighs the L0 term, ``cfg.jumprelu_bandwidth`` is eps."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.log_threshold = nn.Parameter(torch.full((cfg.d_sae,), math.log(cfg.jumprelu_init_threshold)))

    @property
    def threshold(self) -> torch.Tensor:
        return self.log_threshold.exp()

    def encode(self, x: torch.Tensor) -> EncodeOutput:
        pre = self.pre_acts(x)
        acts = JumpReLUFn.apply(pre, self.threshold, self.cfg.jumprelu_bandwidth)
        return EncodeOutput(acts, pre, None, None)

    def penalties(self, code: EncodeOutput, *_):
        """The L0 count through the step function's pseudo-derivative (for theta), averaged over rows."""
        l0 = StepFn.apply(code.pre, self.threshold, self.cfg.jumprelu_bandwidth).sum(-1).mean()
        return [("l0", self.cfg.l0_coeff, l0)]
