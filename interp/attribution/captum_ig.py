"""A thin wrapper over captum's ``LayerIntegratedGradients`` for users who want captum's exact API.

``captum_layer_ig(model, tokens, metric, hook, baseline_tokens, steps, method)`` attaches captum
to the TransformerLens hook point named ``hook`` (a ``HookPoint`` module) and returns the same
:class:`~interp.attribution.ig.IGResult` as our batched :func:`layer_integrated_gradients`, so
the two can be compared value for value (tests/test_ig.py) and timed (bench/bench_ig.py).
captum runs the baselines through the model and interpolates in the layer's output space.

Mid-layer hooks: captum swaps the layer's *output* for the ``steps*B`` interpolated values, which
fails on a bridge ``HookPoint`` inside a block (a batch-size mismatch at the residual add), so for
``blocks.L.hook_resid_pre`` captum attaches to the block module itself with
``attribute_to_layer_input=True`` (the block's input is that hook's value; tested equal to our
IG on tiny llama, pythia and gemma3; GPT-2 blocks take a cache argument the pre-hook drops).

Memory: captum expands the input ``steps`` times (the whole expanded batch at once).
"""

from __future__ import annotations

import re
import time
from typing import Callable

import torch

from interp.models import resolve_hooks

from .ig import IGResult


def captum_layer_ig(model, tokens: torch.Tensor, metric: Callable[[torch.Tensor], torch.Tensor],
                    hook: str = "hook_embed", baseline_tokens: torch.Tensor | None = None, steps: int = 50,
                    method: str = "gausslegendre") -> IGResult:
    """captum's LayerIntegratedGradients at ``hook`` (baseline: token ids, default all-zero ids)."""
    from captum.attr import LayerIntegratedGradients

    resolve_hooks(model, [hook])  # a clear error for an unknown hook
    t0 = time.perf_counter()
    device = next(model.parameters()).device
    tokens = tokens.to(device)
    base = torch.zeros_like(tokens) if baseline_tokens is None else baseline_tokens.to(device)

    resid_pre = re.fullmatch(r"blocks\.(\d+)\.hook_resid_pre", hook)
    layer = model.blocks[int(resid_pre[1])] if resid_pre else model.hook_dict[hook]
    lig = LayerIntegratedGradients(lambda toks: metric(model(toks)), layer)
    with torch.enable_grad():
        attr, delta = lig.attribute(tokens, base, n_steps=steps, method=method, return_convergence_delta=True,
                                    attribute_to_layer_input=bool(resid_pre))
    with torch.no_grad():
        f_x, f_b = metric(model(tokens)).float().cpu(), metric(model(base)).float().cpu()
    return IGResult(attributions=attr.detach().float(), delta=delta.detach().float().cpu(), f_input=f_x,
                    f_baseline=f_b, hook=hook, steps=steps, method=method, seconds=time.perf_counter() - t0)
