"""Attention sinks: sink score, value-state drain and residual-state peak, per head, in one pass.

Definitions (Guo et al. 2024, "Active-Dormant Attention Heads", arXiv 2410.13835; see
docs/methods.md, Attention sinks).  Position 0 holds the first token ⟨s⟩ (BOS).  For layer ℓ, head h, over a
batch of equal-length sequences:

* **sink score**      s[ℓ,h] = mean_seq mean_{q>=1} A_h[q, 0]   (``blocks.ℓ.attn.hook_pattern``)
* **row entropy**     e[ℓ,h] = mean_seq mean_{q>=1} H(A_h[q, :q+1]) / log(q+1)  (Guo's ``entropy.py``
  row statistic; 0 = all attention on one key, 1 = uniform)
* **value drain**     ‖v_h(⟨s⟩)‖ against mean_{i>=1} ‖v_h(i)‖ and max_{i>=1} ‖v_h(i)‖
  (``blocks.ℓ.attn.hook_v``; with grouped-query attention a query head reads the value of its
  KV group, ``kv = h // (H / n_kv)``).  ``value_drain = sink / rest_mean``: well below 1 means
  the sink's value is drained, so a head attending only to ⟨s⟩ writes almost nothing.
* **residual peak**   ‖h^ℓ(⟨s⟩)‖ against max_{i>=1} ‖h^ℓ(i)‖ (``blocks.ℓ.hook_resid_post``);
  ``resid_peak = sink / rest_max`` above 1 means the first token's residual state is the
  largest in the sequence.

Algorithm: one forward pass per batch with read-only hooks on every layer's pattern, value and
residual output.  Each hook reduces its tensor at once over all heads and sequences (no loop over
either) to sums of per-sequence statistics.  :func:`store_position_stats` computes the same statistics from an
activation store's rows, one stored sequence at a time (:func:`store_sequences`), so value drain
and residual peak come out the same whether computed live or from stored activations.  The sink
score from a store (:func:`sink_scores_from_store`) rebuilds each stored sequence's pattern from its post-rotary
queries and keys (``blocks.ℓ.attn.hook_rot_q`` / ``hook_rot_k``), since the ``[T, T]`` pattern
itself is not a per-token row.

The live pass also gives Guo et al.'s column-entropy score (max over keys of :func:`column_entropy`).
:func:`sink_stats` returns a typed :class:`SinkStats` (kind ``sink_stats``) whose report shows the
layer x head sink score and value drain and the residual norms per layer; :func:`add_sink_figures`
puts the same figures into the active-dormant report; :func:`attention_view` keeps one sequence's
patterns for the attention viewer.

Memory: one layer's attention pattern ``[B, H, T, T]`` at a time inside a hook (nothing is
cached; the column entropy briefly holds it in float64), plus ``O(n_seqs * L * H)`` statistics.
Compute: one forward pass over the inputs.
"""

from __future__ import annotations

import functools
import itertools
import re
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from interp.models import model_name, scoped_hooks, weight_hash
from interp.models.hooks import head_label
from interp.reports import AttentionPatterns, Report
from interp.results import Result, register, versions

SINK_THRESHOLD = 0.8
"""Default sink score at which a head counts as an attention sink (Guo et al. use 0.8 for dormant candidates)."""


class SinkHeads:
    """``sink_heads`` of a result with a ``sink_score [L, H]`` (row i is layer ``layers[i]`` where the result
    has ``layers``, else layer i) and a ``sink_threshold``."""

    def sink_heads(self, threshold: float | None = None) -> list[tuple[int, int, float]]:
        """``(layer, head, sink score)`` of every head whose score reaches ``threshold``, strongest first."""
        t = self.sink_threshold if threshold is None else threshold
        return strongest_heads(self.sink_score, t, getattr(self, "layers", None))

    def sinks_sentence(self, over: str) -> str:
        """The summary's lead: how many heads are sinks (mean ``over`` what) and the strongest three."""
        sinks = self.sink_heads()
        top = ", ".join(f"{head_label(a, b)} {s:.2f}" for a, b, s in sinks[:3])
        return (f"**{len(sinks)} of {self.sink_score.numel()} heads are attention sinks** (>= "
                f"{self.sink_threshold:g} of their attention on the first token, mean over {over})"
                + (f"; strongest {top}" if top else ""))


