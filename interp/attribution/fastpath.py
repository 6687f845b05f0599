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
3. **Lean Llama forward** (:class:`LeanLlama`, Llama-family models only).  Profiling one IG call
   on SmolLM2-135M (128 interpolated copies of 16 tokens) showed the matmuls at ~53% of the time
   and the rest in element-wise work and copies of the bridge's per-op hook points and eager
   attention (``repeat_kv``, mask add, softmax, transposes).  For a residual-stream hook
   (``hook_embed``, ``blocks.L.hook_resid_pre|post``; and for hook IG, edits at ``hook_resid_pre``,
   ``attn.hook_z`` and ``hook_mlp_out``) the steps instead run a plain PyTorch
   re-implementation of the HF ``LlamaDecoderLayer`` on the bridge's own weights (no copies):
   RMSNorm, rotary from the model's own ``rotary_emb``, fused SDPA attention with grouped KV heads,
   SwiGLU.  It also skips work the metric cannot see: (a) positions before the first position
   where input and baseline differ are identical in every copy (causal attention), so their
   keys/values are computed once at batch ``B`` and only the later positions run ``k`` times;
   (b) in the last block only the last position's query, output and MLP are computed.  It is used
   only when the metric reads the last position alone, no hook is registered on the model (the
   lean pass would skip it), and a self-check on the unexpanded batch reproduces the bridge's
   metric (else: the bridge path, with a warning).

All are switched off by ``INTERP_IG_REFERENCE=1`` (or ``fast=False`` in ig.py), which runs the
plain full forward; tests/test_ig.py and tests/test_ig_fast.py check that values and gradients
agree between the paths on tiny llama, gpt2, pythia and gemma3 models (grouped KV heads included).

