"""Lean forwards: the Hugging Face decoder stacks as plain tensor code on the bridge's own weights.

Used by integrated gradients (ig.py, through fastpath.lean_forward) for the ``k`` interpolated
copies of a prompt batch.  The bridge's forward spends much of its time outside the matmuls (per-op
hook points, eager attention, copies); these classes run the same arithmetic as the Hugging Face
modules with fused SDPA attention and skip work the metric cannot see:

* positions before the first one where input and baseline differ (``p0``) are identical in every
  copy (causal attention), so their keys/values are computed once at batch ``B``
  (:meth:`LeanForward.prefix_kv`) and only positions ``p0 ..`` run ``k`` times;
* in the last block only the last position's query, attention output and MLP are computed, and
  only its logits (the metric reads the last position only; ig.py checks this first).

One driver (:class:`LeanForward`: masks, prefix keys/values, the block loop, hook edits) and one
small subclass per architecture, each a transcription of its Hugging Face decoder layer:

==============  ============================================================================
``llama``       RMSNorm, rotary (the model's ``rotary_emb``), grouped KV heads, SwiGLU
``gpt2``        LayerNorm, learned positions (added at ``hook_embed``), fused ``c_attn``
                Conv1D (``x @ W + b``), GELU MLP, tied unembedding
``gpt_neox``    LayerNorm, fused per-head ``query_key_value``, partial rotary, parallel (or
                sequential) attention + MLP residual, untied unembedding
``gemma3_text`` (1 + w) RMSNorm incl. q/k norms, per-layer-type rotary, sliding-window masks,
                ``query_pre_attn_scalar``, pre/post attention and feed-forward norms, scaled
                embedding (part of ``hook_embed``), GeGLU, final logit softcapping
==============  ============================================================================

Weights are read from :func:`interp.models.hf_capture.hf_model`, a Hugging Face model sharing
every tensor with the bridge (no copies), by their native names.  Activations a hook edit can
replace (hook IG) follow the bridge's definitions: ``blocks.l.hook_resid_pre`` (block input),
``blocks.l.attn.hook_z`` (``[N, T, H, d_head]`` before the output projection) and
``blocks.l.hook_mlp_out`` (what the MLP adds to the residual; on Gemma 3 after its post norm).

Memory: prefix keys/values ``2 * n_layers * B * p0 * d_kv`` floats, plus the autograd graph of the
``k*B*(T-p0)`` rows that run, about what the bridge keeps for the same rows.  Exactness is checked
by tests/test_ig_fast.py and tests/test_ig_lean_archs.py against the bridge and against the Hugging
Face model itself (values and gradients), and at run time by ig.py's self-check on the input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def rms_norm(x, w, eps, offset: float = 0.0):
    """``w * x / rms(x)`` in float32 (Llama), or ``(1 + w) * ...`` with ``offset=1`` (Gemma)."""
    xf = x.float()
    y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    if offset:
        return (y * (offset + w.float())).to(x.dtype)
    return w * y.to(x.dtype)


def rotate(x, cos, sin):
    """Rotary embedding on the first ``cos.shape[-1]`` features of ``x [N, H, T, d_head]``."""
    r = cos.shape[-1]
    xr, xp = (x, None) if r == x.shape[-1] else (x[..., :r], x[..., r:])
    x1, x2 = xr.chunk(2, dim=-1)
    out = xr * cos + torch.cat((-x2, x1), dim=-1) * sin
    return out if xp is None else torch.cat((out, xp), dim=-1)


def fused_act(act):
    """The model's MLP activation module as one fused torch op where it is the same function:
    ``gelu_new`` (GPT-2; the tanh formula written out in eight element-wise ops, ~40% of the lean
    GPT-2 forward's time outside the matmuls) is ``F.gelu(approximate='tanh')`` up to rounding
    (~1e-7 relative; tests compare with the HF model).  Anything else: the module itself."""
    from transformers.activations import GELUTanh, NewGELUActivation

    if isinstance(act, (NewGELUActivation, GELUTanh)):
        return lambda x: F.gelu(x, approximate="tanh")
    return act


def _heads(x, N, T, H, dh):
    return x.view(N, T, H, dh).transpose(1, 2)


class LeanForward:
    """The driver.  Subclasses set ``layers`` (one dict of tensors per block), ``n_heads``,
    ``n_kv``, ``d_head``, ``scale`` (per block) and ``window`` (per block, None: full causal) and
    implement :meth:`positions`, :meth:`qkv`, :meth:`out` and :meth:`final`.

    Residual stream layout: ``h [N, T', d_model]`` for positions ``p0 .. T-1``; prefix keys/values
    ``[B, n_kv, p0, d_head]`` per block, shared by the ``N = k*B`` copies (row ``i*B + b`` is copy
    ``i`` of prompt ``b``, the layout ig.py uses).
    """

    arch = "?"
    layers: list
    n_heads: int
    n_kv: int
    d_head: int
    scale: list
    window: list

    # -- per architecture ------------------------------------------------------------------
    def positions(self, p0: int, T: int, like: torch.Tensor):
        """Whatever :meth:`qkv` needs for positions ``p0 .. T-1`` (rotary cos/sin, or None)."""
        return None

    def qkv(self, l: int, h: torch.Tensor, pos) -> tuple:
        """Queries ``[N, H, T', d_head]``, keys and values ``[N, n_kv, T', d_head]`` of block ``l``."""
        raise NotImplementedError

    def out(self, l: int, h: torch.Tensor, z: torch.Tensor, edits: dict) -> torch.Tensor:
        """The rest of block ``l`` from its input ``h`` and attention ``z [N, T', H, d_head]``."""
        raise NotImplementedError

    def final(self, h: torch.Tensor) -> torch.Tensor:
        """Logits from the last block's output."""
        raise NotImplementedError

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """``blocks.0.hook_resid_pre`` of ``tokens``."""
        raise NotImplementedError

    def from_hook(self, x: torch.Tensor, hook: str, p0: int = 0) -> torch.Tensor:
        """The residual input of the start block from the activation at ``hook`` for positions
        ``p0 ..`` (identity except at ``hook_embed`` on models with learned positions)."""
        return x

    def _set_unembed(self, hf):
        lm = hf.get_output_embeddings()
        self.w_u, self.b_u = lm.weight, getattr(lm, "bias", None)

    def unembed(self, x):
        return F.linear(x, self.w_u, self.b_u)

    # -- driver ----------------------------------------------------------------------------
    def _mask(self, l: int, p0: int, T: int, device, cache: dict):
        """Boolean ``[T-p0, T]``: query ``i`` sees key ``j <= i`` (and ``j > i - window``)."""
        w = self.window[l]
        key = (w, p0, T)
        if key not in cache:
            i = torch.arange(p0, T, device=device)[:, None]
            j = torch.arange(T, device=device)[None]
            m = j <= i
            if w is not None:
                m = m & (j > i - w)
            cache[key] = m
        return cache[key]

    def _attend(self, l, q, k, v, mask, edits):
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scale[l],
                                           enable_gqa=self.n_kv != self.n_heads)
        z = a.transpose(1, 2)  # [N, Tq, H, d_head]: TransformerLens' blocks.l.attn.hook_z
        if edits and f"blocks.{l}.attn.hook_z" in edits:
            z = edits[f"blocks.{l}.attn.hook_z"](z)
        return z

    def residuals(self, h: torch.Tensor) -> list[torch.Tensor]:
        """``blocks.l.hook_resid_pre`` for every block ``l`` from ``blocks.0.hook_resid_pre`` (no grad)."""
        T = h.shape[1]
        pos, masks = self.positions(0, T, h), {}
        out = []
        with torch.no_grad():
            for l in range(len(self.layers)):
                out.append(h)
                q, k, v = self.qkv(l, h, pos)
                h = self.out(l, h, self._attend(l, q, k, v, self._mask(l, 0, T, h.device, masks), None), {})
        return out

    def prefix_kv(self, h: torch.Tensor, start: int) -> list:
        """Keys/values of blocks ``start ..`` for the shared positions ``0 .. p0-1`` (``h [B, p0, d]``,
        the residual input of block ``start``)."""
        p0 = h.shape[1]
        if p0 == 0:
            return [None] * (len(self.layers) - start)
        pos, masks = self.positions(0, p0, h), {}
        out = []
        with torch.no_grad():
            for l in range(start, len(self.layers)):
                q, k, v = self.qkv(l, h, pos)
                out.append((k, v))
                h = self.out(l, h, self._attend(l, q, k, v, self._mask(l, 0, p0, h.device, masks), None), {})
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
        pos, masks = self.positions(p0, T, h), {}
        n = len(self.layers)
        for i, l in enumerate(range(start, n)):
            if f"blocks.{l}.hook_resid_pre" in edits:
                h = edits[f"blocks.{l}.hook_resid_pre"](h)
            q, k, v = self.qkv(l, h, pos)
            if p0:
                pk, pv = prefix[i]
                rep = N // pk.shape[0]
                k = torch.cat([pk.repeat(rep, 1, 1, 1), k], dim=2)
                v = torch.cat([pv.repeat(rep, 1, 1, 1), v], dim=2)
            mask = self._mask(l, p0, T, h.device, masks)
            edited = f"blocks.{l}.attn.hook_z" in edits or f"blocks.{l}.hook_mlp_out" in edits
            if last_only and l == n - 1 and not edited:  # the last block: only the last query is read
                m = mask[-1:]
                z = self._attend(l, q[:, :, -1:], k, v, None if bool(m.all()) else m, None)
                h = self.out(l, h[:, -1:], z, {})
            else:
                h = self.out(l, h, self._attend(l, q, k, v, mask, edits), edits)
        if last_only:
            h = h[:, -1:]
        return self.final(h)


def _mlp_edit(edits, l, m):
    name = f"blocks.{l}.hook_mlp_out"
    return edits[name](m) if edits and name in edits else m


def _linear(x, w, b=None):
    return F.linear(x, w, b)


# ---------------------------------------------------------------------------------------------
# Llama (SmolLM2)
# ---------------------------------------------------------------------------------------------


class LeanLlama(LeanForward):
    """``LlamaDecoderLayer``: RMSNorm, rotary, grouped KV heads, SwiGLU (no biases)."""

    arch = "llama"

    def __init__(self, hf):
        cfg = hf.config
        self.hf, self.cfg = hf, cfg
        self.n_heads, self.n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
        self.d_head = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.layers, self.scale = [], []
        for layer in hf.model.layers:
            att, mlp = layer.self_attn, layer.mlp
            self.layers.append(dict(
                ln1=layer.input_layernorm.weight, eps1=layer.input_layernorm.variance_epsilon,
                ln2=layer.post_attention_layernorm.weight, eps2=layer.post_attention_layernorm.variance_epsilon,
                q=att.q_proj.weight, k=att.k_proj.weight, v=att.v_proj.weight, o=att.o_proj.weight,
                gate=mlp.gate_proj.weight, up=mlp.up_proj.weight, down=mlp.down_proj.weight, act=mlp.act_fn))
            self.scale.append(float(att.scaling))
        self.window = [None] * len(self.layers)
        self.lnf, self.eps_f = hf.model.norm.weight, hf.model.norm.variance_epsilon
        self.w_e = hf.model.embed_tokens.weight
        self._set_unembed(hf)

    def positions(self, p0, T, like):
        with torch.no_grad():
            cos, sin = self.hf.model.rotary_emb(like[:1, :1].expand(1, T, -1), torch.arange(T, device=like.device)[None])
        return cos[0, p0:].to(like.dtype), sin[0, p0:].to(like.dtype)

    def qkv(self, l, h, pos):
        L, (N, T, _) = self.layers[l], h.shape
        x = rms_norm(h, L["ln1"], L["eps1"])
        q = _heads(x @ L["q"].T, N, T, self.n_heads, self.d_head)
        k = _heads(x @ L["k"].T, N, T, self.n_kv, self.d_head)
        v = _heads(x @ L["v"].T, N, T, self.n_kv, self.d_head)
        return rotate(q, *pos), rotate(k, *pos), v

    def out(self, l, h, z, edits):
        L, (N, T) = self.layers[l], h.shape[:2]
        h = h + z.reshape(N, T, -1) @ L["o"].T
        x = rms_norm(h, L["ln2"], L["eps2"])
        m = (L["act"](x @ L["gate"].T) * (x @ L["up"].T)) @ L["down"].T
        return h + _mlp_edit(edits, l, m)

    def final(self, h):
        return self.unembed(rms_norm(h, self.lnf, self.eps_f))

    def embed(self, tokens):
        return F.embedding(tokens, self.w_e)


def check_llama(cfg) -> str | None:
    if getattr(cfg, "attention_bias", False) or getattr(cfg, "mlp_bias", False):
        return "Llama with attention/MLP biases"
    if getattr(cfg, "sliding_window", None):
        return "Llama with a sliding window"
    return None


# ---------------------------------------------------------------------------------------------
# GPT-2
# ---------------------------------------------------------------------------------------------


class LeanGPT2(LeanForward):
    """``GPT2Block``: LayerNorm, fused Conv1D ``c_attn`` (``x @ W + b``), GELU MLP, learned positions."""

    arch = "gpt2"

    def __init__(self, hf):
        cfg = hf.config
        self.hf, self.cfg = hf, cfg
        tr = hf.transformer
        self.n_heads = self.n_kv = cfg.n_head
        self.d_head = cfg.n_embd // cfg.n_head
        self.layers, self.scale = [], []
        for l, b in enumerate(tr.h):
            self.layers.append(dict(
                ln1=(b.ln_1.weight, b.ln_1.bias, b.ln_1.eps), ln2=(b.ln_2.weight, b.ln_2.bias, b.ln_2.eps),
                qkv=(b.attn.c_attn.weight, b.attn.c_attn.bias), o=(b.attn.c_proj.weight, b.attn.c_proj.bias),
                fc=(b.mlp.c_fc.weight, b.mlp.c_fc.bias), proj=(b.mlp.c_proj.weight, b.mlp.c_proj.bias),
                act=fused_act(b.mlp.act)))
            s = self.d_head ** -0.5 if cfg.scale_attn_weights else 1.0
            self.scale.append(s / (l + 1) if cfg.scale_attn_by_inverse_layer_idx else s)
        self.window = [None] * len(self.layers)
        self.lnf = (tr.ln_f.weight, tr.ln_f.bias, tr.ln_f.eps)
        self.w_e, self.w_p = tr.wte.weight, tr.wpe.weight
        self._set_unembed(hf)

    @staticmethod
    def _ln(x, p):
        return F.layer_norm(x, (x.shape[-1],), p[0], p[1], p[2])

    @staticmethod
    def _conv1d(x, p):  # transformers' Conv1D: weight [in, out]
        return torch.addmm(p[1], x.reshape(-1, x.shape[-1]), p[0]).view(*x.shape[:-1], -1)

    def qkv(self, l, h, pos):
        L, (N, T, d) = self.layers[l], h.shape
        q, k, v = self._conv1d(self._ln(h, L["ln1"]), L["qkv"]).split(d, dim=-1)
        H, dh = self.n_heads, self.d_head
        return _heads(q, N, T, H, dh), _heads(k, N, T, H, dh), _heads(v, N, T, H, dh)

    def out(self, l, h, z, edits):
        L, (N, T) = self.layers[l], h.shape[:2]
        h = h + self._conv1d(z.reshape(N, T, -1), L["o"])
        m = self._conv1d(L["act"](self._conv1d(self._ln(h, L["ln2"]), L["fc"])), L["proj"])
        return h + _mlp_edit(edits, l, m)

    def final(self, h):
        return self.unembed(self._ln(h, self.lnf))

    def embed(self, tokens):
        return F.embedding(tokens, self.w_e) + self.w_p[: tokens.shape[1]]

    def from_hook(self, x, hook, p0=0):
        if hook == "hook_embed":  # the token embedding only: add the learned positions p0 ..
            return x + self.w_p[p0:p0 + x.shape[1]]
        return x


def check_gpt2(cfg) -> str | None:
    if getattr(cfg, "reorder_and_upcast_attn", False):
        return "GPT-2 with reorder_and_upcast_attn"
    if getattr(cfg, "add_cross_attention", False):
        return "GPT-2 with cross-attention"
    return None


# ---------------------------------------------------------------------------------------------
# GPT-NeoX / Pythia
# ---------------------------------------------------------------------------------------------


class LeanNeoX(LeanForward):
    """``GPTNeoXLayer``: LayerNorm, fused per-head ``query_key_value``, partial rotary, parallel
    (``use_parallel_residual``) or sequential attention + MLP."""

    arch = "gpt_neox"

    def __init__(self, hf):
        cfg = hf.config
        self.hf, self.cfg = hf, cfg
        m = hf.gpt_neox
        self.n_heads = self.n_kv = cfg.num_attention_heads
        self.d_head = cfg.hidden_size // cfg.num_attention_heads
        self.parallel = bool(cfg.use_parallel_residual)
        self.layers, self.scale = [], []
        for b in m.layers:
            ln1, ln2 = b.input_layernorm, b.post_attention_layernorm
            self.layers.append(dict(
                ln1=(ln1.weight, ln1.bias, ln1.eps), ln2=(ln2.weight, ln2.bias, ln2.eps),
                qkv=(b.attention.query_key_value.weight, b.attention.query_key_value.bias),
                o=(b.attention.dense.weight, b.attention.dense.bias),
                fc=(b.mlp.dense_h_to_4h.weight, b.mlp.dense_h_to_4h.bias),
                proj=(b.mlp.dense_4h_to_h.weight, b.mlp.dense_4h_to_h.bias), act=fused_act(b.mlp.act)))
            self.scale.append(float(b.attention.scaling))
        self.window = [None] * len(self.layers)
        self.lnf = (m.final_layer_norm.weight, m.final_layer_norm.bias, m.final_layer_norm.eps)
        self.w_e = m.embed_in.weight
        self._set_unembed(hf)

    _ln = staticmethod(LeanGPT2._ln)

    def positions(self, p0, T, like):
        with torch.no_grad():
            cos, sin = self.hf.gpt_neox.rotary_emb(like[:1, :1], torch.arange(T, device=like.device)[None])
        return cos[0, p0:].to(like.dtype), sin[0, p0:].to(like.dtype)

    def qkv(self, l, h, pos):
        L, (N, T, _) = self.layers[l], h.shape
        qkv = _linear(self._ln(h, L["ln1"]), *L["qkv"]).view(N, T, self.n_heads, 3 * self.d_head).transpose(1, 2)
        q, k, v = qkv.chunk(3, dim=-1)
        return rotate(q, *pos), rotate(k, *pos), v

    def _mlp(self, L, x):
        return _linear(L["act"](_linear(self._ln(x, L["ln2"]), *L["fc"])), *L["proj"])

    def out(self, l, h, z, edits):
        L, (N, T) = self.layers[l], h.shape[:2]
        a = _linear(z.reshape(N, T, -1), *L["o"])
        if self.parallel:
            return _mlp_edit(edits, l, self._mlp(L, h)) + a + h
        h = a + h
        return _mlp_edit(edits, l, self._mlp(L, h)) + h

    def final(self, h):
        return self.unembed(self._ln(h, self.lnf))

    def embed(self, tokens):
        return F.embedding(tokens, self.w_e)


def check_neox(cfg) -> str | None:
    return None


# ---------------------------------------------------------------------------------------------
# Gemma 3 (text)
# ---------------------------------------------------------------------------------------------


class LeanGemma3(LeanForward):
    """``Gemma3DecoderLayer``: (1 + w) RMSNorms (q/k norms, pre/post attention and feed-forward),
    per-layer-type rotary and sliding windows, ``query_pre_attn_scalar``, GeGLU, logit softcap."""

    arch = "gemma3_text"

    def __init__(self, hf):
        cfg = hf.config
        self.hf, self.cfg = hf, cfg
        m = hf.model
        self.n_heads, self.n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
        self.d_head = cfg.head_dim
        self.layers, self.scale, self.window, self.types = [], [], [], []
        for b in m.layers:
            att, mlp = b.self_attn, b.mlp
            n = {k: (getattr(b, k).weight, getattr(b, k).eps) for k in (
                "input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm", "post_feedforward_layernorm")}
            self.layers.append(dict(
                **n, qn=(att.q_norm.weight, att.q_norm.eps), kn=(att.k_norm.weight, att.k_norm.eps),
                q=att.q_proj.weight, k=att.k_proj.weight, v=att.v_proj.weight, o=att.o_proj.weight,
                gate=mlp.gate_proj.weight, up=mlp.up_proj.weight, down=mlp.down_proj.weight, act=fused_act(mlp.act_fn)))
            self.scale.append(float(att.scaling))
            self.window.append(att.sliding_window if att.is_sliding else None)
            self.types.append(att.layer_type)
        self.lnf = (m.norm.weight, m.norm.eps)
        self.embedding = m.embed_tokens
        self._set_unembed(hf)
        self.softcap = cfg.final_logit_softcapping

    def positions(self, p0, T, like):
        out = {}
        with torch.no_grad():
            for t in set(self.types):
                cos, sin = self.hf.model.rotary_emb(like[:1, :1], torch.arange(T, device=like.device)[None], t)
                out[t] = (cos[0, p0:].to(like.dtype), sin[0, p0:].to(like.dtype))
        return out

    def qkv(self, l, h, pos):
        L, (N, T, _) = self.layers[l], h.shape
        x = rms_norm(h, *L["input_layernorm"], offset=1.0)
        q = rms_norm(_heads(x @ L["q"].T, N, T, self.n_heads, self.d_head), *L["qn"], offset=1.0)
        k = rms_norm(_heads(x @ L["k"].T, N, T, self.n_kv, self.d_head), *L["kn"], offset=1.0)
        v = _heads(x @ L["v"].T, N, T, self.n_kv, self.d_head)
        cs = pos[self.types[l]]
        return rotate(q, *cs), rotate(k, *cs), v

    def out(self, l, h, z, edits):
        L, (N, T) = self.layers[l], h.shape[:2]
        h = h + rms_norm(z.reshape(N, T, -1) @ L["o"].T, *L["post_attention_layernorm"], offset=1.0)
        x = rms_norm(h, *L["pre_feedforward_layernorm"], offset=1.0)
        m = (L["act"](x @ L["gate"].T) * (x @ L["up"].T)) @ L["down"].T
        return h + _mlp_edit(edits, l, rms_norm(m, *L["post_feedforward_layernorm"], offset=1.0))

    def final(self, h):
        logits = self.unembed(rms_norm(h, *self.lnf, offset=1.0))
        if self.softcap is not None:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits

    def embed(self, tokens):
        return self.embedding(tokens)  # Gemma3TextScaledWordEmbedding: lookup * sqrt(d_model)


def check_gemma3(cfg) -> str | None:
    if getattr(cfg, "attn_logit_softcapping", None) is not None:
        return "Gemma 3 with attention-logit softcapping (no fused SDPA form)"
    if getattr(cfg, "use_bidirectional_attention", False):
        return "Gemma 3 with bidirectional attention"
    if getattr(cfg, "attention_bias", False):
        return "Gemma 3 with attention biases"
    return None


# model_type -> (class, check returning the reason it cannot run, or None)
LEAN_ARCHS = {
    "llama": (LeanLlama, check_llama),
    "gpt2": (LeanGPT2, check_gpt2),
    "gpt_neox": (LeanNeoX, check_neox),
    "gemma3_text": (LeanGemma3, check_gemma3),
}
