"""Forward passes that skip work an attribution method does not need: the shared prefix and unused logits.

Two exact shortcuts, used by the batched integrated gradients (ig.py) when ``k`` copies of one
prompt batch run with different values at a hook in block ``L``:

1. **Prefix reuse.**  Blocks ``0 .. L-1`` see the same tokens in every copy and nothing upstream
   of the hook changes, so their output is identical across copies.  We run the prompts once at
   batch ``B`` (the forward that caches the activations anyway), keep block ``L-1``'s output, and
   during the ``k*B`` forward replace ``forward`` of blocks ``0 .. L-1`` by a function that returns
   that output repeated ``k`` times.  The copies then pay only for blocks ``L ..`` (plus the
   embedding lookup).  For a hook at ``hook_embed`` there is nothing to skip.
2. **Last-position logits.**  When the metric reads only the last position's logits (the IOI
   logit difference, greater-than probability difference), the unembedding of the other
   ``T - 1`` positions is wasted: a hook at ``unembed.hook_in`` keeps ``x[:, -1:]``, so the
   ``d_model x d_vocab`` matmul (about a fifth of SmolLM2-135M's forward, vocab 49,152) runs on
   one position.  :func:`reads_last_position_only` checks this on the real logits before it is used.

Both are switched off by ``INTERP_IG_REFERENCE=1`` (or ``fast=False`` in ig.py), which runs the
plain full forward; tests/test_ig.py checks values and gradients agree between the two paths.

The module forwards are patched on the instance and restored in ``finally`` (nothing leaks if the
forward raises).  Memory: the cached block output ``B*T*d_model`` floats, repeated ``k`` times
during the pass (the size of one activation of the expanded batch).
"""

from __future__ import annotations

import os
from contextlib import ExitStack, contextmanager
from typing import Callable

import torch

from interp.models import scoped_hooks


def fast_enabled(fast: bool | None = None) -> bool:
    """``fast`` if given, else True unless ``INTERP_IG_REFERENCE=1`` forces the plain path."""
    if fast is not None:
        return bool(fast)
    return os.environ.get("INTERP_IG_REFERENCE", "0") not in ("1", "true", "yes")


def hook_layer(hook: str) -> int:
    """Block index of a ``blocks.L.*`` hook; 0 for hooks before the blocks (``hook_embed``)."""
    parts = hook.split(".")
    if parts[0] == "blocks" and len(parts) > 1 and parts[1].isdigit():
        return int(parts[1])
    if hook.startswith(("ln_final", "unembed", "hook_unembed")):
        raise ValueError(f"hook {hook!r} lies after the blocks; IG there needs no model pass")
    return 0


def reads_last_position_only(metric: Callable[[torch.Tensor], torch.Tensor], logits: torch.Tensor) -> bool:
    """True when ``metric(logits)`` equals ``metric(logits[:, -1:])`` (a metric of the last position)."""
    if logits.ndim != 3 or logits.shape[1] < 2:
        return False
    try:
        full = metric(logits)
        last = metric(logits[:, -1:])
    except Exception:  # the metric indexes other positions
        return False
    return full.shape == last.shape and bool(torch.equal(full, last))


def _blocks(model):
    return list(model.blocks)


def _repeat_batch(x, k: int):
    if isinstance(x, torch.Tensor):
        return x.repeat(k, *([1] * (x.ndim - 1)))
    if isinstance(x, tuple):
        return tuple(_repeat_batch(v, k) for v in x)
    return x


class PrefixCache:
    """Every block's output on one prompt batch, to be replayed for ``k`` copies of it."""

    def __init__(self, model):
        self.model, self.outs = model, {}

    @contextmanager
    def capture(self, rows: slice | None = None):
        """Record each block's output (batch ``rows`` of it) during the forward passes inside the block."""
        handles = []

        def saver(l):
            def fn(mod, inp, out):
                out = _detach(out)
                self.outs[l] = out if rows is None else _rows(out, rows)

            return fn

        try:
            for l, b in enumerate(_blocks(self.model)):
                handles.append(b.register_forward_hook(saver(l)))
            yield self
        finally:
            for h in handles:
                h.remove()

    @contextmanager
    def replay(self, k: int, layer: int):
        """Inside the block, blocks ``0 .. layer-1`` return block ``layer-1``'s output repeated ``k`` times."""
        if layer == 0:
            yield
            return
        if layer - 1 not in self.outs:
            raise RuntimeError("PrefixCache.replay before capture")
        rep = _repeat_batch(self.outs[layer - 1], k)
        blocks = _blocks(self.model)[:layer]
        try:
            for b in blocks:  # object.__setattr__: the bridge's __setattr__ forwards to the HF module
                object.__setattr__(b, "forward", lambda *a, _rep=rep, **kw: _rep)
            yield
        finally:
            for b in blocks:
                b.__dict__.pop("forward", None)


def _detach(x):
    if isinstance(x, torch.Tensor):
        return x.detach()
    if isinstance(x, tuple):
        return tuple(_detach(v) for v in x)
    return x


def _rows(x, idx):
    if isinstance(x, torch.Tensor):
        return x[idx]
    if isinstance(x, tuple):
        return tuple(_rows(v, idx) for v in x)
    return x


def _last_position(x, hook):
    return x[:, -1:]


@contextmanager
def fast_forward(model, prefix: PrefixCache | None, k: int, layer: int, last_only: bool):
    """Context for the ``k``-copy forward: replay blocks ``< layer`` and/or keep only last-position logits."""
    with ExitStack() as stack:
        if prefix is not None:
            stack.enter_context(prefix.replay(k, layer))
        if last_only:
            stack.enter_context(scoped_hooks(model, fwd=[("unembed.hook_in", _last_position)]))
        yield
