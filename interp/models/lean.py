"""Lean forward: the Gemma 3 decoder stack as plain tensor code on the bridge's own weights.

Used by integrated gradients (interp/attribution/ig.py, through
:func:`interp.attribution.fastpath.lean_forward`) for the ``k`` interpolated copies of a prompt
batch.  The bridge's forward spends much of its time outside the matmuls (per-op hook points,
eager attention, copies); :class:`LeanGemma3` runs the same arithmetic as the Hugging Face
``Gemma3DecoderLayer`` with fused SDPA attention and skips work the metric cannot see:

* positions before the first one where input and baseline differ (``p0``) are identical in every
  copy (causal attention), so their keys/values are computed once at batch ``B``
  (:meth:`LeanGemma3.prefix_kv`) and only positions ``p0 ..`` run ``k`` times;
* in the last block only the last position's query, attention output and MLP are computed, and
  only its logits (the metric reads the last position only; ig.py checks this first).

Only Gemma 3 has one.  Design choice: a second implementation of a forward is kept only where
bench/bench_ig.py ``--lean-vs-replay`` shows it at >= 1.5x the bridge with the same prefix replay,
last-position logits, batching and steps; the Llama, GPT-2 and GPT-NeoX forwards fell short and were
removed (the figures: docs/benchmarks.md, "Integrated gradients").

:class:`LeanGemma3` is the transcription and its driver: (1 + w) RMSNorm incl. q/k norms, per-layer-type
rotary, sliding-window masks, ``query_pre_attn_scalar``, pre/post attention and feed-forward norms,
scaled embedding (part of ``hook_embed``), GeGLU, final logit softcapping.  The linear maps, norm
weights, rotary tables and embeddings are the modules of :func:`hf_model`, a Hugging Face model
sharing every tensor with the bridge (no copies).  Activations a hook edit can replace (hook IG) follow the bridge's definitions:
``blocks.l.hook_resid_pre`` (block input), ``blocks.l.attn.hook_z`` (``[N, T, H, d_head]`` before
the output projection) and ``blocks.l.hook_mlp_out`` (after Gemma's post feed-forward norm).

Memory: prefix keys/values ``2 * n_layers * B * p0 * d_kv`` floats, plus the autograd graph of the
``k*B*(T-p0)`` rows that run, about what the bridge keeps for the same rows.  Exactness is checked
by tests/test_ig_fast.py and tests/test_lean.py against the bridge and against the Hugging
Face model itself (values and gradients), and at run time by ig.py's self-check on the input.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

class LeanUnavailable(ValueError):
    """The bridge's Hugging Face model cannot be rebuilt as a weight-sharing copy."""


def hf_model(bridge, attn_implementation: str | None = None) -> nn.Module:
    """A Hugging Face model of the bridge's class sharing every parameter and buffer with it.

    Its config is a copy of the bridge's (``attn_implementation``: default the bridge's own).
    Raises :class:`LeanUnavailable` when a tensor of the fresh model has no counterpart in
    the bridge (an architecture the bridge restructures beyond wrapping).
    """
    orig = getattr(bridge, "original_model", None)
    if not isinstance(orig, nn.Module):
        raise LeanUnavailable("the bridge exposes no Hugging Face original_model")
    tensors: dict[str, torch.Tensor] = {}
    for n, t in [*orig.named_parameters(remove_duplicate=False), *orig.named_buffers(remove_duplicate=False)]:
        tensors.setdefault(n.replace("._original_component", ""), t)
    cfg = copy.deepcopy(orig.config)  # the shadow's modules keep a reference: never share the bridge's
    attn = attn_implementation or getattr(orig.config, "_attn_implementation", None)
    try:
        with torch.device("meta"):
            shadow = type(orig)._from_config(cfg, attn_implementation=attn)
    except Exception as e:  # noqa: BLE001 -- any failure means: no fast path, say why
        raise LeanUnavailable(f"cannot rebuild {type(orig).__name__} from its config: {e}") from e
    missing = []
    for slots, named in (("_parameters", shadow.named_parameters(remove_duplicate=False)),
                         ("_buffers", shadow.named_buffers(remove_duplicate=False))):
        for n, _ in list(named):
            mod_name, _, attr = n.rpartition(".")
            if n in tensors:
                getattr(shadow.get_submodule(mod_name), slots)[attr] = tensors[n]
            else:
                missing.append(n)
    if missing:
        raise LeanUnavailable(f"the bridge has no tensor for {missing[:3]} of a fresh {type(orig).__name__}")
    # attributes computed from buffers at init (e.g. rotary ``original_inv_freq`` kept as a plain attribute)
    for name, mod in shadow.named_modules():
        for attr, val in list(vars(mod).items()):
            if isinstance(val, torch.Tensor) and val.device.type == "meta":
                src = tensors.get(f"{name}.{attr}" if name else attr)
                if src is None:
                    raise LeanUnavailable(f"{name}.{attr} of the fresh model has no value in the bridge")
                setattr(mod, attr, src)
    shadow.eval()
    return shadow