@register
@dataclass
class SinkStats(SinkHeads, Result):
    """Sink statistics of one model on one set of sequences (one domain)."""

    kind: ClassVar[str] = "sink_stats"
    axes: ClassVar[dict[str, str]] = {
        "sink_score#0": "layer", "sink_score#1": "head", "value_drain#0": "layer", "value_drain#1": "head",
        "resid_norm_sink#0": "layer", "resid_norm_sink": "residual norm"}

    sink_score: torch.Tensor
    """[L, H] mean over sequences and queries q >= 1 of the attention to position 0."""
    row_entropy: torch.Tensor
    """[L, H] mean normalised entropy of attention rows q >= 1 (0 = one key, 1 = uniform)."""
    column_entropy: torch.Tensor
    """[L, H] Guo's column score, mean over sequences of the max over keys of :func:`column_entropy` (1 = a
    key, the sink, attended evenly by every query)."""
    value_norm_sink: torch.Tensor
    """[L, H] mean ‖v_h‖ at position 0 (the head's KV group under GQA)."""
    value_norm_rest_mean: torch.Tensor
    """[L, H] mean over sequences of mean_{i>=1} ‖v_h(i)‖."""
    value_norm_rest_max: torch.Tensor
    """[L, H] mean over sequences of max_{i>=1} ‖v_h(i)‖."""
    resid_norm_sink: torch.Tensor
    """[L] mean ‖h^ℓ‖ (``blocks.ℓ.hook_resid_post``) at position 0."""
    resid_norm_rest_mean: torch.Tensor
    """[L] mean over sequences of mean_{i>=1} ‖h^ℓ(i)‖."""
    resid_norm_rest_max: torch.Tensor
    """[L] mean over sequences of max_{i>=1} ‖h^ℓ(i)‖."""
    n_seqs: int
    """Sequences the statistics average over."""
    seq_len: int
    """Tokens per sequence (position 0 included)."""
    example_tokens: list[str] = field(default_factory=list)
    """Tokens of the first sequence, decoded (for per-token displays)."""
    example_sink_attention: torch.Tensor | None = None
    """[L, H, T] attention of each query of the first sequence to position 0."""
    model: str = ""
    """Name of the model."""
    sink_threshold: float = SINK_THRESHOLD
    """Sink score at which :meth:`summary` counts a head as an attention sink."""

    @property
    def value_drain(self) -> torch.Tensor:
        """[L, H] ‖v(⟨s⟩)‖ / mean_{i>=1} ‖v(i)‖ (well below 1: the sink's value is drained)."""
        return self.value_norm_sink / self.value_norm_rest_mean.clamp_min(1e-12)

    @property
    def resid_peak(self) -> torch.Tensor:
        """[L] ‖h(⟨s⟩)‖ / max_{i>=1} ‖h(i)‖ (above 1: the first token's residual state peaks)."""
        return self.resid_norm_sink / self.resid_norm_rest_max.clamp_min(1e-12)

    def summary(self) -> str:
        text = self.sinks_sentence(f"{self.n_seqs} sequences of {self.seq_len} tokens"
                                   + (f" on {self.model}" if self.model else ""))
        drain = self.value_drain[self.sink_score >= self.sink_threshold]  # of the sink heads
        if len(drain):
            text += f". Their value at the first token is {drain.median():.2f}x the other tokens' (median)"
        peak = self.resid_peak
        top_l = int(peak.argmax())
        return text + (f". The first token's residual state is the largest in {int((peak > 1).sum())} of "
                       f"{len(peak)} layers (up to {float(peak[top_l]):.3g}x the largest other token's, "
                       f"after layer {top_l}).")

    def report(self):
        r = Report.of(self, f"Attention sinks: {self.model or 'model'}",
                      {"n_seqs": self.n_seqs, "seq_len": self.seq_len, "sink_threshold": self.sink_threshold})
        add_sink_figures(r, self)
        return r


