"""Forward passes that skip work an attribution method does not need: the shared prefix and unused logits.

Three exact shortcuts, used by the batched integrated gradients (ig.py) when ``k`` copies of one
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
3. **Lean forward** (interp/models/lean.py: Gemma 3, the one architecture where it measured
   >= 1.5x over the bridge with 1 and 2 applied; see that module).  The bridge's time outside
   the matmuls goes to element-wise work and copies of its per-op hook points and eager
   attention.  For a residual-stream hook
   (``hook_embed``, ``blocks.L.hook_resid_pre|post``; and for hook IG, edits at ``hook_resid_pre``,
   ``attn.hook_z`` and ``hook_mlp_out``) the steps instead run a plain PyTorch transcription of
   the Hugging Face decoder layer on the bridge's own weights (no copies) with fused SDPA
   attention.  It also skips work the metric cannot see: (a) positions before the first position
   where input and baseline differ are identical in every copy (causal attention), so their
   keys/values are computed once at batch ``B`` and only the later positions run ``k`` times;
   (b) in the last block only the last position's query, output and MLP are computed.  It is used
   only when the metric reads the last position alone, no hook is registered on the model (the
   lean pass would skip it), the architecture and its options are covered (:func:`lean_forward`
   returns the reason when not; ``IGResult.lean_skipped`` records it), and a self-check on the
   unexpanded batch reproduces the bridge's metric (else: the bridge path, with a warning).

All are switched off by ``fast=False`` or ``INTERP_REFERENCE=1`` (interp/fastpath.py), which runs
the plain full forward; tests/test_ig.py and tests/test_ig_fast.py check that values and gradients
agree between the paths on tiny llama, gpt2, pythia and gemma3 models (grouped KV heads included),
and tests/test_lean.py checks the lean forward against the Hugging Face model itself.

The module forwards are patched on the instance and restored in ``finally`` (nothing leaks if the
forward raises).  Memory: the cached block output ``B*T*d_model`` floats, repeated ``k`` times
during the pass (the size of one activation of the expanded batch); the lean forward keeps the
prefix keys/values (``2 * n_layers * B * p0 * d_kv`` floats) and the autograd graph of the
``k*B*(T-p0)`` rows it runs, about what the bridge keeps for the same rows.
"""

from __future__ import annotations

import re
import warnings
from contextlib import ExitStack, contextmanager
from typing import Callable

import torch

from interp.models import scoped_hooks

from interp.models.lean import LEAN_ARCHS, LeanForward, LeanUnavailable, hf_model


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


# ---------------------------------------------------------------------------------------------
# 3. Lean forward (interp/models/lean.py: Gemma 3)
# ---------------------------------------------------------------------------------------------

LEAN_MODEL_TYPES = tuple(LEAN_ARCHS)
_RESID = re.compile(r"^blocks\.(\d+)\.hook_resid_(pre|post)$")


def _fn_module(fn) -> str:
    return getattr(getattr(fn, "func", fn), "__module__", "") or ""


def model_has_hooks(model) -> bool:
    """True when a user hook is registered: any hook on a ``HookPoint`` (TransformerLens hooks),
    any torch global module hook, or a hook on another module that the bridge did not add itself
    (the bridge wires its own capture pre-hooks onto the HF layer norms after the first forward)."""
    from torch.nn.modules import module as _m

    if _m._global_forward_hooks or _m._global_forward_pre_hooks or _m._global_backward_hooks:
        return True
    for mod in model.modules():
        fns = [*mod._forward_hooks.values(), *mod._forward_pre_hooks.values(), *mod._backward_hooks.values(),
               *getattr(mod, "_backward_pre_hooks", {}).values()]
        if not fns:
            continue
        if type(mod).__name__ == "HookPoint":
            return True
        if any(not _fn_module(f).startswith("transformer_lens.") for f in fns):
            return True
    return False


def lean_start_layer(hook: str) -> int | None:
    """Block whose residual input ``hook`` is (``hook_embed`` -> 0, ``blocks.L.hook_resid_post`` -> L+1)."""
    if hook == "hook_embed":
        return 0
    m = _RESID.match(hook)
    if m is None:
        return None
    return int(m[1]) + (m[2] == "post")


def lean_forward(model, hook: str) -> tuple[LeanForward | None, str]:
    """``(lean forward, "")`` for ``model`` when it can run IG at ``hook`` exactly, else
    ``(None, reason)``: the architecture or its options are not covered, ``hook`` is not on the
    residual stream, or a user hook is registered (the lean pass would skip it)."""
    cfg = getattr(getattr(model, "original_model", None), "config", None)
    kind = getattr(cfg, "model_type", None)
    if kind not in LEAN_ARCHS:
        return None, f"no lean forward for model_type {kind!r} (covered: {', '.join(LEAN_MODEL_TYPES)})"
    if lean_start_layer(hook) is None:
        return None, f"hook {hook!r} is not hook_embed or a blocks.L.hook_resid_pre/post"
    if model_has_hooks(model):
        return None, "a hook is registered on the model"
    cls, check = LEAN_ARCHS[kind]
    reason = check(cfg)
    if reason:
        return None, reason
    try:
        return cls(hf_model(model)), ""
    except (LeanUnavailable, AttributeError) as e:  # a variant whose modules differ from the transcription
        return None, f"lean {kind} forward unavailable: {e}"
