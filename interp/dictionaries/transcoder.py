"""Transcoders: the dictionary family trained to imitate an MLP (Dunefsky, Chlenski, Nanda 2024, arXiv 2406.11944).

A transcoder reads the MLP's input and writes its output::

    z      = act(x @ W_enc + b_enc)            x = blocks.L.ln2.hook_normalized   [batch, d_model]
    TC(x)  = z @ W_dec + b_dec                 target = blocks.L.hook_mlp_out      [batch, d_model]
    loss   = ||TC(x) - MLP(x)||^2 + sparsity   (the architecture's own sparsity term)

It is an ordinary :class:`~interp.dictionaries.base.SparseCoder` of any registered
architecture (``relu`` as in the paper, ``topk``, ``jumprelu``) whose config names two hooks
and sets ``d_out``; the input is not centred by ``b_dec`` (which lives in output space),
exactly as SAELens's ``Transcoder``.  W_dec rows are kept at unit norm with the parallel
gradient removed (the trainer does this for every dictionary).  Training reads aligned row
pairs ``(x, target)`` from one store holding both hooks; evaluation splices ``TC(x)`` in
place of ``hook_mlp_out`` (:func:`interp.dictionaries.metrics.spliced_ce`).

Note on ``ln2.hook_normalized``: on a TransformerBridge it is the normalised input before
the norm's learned scale (for RMSNorm, x / rms(x)); the scale is linear and so is absorbed
into W_enc.

Memory: as an SAE with ``d_in`` inputs and ``d_out`` outputs.
"""

from __future__ import annotations

from interp.models.hooks import mlp_hook

from .base import SAEConfig


def transcoder_hooks(layer: int) -> tuple[str, str]:
    """``(blocks.L.ln2.hook_normalized, blocks.L.hook_mlp_out)`` for layer ``layer``."""
    if not isinstance(layer, int) or layer < 0:
        raise ValueError(f"layer must be a non-negative integer, got {layer!r}")
    return f"blocks.{layer}.ln2.hook_normalized", mlp_hook(layer)


def transcoder_config(layer: int, d_model: int, expansion: int = 32, arch: str = "relu",
                      d_out: int | None = None, **kw) -> SAEConfig:
    """An :class:`SAEConfig` for the transcoder of ``layer`` with ``expansion * d_model`` latents."""
    if expansion < 1:
        raise ValueError(f"expansion must be >= 1, got {expansion}")
    hook_in, hook_out = transcoder_hooks(layer)
    return SAEConfig(arch=arch, d_in=d_model, d_sae=expansion * d_model, d_out=d_out or d_model,
                     hook_in=hook_in, hook_out=hook_out, **kw)