def strongest_heads(score: torch.Tensor, threshold: float, layers=None) -> list[tuple[int, int, float]]:
    """``(layer, head, score)`` of every head of ``score [L, H]`` reaching ``threshold``, strongest first;
    row i is layer ``layers[i]`` (default: layer i)."""
    layers = range(len(score)) if layers is None else layers
    idx = (score >= threshold).nonzero().tolist()
    return sorted(((layers[i], h, float(score[i, h])) for i, h in idx), key=lambda x: -x[2])


@register
@dataclass
class StoreSinks(SinkHeads, Result):
    """Sink score and row entropy per head rebuilt from an activation store's post-rotary queries and keys
    (:func:`sink_scores_from_store`, ``interp store sinks``)."""

    kind: ClassVar[str] = "store_sinks"
    axes: ClassVar[dict[str, str]] = {"sink_score#0": "layer", "sink_score#1": "head",
                                      "row_entropy#0": "layer", "row_entropy#1": "head"}

    layers: list[int]
    """The stored layers scored; row i of each matrix is layer ``layers[i]``."""
    sink_score: torch.Tensor
    """[len(layers), H] mean over sequences and queries q >= 1 of the attention to position 0."""
    row_entropy: torch.Tensor
    """[len(layers), H] mean normalised entropy of attention rows q >= 1 (0 = one key, 1 = uniform)."""
    n_seqs: int
    """Stored sequences the statistics average over."""
    store: str = ""
    """Path of the activation store."""
    model: str = ""
    """The model the store was cached from (its manifest)."""
    scale: float | None = None
    """Attention scale given (None: 1/sqrt(d_head))."""
    sink_threshold: float = SINK_THRESHOLD
    """Sink score at which :meth:`summary` counts a head as an attention sink."""

    def summary(self) -> str:
        over = f"{self.n_seqs} stored sequences" + (f" of {self.model}" if self.model else "")
        return (self.sinks_sentence(f"{over}, layers {self.layers[0]}..{self.layers[-1]}")
                + f". Mean row entropy {float(self.row_entropy.mean()):.2f}.")

    def report(self):
        config = {"store": self.store, "layers": self.layers, "scale": self.scale,
                  "sink_threshold": self.sink_threshold}
        r = Report.of(self, f"Attention sinks from a store: {self.model or self.store}", config,
                      n_seqs=self.n_seqs)
        heads, rows = [f"H{h}" for h in range(self.sink_score.shape[1])], [f"L{L}" for L in self.layers]
        for name, title, caption in (
                ("sink_score", "Sink score", "Mean attention of queries q >= 1 to the first token, the "
                 "pattern softmax(q kᵀ · scale) rebuilt per stored sequence from blocks.ℓ.attn.hook_rot_q/k"),
                ("row_entropy", "Row entropy", "Mean entropy of each attention row q >= 1 over log(q + 1): "
                 "0 = all attention on one key, 1 = uniform.")):
            r.add_heatmap(title, getattr(self, name), heads, rows, caption, x_title="head", y_title="layer",
                          fields=(f"{name}#1", f"{name}#0"))
        return r