The module forwards are patched on the instance and restored in ``finally`` (nothing leaks if the
forward raises).  Memory: the cached block output ``B*T*d_model`` floats, repeated ``k`` times
during the pass (the size of one activation of the expanded batch); the lean forward keeps the
prefix keys/values (``2 * n_layers * B * p0 * d_kv`` floats) and the autograd graph of the
``k*B*(T-p0)`` rows it runs, about what the bridge keeps for the same rows.
"""

from __future__ import annotations

import os
import re
import warnings
from contextlib import ExitStack, contextmanager
from typing import Callable

import torch
import torch.nn.functional as F

from interp.models import scoped_hooks


def fast_enabled(fast: bool | None = None, env: str = "INTERP_IG_REFERENCE") -> bool:
    """``fast`` if given, else True unless the environment variable ``env`` (``INTERP_IG_REFERENCE``
    for IG, ``INTERP_EDGES_REFERENCE`` for edges) is ``1`` and forces the plain reference path."""
    if fast is not None:
        return bool(fast)
    return os.environ.get(env, "0") not in ("1", "true", "yes")


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
# 3. Lean Llama forward
# ---------------------------------------------------------------------------------------------

LEAN_MODEL_TYPES = ("llama",)
_RESID = re.compile(r"^blocks\.(\d+)\.hook_resid_(pre|post)$")


def _unwrap(mod):
    while hasattr(mod, "_original_component"):
        mod = mod._original_component
    return mod


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


def lean_start_layer(model, hook: str) -> int | None:
    """Block whose residual input ``hook`` is (``hook_embed`` -> 0, ``blocks.L.hook_resid_post`` -> L+1)."""
    if hook == "hook_embed":
        return 0
    m = _RESID.match(hook)
    if m is None:
        return None
    return int(m[1]) + (m[2] == "post")


def lean_llama(model, hook: str) -> "LeanLlama | None":
    """A :class:`LeanLlama` for ``model`` when it can run IG at ``hook`` exactly, else None."""
    cfg = getattr(getattr(model, "original_model", None), "config", None)
    if cfg is None or getattr(cfg, "model_type", None) not in LEAN_MODEL_TYPES:
        return None
    if getattr(cfg, "attention_bias", False) or getattr(cfg, "mlp_bias", False) or cfg.hidden_act != "silu":
        return None
    if getattr(cfg, "sliding_window", None) or lean_start_layer(model, hook) is None or model_has_hooks(model):
        return None
    return LeanLlama(model)


class LeanLlama:
    """The HF ``LlamaDecoderLayer`` stack as plain tensor code on the bridge's weights (no copies).

    Residual stream layout: ``h [N, T', d_model]`` for positions ``p0 .. T-1``; prefix keys/values
    ``[B, n_kv, p0, d_head]`` per block, shared by the ``N = k*B`` copies (row ``i*B + b`` is copy
    ``i`` of prompt ``b``, the layout ig.py uses).
    """

    def __init__(self, model):
        hf = model.original_model
        cfg = hf.config
        self.hf, self.cfg = hf, cfg
        self.n_heads, self.n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
        self.d_head = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.layers = []
        for b in model.blocks:
            att, mlp = _unwrap(b.attn), _unwrap(b.mlp)
            ln1, ln2 = _unwrap(b.ln1), _unwrap(b.ln2)
            self.layers.append(dict(
                ln1=ln1.weight, eps1=ln1.variance_epsilon, ln2=ln2.weight, eps2=ln2.variance_epsilon,
                q=_unwrap(att.q_proj).weight, k=_unwrap(att.k_proj).weight, v=_unwrap(att.v_proj).weight,
                o=_unwrap(att.o_proj).weight, scale=float(att.scaling),
                gate=_unwrap(mlp.gate_proj).weight, up=_unwrap(mlp.up_proj).weight, down=_unwrap(mlp.down_proj).weight))
        lnf = _unwrap(model.ln_final)
        self.lnf, self.eps_f = lnf.weight, lnf.variance_epsilon
        self.w_e = _unwrap(model.embed).weight
        unembed = _unwrap(model.unembed)
        self.w_u, self.b_u = unembed.weight, getattr(unembed, "bias", None)

    def rotary(self, T: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin ``[T, d_head]`` from the model's own rotary module (its scaling included)."""
        with torch.no_grad():
            pos = torch.arange(T, device=like.device)[None]
            cos, sin = self.hf.model.rotary_emb(like[:1, :1].expand(1, T, -1), pos)
        return cos[0].to(like.dtype), sin[0].to(like.dtype)

    @staticmethod
    def _rms(x, w, eps):
        xf = x.float()
        return w * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)

    @staticmethod
    def _rope(x, cos, sin):
        x1, x2 = x.chunk(2, dim=-1)
        return x * cos + torch.cat((-x2, x1), dim=-1) * sin

    def _qkv(self, L, h, cos, sin):
        N, T, _ = h.shape
        x = self._rms(h, L["ln1"], L["eps1"])
        q = (x @ L["q"].T).view(N, T, self.n_heads, self.d_head).transpose(1, 2)
        k = (x @ L["k"].T).view(N, T, self.n_kv, self.d_head).transpose(1, 2)
        v = (x @ L["v"].T).view(N, T, self.n_kv, self.d_head).transpose(1, 2)
        return self._rope(q, cos, sin), self._rope(k, cos, sin), v

    def _attend(self, L, l, h, q, k, v, mask, edits=None):
        """The rest of block ``l``: attention output (``hook_z`` edit), MLP (``hook_mlp_out`` edit)."""
        N, Tq = h.shape[0], q.shape[2]
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=False, scale=L["scale"],
                                           enable_gqa=self.n_kv != self.n_heads)
        z = a.transpose(1, 2)  # [N, Tq, H, d_head]: TransformerLens' blocks.l.attn.hook_z
        if edits and f"blocks.{l}.attn.hook_z" in edits:
            z = edits[f"blocks.{l}.attn.hook_z"](z)
        h = h + z.reshape(N, Tq, self.n_heads * self.d_head) @ L["o"].T
        x = self._rms(h, L["ln2"], L["eps2"])
        m = (F.silu(x @ L["gate"].T) * (x @ L["up"].T)) @ L["down"].T
        if edits and f"blocks.{l}.hook_mlp_out" in edits:
            m = edits[f"blocks.{l}.hook_mlp_out"](m)
        return h + m

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """``hook_embed`` of ``tokens`` (the embedding lookup; Llama has no positional embedding)."""
        return F.embedding(tokens, self.w_e)

    def residuals(self, h: torch.Tensor) -> list[torch.Tensor]:
        """``blocks.l.hook_resid_pre`` for every block ``l`` from the embeddings ``h [B, T, d]`` (no grad)."""
        T = h.shape[1]
        cos, sin = self.rotary(T, h)
        mask = torch.ones(T, T, dtype=torch.bool, device=h.device).tril()
        out = []
        with torch.no_grad():
            for l, L in enumerate(self.layers):
                out.append(h)
                q, k, v = self._qkv(L, h, cos, sin)
                h = self._attend(L, l, h, q, k, v, mask)
        return out

    def prefix_kv(self, h: torch.Tensor, start: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Keys/values of blocks ``start ..`` for the shared positions ``0 .. p0-1`` (``h [B, p0, d]``)."""
        p0 = h.shape[1]
        if p0 == 0:
            return [None] * (len(self.layers) - start)
        cos, sin = self.rotary(p0, h)
        mask = torch.ones(p0, p0, dtype=torch.bool, device=h.device).tril()
        out = []
        with torch.no_grad():
            for l, L in enumerate(self.layers[start:], start):
                q, k, v = self._qkv(L, h, cos, sin)
                out.append((k, v))
                h = self._attend(L, l, h, q, k, v, mask)
        return out

    def logits(self, h: torch.Tensor, start: int, T: int, prefix: list | None = None,
               last_only: bool = True, edits: dict | None = None) -> torch.Tensor:
        """Logits from the residual input ``h [N, T-p0, d]`` of block ``start`` (positions ``p0 ..``).

        ``prefix``: :meth:`prefix_kv` of the shared positions (batch ``B``, ``N`` a multiple of it);
        ``last_only``: the last block and the unembedding run on the last position only, and the
        logits are ``[N, 1, V]``; else ``[N, T-p0, V]``.  ``edits``: ``{hook name: fn(act) -> act}``
        for ``blocks.l.hook_resid_pre``, ``blocks.l.attn.hook_z`` and ``blocks.l.hook_mlp_out``
        (the activations of positions ``p0 ..``), applied where the bridge's hook would fire.
        """
        N, Ts, _ = h.shape
        p0 = T - Ts
        edits = edits or {}
        if p0 and not last_only:
            raise ValueError("skipping shared positions needs a metric of the last position only")
        cos, sin = self.rotary(T, h)
        cos, sin = cos[p0:], sin[p0:]
        mask = torch.ones(Ts, T, dtype=torch.bool, device=h.device).tril(diagonal=p0)
        n = len(self.layers)
        for i, L in enumerate(self.layers[start:]):
            l = start + i
            if f"blocks.{l}.hook_resid_pre" in edits:
                h = edits[f"blocks.{l}.hook_resid_pre"](h)
            q, k, v = self._qkv(L, h, cos, sin)
            if p0:
                pk, pv = prefix[i]
                rep = N // pk.shape[0]
                k = torch.cat([pk.repeat(rep, 1, 1, 1), k], dim=2)
                v = torch.cat([pv.repeat(rep, 1, 1, 1), v], dim=2)
            edited = f"blocks.{l}.attn.hook_z" in edits or f"blocks.{l}.hook_mlp_out" in edits
            if last_only and l == n - 1 and not edited:  # the last block: only the last query is read
                h = self._attend(L, l, h[:, -1:], q[:, :, -1:], k, v, None)
            else:
                h = self._attend(L, l, h, q, k, v, mask, edits)
        if last_only:
            h = h[:, -1:]
        x = self._rms(h, self.lnf, self.eps_f)
        out = x @ self.w_u.T
        return out if self.b_u is None else out + self.b_u
