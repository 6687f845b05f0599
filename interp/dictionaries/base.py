"""The shared shape of every sparse dictionary (SAE or transcoder), whatever its activation.

A dictionary maps an activation ``x`` read at ``hook_in`` to a sparse code ``f`` and a
reconstruction of the activation at ``hook_out`` (the same hook for an SAE; for a
transcoder, ``blocks.L.ln2.hook_normalized`` -> ``blocks.L.hook_mlp_out``)::

    pre  = (x - b_dec) @ W_enc + b_enc        # [batch, d_sae]   (SAE: b_dec centres the input)
    pre  =  x          @ W_enc + b_enc        # [batch, d_sae]   (transcoder: d_in != d_out)
    f    = act(pre)                           # ReLU / TopK / JumpReLU, in the sibling files
    x_hat = f @ W_dec + b_dec                 # [batch, d_out]

Parameter names and shapes follow SAELens (``W_enc [d_in, d_sae]``, ``W_dec [d_sae, d_out]``,
``b_enc [d_sae]``, ``b_dec [d_out]``), so :mod:`interp.dictionaries.saelens_io` writes them
as they are.  Decoder rows are kept at unit norm by the trainer
(:meth:`SparseCoder.set_decoder_unit_norm`, :meth:`SparseCoder.remove_parallel_decoder_grad`).

Variants subclass :class:`SparseCoder` in small sibling files (``relu_sae.py``,
``topk_sae.py``, ``jumprelu_sae.py``) and register themselves in
:mod:`interp.dictionaries.registry`.

Memory: parameters ``(d_in + d_out) * d_sae + d_sae + d_out`` floats; a training step on a
batch of B rows holds ``B * d_sae`` pre-activations (TopK decodes sparsely, see
:mod:`interp.dictionaries.sparse_decode`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from interp.results import check_fields


@dataclass
class SAEConfig:
    """What a dictionary is: its architecture, sizes, sparsity knob and where it reads/writes."""

    arch: str = "topk"
    """Registered architecture: ``relu``, ``topk`` or ``jumprelu`` (see ``registry.ARCHS``)."""
    d_in: int = 0
    """Width of the input activation (the ``hook_in`` rows)."""
    d_sae: int = 0
    """Number of latents (dictionary size)."""
    d_out: int | None = None
    """Width of the output; ``None`` means an SAE (output = input). Set for a transcoder, even when equal to d_in."""
    hook_in: str = ""
    """TransformerLens hook the input is read at, e.g. ``blocks.8.hook_resid_post``."""
    hook_out: str | None = None
    """Hook whose activation is reconstructed; ``None`` means ``hook_in`` (an SAE)."""
    k: int = 32
    """TopK: latents kept per row."""
    k_aux: int | None = None
    """TopK: latents used by the AuxK dead-latent loss (default ``d_in // 2``, Gao et al.)."""
    aux_coeff: float = 1 / 32
    """TopK: weight of the AuxK loss (Gao et al.: 1/32)."""
    l1_coeff: float = 5.0
    """ReLU: weight of the decoder-norm-weighted L1 penalty, ``sum_i f_i * ||W_dec_i||``."""
    l0_coeff: float = 1.0
    """JumpReLU: weight of the (straight-through) L0 penalty ``sum_i H(pre_i - theta_i)``."""
    jumprelu_bandwidth: float = 0.05
    """JumpReLU: width eps of the rectangle kernel used for the threshold gradients (SAELens 0.05)."""
    jumprelu_init_threshold: float = 0.01
    """JumpReLU: initial threshold theta (SAELens 0.01)."""
    model_name: str = ""
    """Name of the model the activations come from (for reports and SAELens metadata)."""
    context_length: int | None = None
    """Context length the activations were cached at (SAELens ``context_size``)."""
    extra: dict = field(default_factory=dict)
    """Anything else to keep in cfg.json (e.g. the store path)."""

    def __post_init__(self):
        from .registry import ARCHS, _load_builtin

        _load_builtin()
        check_fields(self, {"arch": ARCHS}, {"d_in": 1, "d_sae": 1, "d_out": 1, "l1_coeff": 0, "l0_coeff": 0,
                                             "aux_coeff": 0})
        for name, k in (("k", self.k if self.arch == "topk" else 1), ("k_aux", self.k_aux or 1)):
            if not 0 < k <= self.d_sae:
                raise ValueError(f"{name} must be in 1..d_sae={self.d_sae}, got {name}={k}")
        if self.jumprelu_bandwidth <= 0 or self.jumprelu_init_threshold <= 0:
            raise ValueError("jumprelu_bandwidth and jumprelu_init_threshold must be positive")

    @property
    def out_dim(self) -> int:
        return self.d_out if self.d_out is not None else self.d_in

    @property
    def is_transcoder(self) -> bool:
        """True when input and output are different activations (a transcoder)."""
        return self.d_out is not None or (self.hook_out is not None and self.hook_out != self.hook_in)

    @property
    def target_hook(self) -> str:
        return self.hook_out or self.hook_in


class EncodeOutput(NamedTuple):
    """A batch of codes."""

    acts: torch.Tensor
    """Dense latent activations ``[batch, d_sae]`` (zeros where a latent is off)."""
    pre: torch.Tensor
    """Pre-activations ``[batch, d_sae]`` (before ReLU/TopK/threshold)."""
    top_idx: torch.Tensor | None
    """TopK only: indices of the kept latents ``[batch, k]``; None for other archs."""
    top_acts: torch.Tensor | None
    """TopK only: their activations ``[batch, k]`` (>= 0); None for other archs."""


class ForwardOutput(NamedTuple):
    """What one training/evaluation step of a dictionary returns."""

    x_hat: torch.Tensor
    """Reconstruction of the target ``[batch, d_out]``."""
    acts: torch.Tensor
    """Latent activations ``[batch, d_sae]``."""
    loss: torch.Tensor
    """Scalar total loss that the trainer back-propagates."""
    losses: dict
    """Named scalar parts of the loss (``mse``, ``l1``, ``l0``, ``auxk``)."""
    fvu: torch.Tensor
    """Fraction of variance unexplained on this batch (detached scalar)."""
    l0: torch.Tensor
    """Mean number of active latents per row on this batch (detached scalar)."""


def fvu(x_hat: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Fraction of variance unexplained: ``sum ||t - x_hat||^2 / sum ||t - mean(t)||^2`` over the batch."""
    resid = (target - x_hat).pow(2).sum()
    total = (target - target.mean(0, keepdim=True)).pow(2).sum()
    return resid / total.clamp_min(torch.finfo(total.dtype).tiny)


class SparseCoder(nn.Module):
    """Base class: parameters, input centring, decoding, unit-norm maintenance. Subclasses add ``encode``
    (``x -> EncodeOutput``) and ``penalties`` (the sparsity terms of :meth:`loss`)."""

    def __init__(self, cfg: SAEConfig):
        super().__init__()
        self.cfg = cfg
        d_in, d_sae, d_out = cfg.d_in, cfg.d_sae, cfg.out_dim
        # Tied initialisation (Gao et al.): unit-norm random decoder rows, W_enc = W_dec^T.
        w_dec = F.normalize(torch.randn(d_sae, d_out), dim=-1)
        self.W_dec = nn.Parameter(w_dec)  # [d_sae, d_out]
        w_enc = w_dec.T.clone() if d_out == d_in else F.normalize(torch.randn(d_in, d_sae), dim=0)
        self.W_enc = nn.Parameter(w_enc)  # [d_in, d_sae]
        self.b_enc = nn.Parameter(torch.zeros(d_sae))  # [d_sae]
        self.b_dec = nn.Parameter(torch.zeros(d_out))  # [d_out]

    # -- encode / decode ------------------------------------------------------------------
    def _input(self, x: torch.Tensor) -> torch.Tensor:
        """SAEs subtract b_dec from the input (SAELens ``apply_b_dec_to_input``); transcoders cannot."""
        x = x.to(self.W_enc.dtype)
        return x if self.cfg.is_transcoder else x - self.b_dec

    def pre_acts(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder pre-activations ``[batch, d_sae]``."""
        return self._input(x) @ self.W_enc + self.b_enc

    def decode(self, acts: torch.Tensor) -> torch.Tensor:
        """Dense decode: ``acts @ W_dec + b_dec``."""
        return acts @ self.W_dec + self.b_dec

    def decode_code(self, code: EncodeOutput) -> torch.Tensor:
        """Decode an :class:`EncodeOutput` (TopK overrides this with the sparse decoder)."""
        return self.decode(code.acts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction ``x_hat`` of the target activation (what is spliced into the model)."""
        return self.decode_code(self.encode(x))

    def loss(self, x: torch.Tensor, target: torch.Tensor | None = None, dead_mask=None) -> ForwardOutput:
        """Training loss on a batch: :meth:`mse` plus ``coeff * term`` for each ``(name, coeff, term)`` of the
        subclass's ``penalties(code, x, target, x_hat, dead_mask)``; ``target`` defaults to ``x`` (SAE)."""
        if x.ndim != 2 or x.shape[-1] != self.cfg.d_in:
            raise ValueError(f"expected input rows [batch, {self.cfg.d_in}], got {tuple(x.shape)}")
        if target is not None and target.shape != (x.shape[0], self.cfg.out_dim):
            raise ValueError(f"expected target [{x.shape[0]}, {self.cfg.out_dim}], got {tuple(target.shape)}")
        target = x if target is None else target
        code = self.encode(x)
        x_hat = self.decode_code(code)
        loss = self.mse(x_hat, target)
        losses = {"mse": loss.detach()}
        for name, coeff, term in self.penalties(code, x, target, x_hat, dead_mask):
            losses[name] = term.detach()
            loss = loss + coeff * term
        on = code.acts != 0 if code.top_acts is None else code.top_acts > 0  # TopK: [B, k], not [B, d_sae]
        l0 = on.float().sum(-1).mean()
        return ForwardOutput(x_hat, code.acts, loss, losses, fvu(x_hat.detach(), target), l0)

    @staticmethod
    def mse(x_hat: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Squared error summed over features, averaged over rows."""
        return (x_hat - target).pow(2).sum(-1).mean()

    # -- decoder norm maintenance ---------------------------------------------------------
    @torch.no_grad()
    def set_decoder_unit_norm(self) -> None:
        """Project every decoder row back onto the unit sphere."""
        self.W_dec.div_(self.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-8))

    @torch.no_grad()
    def remove_parallel_decoder_grad(self) -> None:
        """Remove from ``W_dec.grad`` its component along each (unit) decoder row.

        With unit rows this makes the gradient tangent to the sphere, so the step followed by
        :meth:`set_decoder_unit_norm` does not fight the constraint.
        """
        if self.W_dec.grad is None:
            return
        w = F.normalize(self.W_dec, dim=-1, eps=1e-8)
        parallel = (self.W_dec.grad * w).sum(-1, keepdim=True)
        self.W_dec.grad.sub_(parallel * w)

    @property
    def device(self) -> torch.device:
        return self.W_dec.device