def add_sink_figures(r, st: SinkStats, where: str = "", prefix: str = "") -> None:
    """Sink score and value drain (layer x head heatmaps), residual norms per layer and the first
    sequence's attention to ⟨s⟩ of the strongest sink head, into report ``r``; ``prefix`` is the
    path of ``st`` in the result that owns the report (for the figures' ``fields``)."""
    L = st.sink_score.shape[0]
    def tag(what: str) -> str:
        return f"{where}: {what}" if where else what[0].upper() + what[1:]

    r.add_layer_heads(tag("sink score"), st.sink_score, f"{prefix}sink_score",
                      caption="Mean attention of queries q >= 1 to the first token ⟨s⟩ (blocks.ℓ.attn.hook_pattern); "
                              "colour scale fixed at 0 to 1.", zrange=(0.0, 1.0))
    r.add_layer_heads(tag("value drain"), st.value_drain, f"{prefix}value_drain",
                      caption="‖v(⟨s⟩)‖ / mean ‖v(i>=1)‖ (blocks.ℓ.attn.hook_v): well below 1, a head that attends to "
                              "⟨s⟩ reads almost nothing.")
    r.add_line(tag("residual norm at the first token and the others"), list(range(L)),
               {"‖h(⟨s⟩)‖": st.resid_norm_sink, "max ‖h(i>=1)‖": st.resid_norm_rest_max,
                "mean ‖h(i>=1)‖": st.resid_norm_rest_mean}, x_title="layer", y_title="residual norm", log_y=True,
               fields=(f"{prefix}resid_norm_sink#0", f"{prefix}resid_norm_sink"),
               caption="blocks.ℓ.hook_resid_post, mean over sequences.")
    sinks = st.sink_heads(0.0)
    if st.example_sink_attention is not None and st.example_tokens and sinks:
        a, b, _ = sinks[0]
        r.add_token_attributions(tag(f"attention of each token to the first token, head {head_label(a, b)}"),
                                 st.example_tokens, st.example_sink_attention[a, b])


def decoder(tokenizer):
    """``id -> text`` through ``tokenizer`` (cached per id; ``<id>`` without a tokenizer)."""
    if tokenizer is None:
        return lambda i: f"<{i}>"
    return functools.lru_cache(maxsize=None)(lambda i: tokenizer.decode([i]))


@torch.no_grad()
def attention_view(model, tokens: torch.Tensor, layers) -> AttentionPatterns:
    """The attention viewer (:class:`interp.reports.attention.AttentionPatterns`) of one sequence
    ``tokens [T]`` at ``layers``: one forward pass, ``blocks.ℓ.attn.hook_pattern`` kept."""
    layers = sorted({int(x) for x in layers})
    names = [f"blocks.{x}.attn.hook_pattern" for x in layers]
    _, cache = model.run_with_cache(tokens.reshape(1, -1).long().to(next(model.parameters()).device),
                                    names_filter=lambda name: name in names)
    decode = decoder(getattr(model, "tokenizer", None))
    return AttentionPatterns(tokens=[decode(i) for i in tokens.reshape(-1).tolist()], layers=layers,
                             patterns=torch.stack([cache[n][0].float().cpu() for n in names]),
                             model=model_name(model))


def provenance(model, seconds: float) -> dict:
    """What produced a result: model name, weight hash, device, wall seconds and :func:`interp.results.versions`."""
    return {"model": model_name(model), "weight_hash": weight_hash(model), "seconds": round(seconds, 2),
            "device": str(next(model.parameters()).device), "versions": versions()}