def rms_norm(x, norm):
    """Gemma's ``(1 + w) * x / rms(x)`` with the weight and epsilon of the RMSNorm module ``norm``, in
    float32."""
    xf = x.float()
    y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + norm.eps)
    return (y * (1.0 + norm.weight.float())).to(x.dtype)


def rotate(x, cos, sin):
    """Rotary embedding of ``x [N, H, T, d_head]``."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


def fused_act(act):
    """The model's MLP activation module as one fused torch op where it is the same function:
    the tanh-approximated GELU (Gemma's ``gelu_pytorch_tanh``) is ``F.gelu(approximate='tanh')``
    up to rounding (~1e-7 relative; tests compare with the HF model).  Anything else: the module."""
    from transformers.activations import GELUTanh, NewGELUActivation

    if isinstance(act, (NewGELUActivation, GELUTanh)):
        return lambda x: F.gelu(x, approximate="tanh")
    return act


def _edit(edits, hook, x):
    """``x`` through the hook edit ``edits[hook]`` if there is one (hook IG), else ``x`` itself."""
    return edits[hook](x) if edits and hook in edits else x


class LeanGemma3:
    """``Gemma3DecoderLayer`` as plain tensor code: (1 + w) RMSNorms (q/k norms, pre/post attention and
    feed-forward), per-layer-type rotary and sliding windows, ``query_pre_attn_scalar``, GeGLU, logit
    softcap; and the driver (masks, prefix keys/values, the block loop, hook edits).  The projections
    and norms are the Hugging Face modules' own (called on their weights, no copies).

    Residual stream layout: ``h [N, T', d_model]`` for positions ``p0 .. T-1``; prefix keys/values
    ``[B, n_kv, p0, d_head]`` per block, shared by the ``N = k*B`` copies (row ``i*B + b`` is copy
    ``i`` of prompt ``b``, the layout ig.py uses).
    """

    arch = "gemma3_text"

    def __init__(self, hf):
        self.hf, self.cfg = hf, hf.config
        self.blocks = list(hf.model.layers)
        self.acts = [fused_act(b.mlp.act_fn) for b in self.blocks]
        self.embed = hf.model.embed_tokens
        """``blocks.0.hook_resid_pre`` of tokens (Gemma3TextScaledWordEmbedding: lookup * sqrt(d))."""

    # -- the transcription ------------------------------------------------------------------
    def positions(self, p0: int, T: int, like: torch.Tensor) -> dict:
        """Rotary ``(cos, sin)`` per layer type for positions ``p0 .. T-1``."""
        out = {}
        with torch.no_grad():
            for t in {b.self_attn.layer_type for b in self.blocks}:
                cos, sin = self.hf.model.rotary_emb(like[:1, :1], torch.arange(T, device=like.device)[None], t)
                out[t] = (cos[0, p0:].to(like.dtype), sin[0, p0:].to(like.dtype))
        return out

    def qkv(self, l: int, h: torch.Tensor, pos) -> tuple:
        """Queries ``[N, H, T', d_head]``, keys and values ``[N, n_kv, T', d_head]`` of block ``l``."""
        att = self.blocks[l].self_attn
        x = rms_norm(h, self.blocks[l].input_layernorm)
        q, k, v = (p(x).unflatten(-1, (-1, self.cfg.head_dim)).transpose(1, 2)
                   for p in (att.q_proj, att.k_proj, att.v_proj))
        cs = pos[att.layer_type]
        return rotate(rms_norm(q, att.q_norm), *cs), rotate(rms_norm(k, att.k_norm), *cs), v

    def out(self, l: int, h: torch.Tensor, z: torch.Tensor, edits: dict | None = None) -> torch.Tensor:
        """The rest of block ``l`` from its input ``h`` and attention ``z [N, T', H, d_head]``."""
        b = self.blocks[l]
        h = h + rms_norm(b.self_attn.o_proj(z.flatten(2)), b.post_attention_layernorm)
        x = rms_norm(h, b.pre_feedforward_layernorm)
        m = rms_norm(b.mlp.down_proj(self.acts[l](b.mlp.gate_proj(x)) * b.mlp.up_proj(x)),
                     b.post_feedforward_layernorm)
        return h + _edit(edits, f"blocks.{l}.hook_mlp_out", m)

    def final(self, h: torch.Tensor) -> torch.Tensor:
        """Logits from the last block's output (final norm, unembedding, softcap)."""
        logits = self.hf.get_output_embeddings()(rms_norm(h, self.hf.model.norm))
        cap = self.cfg.final_logit_softcapping
        if cap is not None:
            logits = torch.tanh(logits / cap) * cap
        return logits

    # -- driver ----------------------------------------------------------------------------
    def _mask(self, l: int, p0: int, T: int, device):
        """Boolean ``[T-p0, T]``: query ``i`` sees key ``j <= i`` (and ``j > i - window``)."""
        i = torch.arange(p0, T, device=device)[:, None]
        j = torch.arange(T, device=device)[None]
        att = self.blocks[l].self_attn
        return (j <= i) & (j > i - att.sliding_window) if att.is_sliding else j <= i

    def _attend(self, l, q, k, v, mask, edits: dict | None = None):
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.blocks[l].self_attn.scaling,
                                           enable_gqa=q.shape[1] != k.shape[1])
        return _edit(edits, f"blocks.{l}.attn.hook_z", a.transpose(1, 2))  # [N, Tq, H, d_head], as hook_z

    def plain(self, h: torch.Tensor, start: int) -> list[tuple]:
        """``(block input, keys, values)`` of blocks ``start ..`` on all positions of ``h [B, T', d]``
        (no grad)."""
        pos = self.positions(0, h.shape[1], h)
        out = []
        with torch.no_grad():
            for l in range(start, len(self.blocks)):
                q, k, v = self.qkv(l, h, pos)
                out.append((h, k, v))
                h = self.out(l, h, self._attend(l, q, k, v, self._mask(l, 0, h.shape[1], h.device)))
        return out

    def prefix_kv(self, h: torch.Tensor, start: int) -> list:
        """Keys/values of blocks ``start ..`` for the shared positions ``0 .. p0-1`` (``h [B, p0, d]``,
        the residual input of block ``start``)."""
        if h.shape[1] == 0:
            return [None] * (len(self.blocks) - start)
        return [(k, v) for _, k, v in self.plain(h, start)]

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
        pos = self.positions(p0, T, h)
        n = len(self.blocks)
        for i, l in enumerate(range(start, n)):
            h = _edit(edits, f"blocks.{l}.hook_resid_pre", h)
            q, k, v = self.qkv(l, h, pos)
            if p0:  # the shared positions' keys/values, repeated for the N // B copies
                k, v = (torch.cat([p.repeat(N // p.shape[0], 1, 1, 1), x], dim=2)
                        for p, x in zip(prefix[i], (k, v)))
            mask = self._mask(l, p0, T, h.device)
            edited = f"blocks.{l}.attn.hook_z" in edits or f"blocks.{l}.hook_mlp_out" in edits
            if last_only and l == n - 1 and not edited:  # the last block: only the last query is read
                m = mask[-1:]
                z = self._attend(l, q[:, :, -1:], k, v, None if bool(m.all()) else m)
                h = self.out(l, h[:, -1:], z)
            else:
                h = self.out(l, h, self._attend(l, q, k, v, mask, edits), edits)
        if last_only:
            h = h[:, -1:]
        return self.final(h)


def check_gemma3(cfg) -> str | None:
    uncovered = {"attn_logit_softcapping": "attention-logit softcapping (no fused SDPA form)",
                 "use_bidirectional_attention": "bidirectional attention",
                 "attention_bias": "attention biases"}
    return next((f"Gemma 3 with {why}" for k, why in uncovered.items() if getattr(cfg, k, None)), None)


# model_type -> (class, check returning the reason it cannot run, or None)
LEAN_ARCHS = {"gemma3_text": (LeanGemma3, check_gemma3)}
