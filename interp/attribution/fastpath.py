"""Forward passes that skip work an attribution method does not need: the shared prefix and unused logits.

Exact shortcuts for ``k`` copies of one prompt batch that differ only from block ``L`` on (the IG steps,
patched copies, edge copies):

1. **Prefix reuse** (:class:`PrefixCache`).  Blocks ``0 .. L-1`` see the same tokens in every copy, so
   their output is identical across copies: it is recorded on the batch-``B`` forward that caches the
   activations anyway, and during the ``k*B`` forward blocks ``0 .. L-1`` return it repeated ``k`` times.
2. **Last-position logits** (:func:`fast_forward`).  When the metric reads only the last position's
   logits (checked on real logits by :func:`reads_last_position_only`), a hook at ``unembed.hook_in``
   keeps ``x[:, -1:]``, so the ``d_model x d_vocab`` unembedding runs on one position.
3. **Lean forward** (:func:`lean_forward`; interp/models/lean.py, Gemma 3 only: the one architecture
   where it paid, see that module).  Used only when the metric reads the last position alone, no user
   hook is on the model (the lean pass would skip it), the architecture's options are covered (else
   the reason is returned and recorded in ``IGResult.lean_skipped``), and a self-check on the
   unexpanded batch reproduces the bridge's metric.

Design: each shortcut replaces work whose result the metric cannot see, never a value it reads, so
``fast=False`` or ``INTERP_REFERENCE=1`` (interp/fastpath.py), the plain full forward, gives the same
numbers up to float re-association; tests/test_ig.py, test_ig_fast.py, test_patching.py and
test_lean.py compare the paths.  Block forwards are patched on the instance and restored in
``finally``.  Memory: the cached block outputs (``B*T*d_model`` floats per block), repeated ``k`` times
for the pass (one activation of the expanded batch).
"""

from __future__ import annotations

import re
from contextlib import ExitStack, contextmanager, nullcontext
from functools import partial
from typing import Callable

import torch

from interp.models import scoped_hooks
from interp.models.lean import LEAN_ARCHS, LeanGemma3, LeanUnavailable, hf_model


def hook_layer(hook: str) -> int:
    """Block index of a ``blocks.L.*`` hook; 0 for hooks before the blocks (``hook_embed``)."""
    m = re.match(r"blocks\.(\d+)(\.|$)", hook)
    if m:
        return int(m[1])
    if hook.startswith(("ln_final", "unembed", "hook_unembed")):
        raise ValueError(f"hook {hook!r} lies after the blocks; IG there needs no model pass")
    return 0


def reads_last_position_only(metric: Callable[[torch.Tensor], torch.Tensor], logits: torch.Tensor) -> bool:
    """True when ``metric(logits)`` equals ``metric(logits[:, -1:])`` (a metric of the last position)."""
    if logits.ndim != 3 or logits.shape[1] < 2:
        return False
    try:  # torch.equal: False for different shapes too
        return torch.equal(metric(logits), metric(logits[:, -1:]))
    except Exception:  # the metric indexes other positions
        return False


def interpolate(base: torch.Tensor, x: torch.Tensor, alphas: torch.Tensor) -> torch.Tensor:
    """``[len(alphas), *x.shape]``: ``base + alpha_k (x - base)`` for every ``alpha_k``."""
    return base.unsqueeze(0) + alphas.view(-1, *[1] * x.ndim) * (x - base).unsqueeze(0)


def map_tensors(fn, x):
    """``fn`` on every tensor of ``x`` (a tensor or nested tuples; anything else unchanged)."""
    if isinstance(x, torch.Tensor):
        return fn(x)
    return tuple(map_tensors(fn, v) for v in x) if isinstance(x, tuple) else x


class PrefixCache:
    """Every block's output on one prompt batch, to be replayed for ``k`` copies of it."""

    def __init__(self, model):
        self.model, self.outs = model, {}

    @contextmanager
    def capture(self, rows: slice | None = None):
        """Record each block's output (batch ``rows`` of it) during the forward passes inside the block."""
        def record(l: int, mod, inp, out) -> None:
            self.outs[l] = map_tensors(lambda t: t.detach()[rows or slice(None)], out)

        with ExitStack() as hooks:  # every hook removed on exit
            for l, b in enumerate(self.model.blocks):
                hooks.enter_context(b.register_forward_hook(partial(record, l)))
            yield self

    @contextmanager
    def replay(self, k: int, layer: int):
        """Inside the block, blocks ``0 .. layer-1`` return block ``layer-1``'s output repeated ``k`` times."""
        if layer and layer - 1 not in self.outs:
            raise RuntimeError("PrefixCache.replay before capture")
        rep = map_tensors(lambda t: torch.cat([t] * k), self.outs.get(layer - 1))  # layer 0: nothing replayed
        blocks = list(self.model.blocks)[:layer]
        try:
            for b in blocks:  # object.__setattr__: the bridge's __setattr__ forwards to the HF module
                object.__setattr__(b, "forward", lambda *a, _rep=rep, **kw: _rep)
            yield
        finally:
            for b in blocks:
                b.__dict__.pop("forward", None)


@contextmanager
def fast_forward(model, prefix: PrefixCache | None, k: int, layer: int, last_only: bool):
    """Context for the ``k``-copy forward: replay blocks ``< layer`` and/or keep only last-position logits."""
    last = scoped_hooks(model, fwd=[("unembed.hook_in", lambda x, hook: x[:, -1:])]) if last_only else None
    with prefix.replay(k, layer) if prefix is not None else nullcontext(), last or nullcontext():
        yield


# -- 3. the lean forward (interp/models/lean.py) --------------------------------------------

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
        if fns and (type(mod).__name__ == "HookPoint" or any(not _fn_module(f).startswith("transformer_lens.")
                                                               for f in fns)):
            return True
    return False


def lean_start_layer(hook: str) -> int | None:
    """Block whose residual input ``hook`` is (``hook_embed`` -> 0, ``blocks.L.hook_resid_post`` -> L+1)."""
    if hook == "hook_embed":
        return 0
    m = _RESID.match(hook)
    return int(m[1]) + (m[2] == "post") if m else None


def lean_forward(model, hook: str) -> tuple[LeanGemma3 | None, str]:
    """``(lean forward, "")`` for ``model`` when it can run IG at ``hook`` exactly, else
    ``(None, reason)``: the architecture or its options are not covered, ``hook`` is not on the
    residual stream, or a user hook is registered (the lean pass would skip it)."""
    cfg = getattr(getattr(model, "original_model", None), "config", None)
    kind = getattr(cfg, "model_type", None)
    if kind not in LEAN_ARCHS:
        return None, f"no lean forward for model_type {kind!r} (covered: {', '.join(LEAN_ARCHS)})"
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