def sink_and_entropy(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sink, row entropy)``, each ``[...]``, of causal patterns ``a [..., T, T]``: the mean over queries
    q >= 1 of A[q, 0] and of the row entropy divided by log(q + 1) (that of a uniform row over keys 0..q)."""
    rows = a[..., 1:, :]
    logn = torch.log(torch.arange(2, a.shape[-1] + 1, dtype=a.dtype, device=a.device))
    ent = torch.special.entr(rows).sum(-1) / logn
    return rows[..., 0].mean(-1), ent.mean(-1)


def column_entropy(pattern: torch.Tensor) -> torch.Tensor:
    """``[..., K]`` normalised column entropy of each key of causal patterns ``pattern [..., Q, K]`` (Q = K).

    Column k is normalised over the queries (zero entries contribute 0), its entropy is divided by
    log(Q - k), the entropy of a uniform spread over the queries q >= k; the last key scores 0.
    """
    if pattern.ndim < 2 or pattern.shape[-1] != pattern.shape[-2]:
        raise ValueError(f"column_entropy needs square causal patterns [..., T, T], got {tuple(pattern.shape)}")
    a = pattern.double()
    H = torch.special.entr(a / a.sum(-2, keepdim=True).clamp_min(1e-300)).sum(-2)  # [..., K]
    T = a.shape[-1]
    norm = torch.log(T - torch.arange(T, dtype=torch.float64, device=a.device))
    return torch.where(norm > 0, H / norm.clamp_min(1e-300), 0.0).to(pattern.dtype if pattern.is_floating_point() else torch.float32)


def next_token_loss(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """``[B]`` mean cross-entropy (nats) of predicting ``tokens[:, 1:]`` from ``logits [B, T, V]``."""
    lp = logits[:, :-1].float().log_softmax(-1)
    return -lp.gather(-1, tokens[:, 1:, None]).squeeze(-1).mean(-1)


def check_tokens(tokens) -> torch.Tensor:
    """Validate a ``[B, T]`` integer batch (B >= 1, T >= 2) and return it as a LongTensor."""
    tokens = torch.as_tensor(tokens)
    if tokens.ndim != 2 or not len(tokens):
        raise ValueError(f"tokens must be a non-empty 2-D [batch, seq] batch (equal-length rows, no "
                         f"padding), got shape {tuple(tokens.shape)}")
    if tokens.dtype.is_floating_point:
        raise ValueError(f"tokens must be integer token ids, got dtype {tokens.dtype}")
    if tokens.shape[1] < 2:
        raise ValueError(f"sequences need at least 2 tokens (the sink and one query), got length {tokens.shape[1]}")
    return tokens.long()


@torch.no_grad()
def sink_stats(model, tokens: torch.Tensor, batch_size: int = 8) -> SinkStats:
    """Sink score, row entropy, value drain and residual peak of every head/layer on ``tokens``.

    ``tokens``: ``[B, T]`` equal-length sequences whose position 0 is the sink token.
    One hooked forward pass per ``batch_size`` sequences; nothing is cached.
    """
    tokens = check_tokens(tokens)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n_layers, n_heads = int(model.cfg.n_layers), int(model.cfg.n_heads)
    n_kv = int(getattr(model.cfg, "n_key_value_heads", None) or n_heads)
    B, T = tokens.shape
    device = next(model.parameters()).device
    attn = torch.zeros(3, n_layers, n_heads, dtype=torch.float64)  # sums: sink score, row, column entropy
    example = torch.zeros(n_layers, n_heads, T)
    vsum = torch.zeros(3, n_layers, n_kv, dtype=torch.float64)  # sums of (sink, rest mean, rest max) norms
    rsum = torch.zeros(3, n_layers, dtype=torch.float64)

    def pattern_hook(a, hook, layer: int):  # a: [b, H, Q, K]
        a = a.float()
        scores = torch.stack([*sink_and_entropy(a), column_entropy(a).max(-1).values])  # [3, b, H]
        attn[:, layer] += scores.double().sum(1).cpu()
        if start == 0:  # the first batch (``start``: the loop below)
            example[layer] = a[0, :, :, 0].cpu()

    def norm_hook(x, hook, acc: torch.Tensor, layer: int):  # hook_v [b, T, n_kv, d_head] / resid [b, T, d]
        n = x.float().norm(dim=-1)  # [b, T(, n_kv)]
        acc[:, layer] += torch.stack([n[:, 0], n[:, 1:].mean(1), n[:, 1:].amax(1)]).double().sum(1).cpu()

    fwd = []
    for L in range(n_layers):
        fwd += [(f"blocks.{L}.attn.hook_pattern", functools.partial(pattern_hook, layer=L)),
                (f"blocks.{L}.attn.hook_v", functools.partial(norm_hook, acc=vsum, layer=L)),
                (f"blocks.{L}.hook_resid_post", functools.partial(norm_hook, acc=rsum, layer=L))]
    with scoped_hooks(model, fwd=fwd):
        for start in range(0, B, batch_size):
            model(tokens[start:start + batch_size].to(device))

    decode = decoder(getattr(model, "tokenizer", None))
    vs, vm, vx = (vsum / B).float().repeat_interleave(n_heads // n_kv, dim=-1)  # a head reads its KV group
    rs, rm, rx = (rsum / B).float()
    sink, ent, col = (attn / B).float()
    return SinkStats(
        sink_score=sink, row_entropy=ent, column_entropy=col, value_norm_sink=vs, value_norm_rest_mean=vm,
        value_norm_rest_max=vx, resid_norm_sink=rs, resid_norm_rest_mean=rm, resid_norm_rest_max=rx,
        n_seqs=B, seq_len=T, example_tokens=[decode(i) for i in tokens[0].tolist()], example_sink_attention=example,
        model=model_name(model),
    )


def store_sequences(store, hook: str):
    """Yield ``(seq, rows [T_s, ...], row_ids [T_s], positions [T_s])`` for each sequence of ``hook`` in an
    activation store, in sequence order, its rows in position order (``row_ids`` index ``store.seq_pos`` /
    ``store.tokens``); each sequence is one ``store.rows`` read, wherever its rows lie in the store."""
    seq_pos = store.seq_pos[:].long()
    order = (seq_pos[:, 0] * (int(seq_pos[:, 1].max()) + 1) + seq_pos[:, 1]).argsort()
    sids, counts = torch.unique_consecutive(seq_pos[order, 0], return_counts=True)
    for sid, ids in zip(sids.tolist(), order.split(counts.tolist())):
        yield sid, store.rows(hook, ids), ids, seq_pos[ids, 1]


def store_position_stats(store, hook: str, reduce=lambda x: x.norm(dim=-1)) -> tuple[torch.Tensor, ...]:
    """``(sink, rest_mean, rest_max)`` of ``reduce(rows)`` of ``hook`` in an activation store: per sequence
    its position-0 value and the mean and max over its later positions, each averaged over the sequences that
    hold both (the store path of what :func:`sink_stats` computes live).  For ``blocks.ℓ.attn.hook_v`` rows
    (``n_kv * d_head`` wide) pass ``reduce=lambda x: x.view(len(x), n_kv, -1).norm(dim=-1)``."""
    per_seq = []
    for _, rows, _, pos in store_sequences(store, hook):
        if len(pos) > 1 and pos[0] == 0:
            v = reduce(rows.float())
            per_seq.append((v[0], v[1:].mean(0), v[1:].amax(0)))
    if not per_seq:
        raise ValueError(f"no sequence of {hook} has both a position-0 row and later rows: no sink to compare")
    return tuple(torch.stack(x).mean(0) for x in zip(*per_seq))


def resid_peak_from_store(store, layers=None) -> dict[str, torch.Tensor]:
    """Residual peak per layer from stored ``blocks.ℓ.hook_resid_post`` rows.

    Returns ``{"resid_norm_sink": [L], "resid_norm_rest_mean": [L], "resid_norm_rest_max": [L],
    "resid_peak": [L], "layers": [L]}`` over the layers present in the store (or ``layers``).
    """
    layers = _store_layers(store, layers, "blocks.L.hook_resid_post", "hook_resid_post")
    res = [store_position_stats(store, f"blocks.{L}.hook_resid_post") for L in layers]
    s, m, x = (torch.stack(t) for t in zip(*res))
    return {"layers": torch.tensor(layers), "resid_norm_sink": s, "resid_norm_rest_mean": m,
            "resid_norm_rest_max": x, "resid_peak": s / x.clamp_min(1e-12)}


def _store_layers(store, layers, what: str, *names: str) -> list[int]:
    """``layers`` (default: all) for which the store holds ``blocks.L.<name>`` for every name; else a
    ``ValueError`` saying the store has no ``what``."""
    found = set.intersection(*({int(m.group(1)) for h in store.hooks
                                if (m := re.fullmatch(rf"blocks\.(\d+)\.{re.escape(n)}", h))} for n in names))
    layers = sorted(found) if layers is None else list(layers)
    missing = [L for L in layers if L not in found]
    if not layers or missing:
        raise ValueError(f"the store has no {what} for layers {missing or 'any'}; it holds {store.hooks}")
    return layers


def _attention_stats(q: torch.Tensor, k: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(sink [H], row entropy [H]) of one sequence from post-rotary ``q [T, H, d]``, ``k [T, n_kv, d]``.

    A = softmax(q k^T * scale) with a causal mask, all heads at once; keys of a KV group are
    shared by ``H / n_kv`` consecutive query heads.
    """
    T, H, _ = q.shape
    n_kv = k.shape[1]
    if H % n_kv:
        raise ValueError(f"{H} query heads are not a multiple of {n_kv} key heads")
    k = k.repeat_interleave(H // n_kv, dim=1)
    scores = torch.einsum("qhd,khd->hqk", q, k) * scale
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    return sink_and_entropy(scores.masked_fill(~causal, float("-inf")).softmax(-1))  # pattern [H, T, T]


def sink_scores_from_store(store, layers=None, scale: float | None = None, max_seqs: int | None = None,
                           sink_threshold: float = SINK_THRESHOLD) -> StoreSinks:
    """Sink score and row entropy per (layer, head) recomputed from stored post-rotary queries and keys.

    The store must hold ``blocks.ℓ.attn.hook_rot_q`` and ``blocks.ℓ.attn.hook_rot_k`` (rows
    ``[n_heads, d_head]`` and ``[n_kv_heads, d_head]``: the queries and keys the attention uses,
    after RoPE) with the position-0 rows kept (``skip_bos=False``).  Each sequence's rows are read
    in position order (:func:`store_sequences`); per sequence the causal pattern
    A = softmax(q kᵀ · scale) is rebuilt for all heads at once and s = mean_{q>=1} A[q, 0] is
    averaged over sequences, as :func:`sink_stats` does live from ``hook_pattern``.

    ``scale`` defaults to 1/sqrt(d_head) (Llama, GPT-2, Pythia); pass the model's own for
    architectures that scale differently (Gemma 3: ``query_pre_attn_scalar ** -0.5``).  Attention
    soft-capping and sliding windows are not modelled.  Memory: one sequence's ``[H, T, T]``
    pattern and its q and k rows.

    Returns a typed :class:`StoreSinks` (kind ``store_sinks``); ``sink_threshold`` is where its summary
    counts a head as a sink.
    """
    layers = _store_layers(store, layers, "blocks.L.attn.hook_rot_q and hook_rot_k", "attn.hook_rot_q",
                           "attn.hook_rot_k")
    per_layer = []
    for L in layers:
        qh, kh = f"blocks.{L}.attn.hook_rot_q", f"blocks.{L}.attn.hook_rot_k"
        qshape, kshape = tuple(store.row_shape(qh)), tuple(store.row_shape(kh))
        if len(qshape) != 2 or len(kshape) != 2 or qshape[1] != kshape[1]:
            raise ValueError(f"{qh} rows {qshape} and {kh} rows {kshape} are not [heads, d_head] with one d_head")
        sc = scale if scale is not None else qshape[1] ** -0.5
        per_seq = []
        pairs = zip(store_sequences(store, qh), store_sequences(store, kh))
        for (sid, q, _, pos), (_, k, _, _) in itertools.islice(pairs, max_seqs):
            if not torch.equal(pos, torch.arange(len(pos))):
                raise ValueError(f"sequence {sid} holds positions {pos[:4].tolist()}...: the "
                                 "store lacks its position-0 row (skip_bos=True?) or a later one, so the "
                                 "sink cannot be scored")
            if len(q) >= 2:
                per_seq.append(_attention_stats(q.float().view(-1, *qshape), k.float().view(-1, *kshape), sc))
        if not per_seq:
            raise ValueError(f"no sequence of length >= 2 in the store for layer {L}")
        per_layer.append(torch.stack([torch.stack(x).mean(0) for x in zip(*per_seq)]))  # [2, H]: sink, ent
    sink, ent = torch.stack(per_layer, 1)
    return StoreSinks(layers=layers, sink_score=sink, row_entropy=ent, n_seqs=len(per_seq),
                      store=str(store.path), model=str(store.manifest.get("model") or ""), scale=scale,
                      sink_threshold=sink_threshold)
