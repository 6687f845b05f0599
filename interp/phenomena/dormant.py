"""Active vs dormant heads per input domain, confirmed causally by batched head ablations.

Guo et al. 2024 ("Active-Dormant Attention Heads", arXiv 2410.13835; docs/methods.md, Active-dormant heads): a head is
*dormant* on a domain when it puts (almost) all its attention on the first token ⟨s⟩, whose
value is drained, so it writes ≈ 0 and ablating it barely changes the loss; it is *active*
otherwise.  The same head can be dormant on one domain and active on another (Llama-2-7B L16H25:
dormant on Wikipedia, active on GitHub) — a *switching* head.

Algorithm (:func:`active_dormant`):

1. per domain, :func:`interp.phenomena.sinks.sink_stats` (one hooked pass) gives the sink
   score s_d[ℓ,h], value drain and residual peak;
2. the heads to ablate: every head (``heads="all"``) or the *candidates*: heads whose sink
   score reaches ``sink_threshold`` on some domain, most domain-dependent first (largest
   max_d s_d − min_d s_d), at most ``max_heads``;
3. ablation, batched: the domain's ``N`` sequences are repeated once per head of a chunk of
   ``heads_per_pass`` heads; a hook on each involved layer rewrites, for copy j only, head h_j —
   ``bos``: A[.., h, :, :] = 0, A[.., h, :, 0] = 1 (Guo's MoveAttentionToBOSHook, on
   ``blocks.ℓ.attn.hook_pattern``) or ``zero``: z[.., h, :] = 0 (``blocks.ℓ.attn.hook_z``) — so
   one forward pass measures ``heads_per_pass`` ablations; Δloss = ablated − clean next-token loss
   on that domain (nats/token);
4. statistics: Δloss is computed per sequence (ablated − clean on the same sequence, so the
   sequences' own loss spread cancels), and a paired bootstrap over sequences (``n_boot``
   resamples of the N sequences with replacement; percentile interval at ``ci_level``) gives a
   confidence interval [lo, hi] of the domain's mean Δloss;
5. labels per (head, domain), called only where the interval excludes the threshold τ =
   ``loss_threshold``: ``dormant`` if s_d >= ``sink_threshold`` and −τ < lo <= hi < τ (the
   ablation confidently changes the loss by less than τ); ``active`` if lo > τ or hi < −τ (the
   ablation confidently changes it by more than τ); ``undetermined`` otherwise (the interval
   straddles ±τ, or a head that does not sink writes too little to matter).  A head is
   *switching* if it is ``dormant`` on a domain a and ``active`` with lo > τ (its ablation hurts)
   on a domain b.  With few sequences the percentile bootstrap is optimistic (it under-covers for
   N < ~20); more sequences narrow the interval and make it honest.

Column entropy (Guo et al.'s entropy detector, ``LLM/src/entropy.py`` of
``GuoTianYu2000/Active-Dormant-Attention``): for key position k of a causal ``[T, T]`` pattern,
the column A[:, k] (attention that key k receives) is normalised over the queries to p_q =
A[q, k] / sum_q A[q, k], its entropy H_k = -sum_q p_q log p_q is divided by log(T - k) (the
entropy of a uniform spread over the T - k queries q >= k that can see key k; the last key,
seen by one query, scores 0), and the head's score is max_k H_k / log(T - k) per sequence,
averaged over sequences (:func:`interp.phenomena.sinks.column_entropy`, ``SinkStats.column_entropy``).  A sink
head scores 1 (key 0 is attended evenly by every query), a head that attends to a different
key from every query scores 0.  Guo's detector flags a head as dormant when its mean
normalised row entropy is below τ_r and its column score above τ_c (free thresholds); here
the score is reported next to the ablation labels.

:func:`active_dormant` returns a typed :class:`DormantResult` (kind ``sinks``, what ``interp sinks``
writes); its report leads with the per-domain ablation effect of every head, then the attention
viewer of the strongest sink heads, then each domain's sink statistics.

Memory: ``heads_per_pass * N`` sequences per forward (one layer's ``[kN, H, T, T]`` pattern at a
time).  Compute: per domain, 1 + ceil(n_heads_ablated / heads_per_pass) forward passes of
``heads_per_pass * N`` sequences and one :func:`sink_stats` pass, plus one pass of one sequence for
the viewer.  Bootstrap: ``n_heads * n_boot * N`` floats.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from interp.models import scoped_hooks
from interp.models.hooks import head_label
from interp.reports import AttentionPatterns, Report
from interp.results import Result, check_fields, register

from .domains import Domain, domain_tokens
from .sinks import (SinkStats, add_sink_figures, attention_view, check_tokens, next_token_loss, provenance,
                    sink_stats, strongest_heads)

ABLATIONS = ("bos", "zero")
VIEW_HEADS, VIEW_TOKENS = 3, 32
"""The report's attention viewer shows the layers of the 3 strongest sink heads on the first 32 tokens."""


@dataclass(frozen=True)
class DormantConfig:
    """Thresholds, ablation kind and budget of the active/dormant analysis."""

    sink_threshold: float = 0.8
    """A head is a dormant candidate on a domain when its sink score reaches this."""
    loss_threshold: float = 0.005
    """|Δloss| (nats/token) at or below this = the ablation "barely changes" the loss."""
    ablation: str = "bos"
    """``bos``: move the head's attention to ⟨s⟩ (Guo's MoveAttentionToBOS); ``zero``: zero its output z."""
    heads: str = "candidates"
    """``candidates`` (heads reaching ``sink_threshold`` on some domain) or ``all``."""
    max_heads: int = 24
    """Most heads ablated when ``heads="candidates"``."""
    heads_per_pass: int = 4
    """Ablations batched into one forward pass."""
    seq_len: int = 64
    """Tokens per sequence (BOS included) when tokenising domains."""
    n_seqs: int = 8
    """Sequences per domain."""
    batch_size: int = 8
    """Sequences per forward pass of the sink statistics."""
    n_boot: int = 2000
    """Bootstrap resamples of the sequences for the Δloss confidence interval."""
    ci_level: float = 0.95
    """Confidence level of the Δloss interval."""
    seed: int = 0
    """Seed of the bootstrap resampling."""

    def __post_init__(self):
        check_fields(self, {"ablation": ABLATIONS, "heads": ("candidates", "all")},
                     {**dict.fromkeys(("max_heads", "heads_per_pass", "seq_len", "n_seqs", "batch_size",
                                       "n_boot"), 1), "loss_threshold": 0})
        if not 0 <= self.sink_threshold <= 1:
            raise ValueError(f"sink_threshold must be in [0, 1], got {self.sink_threshold}")
        if not 0 < self.ci_level < 1:
            raise ValueError(f"ci_level must be in (0, 1), got {self.ci_level}")


@register
@dataclass
class DormantResult(Result):
    """Per-domain sink statistics, head ablations and active/dormant labels (``interp sinks``)."""

    kind: ClassVar[str] = "sinks"
    axes: ClassVar[dict[str, str]] = {**{f"stats[domain].{k}": v for k, v in SinkStats.axes.items()},
                                      "heads": "head", "domains": "domain"}

    domains: list[str]
    """Domain names, in order."""
    stats: dict[str, SinkStats]
    """Sink statistics per domain."""
    heads: list[tuple[int, int]]
    """Ablated heads (layer, head)."""
    clean_loss: dict[str, float]
    """Mean next-token loss per domain, unablated (nats/token)."""
    delta_loss: dict[str, list[float]]
    """Per domain, mean over sequences of Δloss of each ablated head (aligned with ``heads``)."""
    delta_ci: dict[str, list[tuple[float, float]]]
    """Per domain, the paired-bootstrap confidence interval (lo, hi) of each head's mean Δloss."""
    labels: dict[str, list[str]]
    """Per domain, ``dormant``/``active``/``undetermined`` of each ablated head (see the module docstring)."""
    switching: list[dict]
    """Heads dormant on one domain and confirmed active on another, with their scores and intervals."""
    config: DormantConfig = field(default_factory=DormantConfig)
    """Settings used."""
    attention: AttentionPatterns | None = None
    """Attention patterns of the first domain's first sequence (its first tokens) at the layers of
    the strongest sink heads, for the viewer."""
    meta: dict = field(default_factory=dict)
    """Provenance: ``model``, ``weight_hash``, ``device``, ``seconds``, ``versions``."""

    def table(self) -> list[dict]:
        """One row per ablated head and domain: sink score, column entropy, Δloss, its interval, label."""
        ci = f"{self.config.ci_level:.0%} interval"
        return [{"head": head_label(L, h), "domain": d,
                 "sink score": round(float(self.stats[d].sink_score[L, h]), 4),
                 "column entropy": round(float(self.stats[d].column_entropy[L, h]), 4),
                 "Δloss (nats/token)": round(self.delta_loss[d][i], 5),
                 ci: "[{:.4f}, {:.4f}]".format(*self.delta_ci[d][i]), "label": self.labels[d][i]}
                for i, (L, h) in enumerate(self.heads) for d in self.domains]

    def summary(self) -> str:
        c = self.config
        L, H = self.stats[self.domains[0]].sink_score.shape
        per = {d: len(self.stats[d].sink_heads(c.sink_threshold)) for d in self.domains}
        any_sink = torch.stack([self.stats[d].sink_score for d in self.domains]).amax(0) >= c.sink_threshold
        text = (f"**{int(any_sink.sum())} of {L * H} heads are attention sinks** (>= {c.sink_threshold:g} of their "
                f"attention on the first token) on at least one of {len(self.domains)} domains ("
                + ", ".join(f"{d} {n}" for d, n in per.items()) + ")")
        model = self.meta.get("model")
        text += f" of {model}." if model else "."
        if not self.heads:
            return text + " No head was ablated."
        n_lab = {k: sum(any(self.labels[d][i] == k for d in self.domains) for i in range(len(self.heads)))
                 for k in ("dormant", "active")}
        text += (f" Of {len(self.heads)} heads ablated ({c.ablation}), {n_lab['dormant']} are dormant on some domain "
                 f"(the {c.ci_level:.0%} interval of Δloss lies within ±{c.loss_threshold:g} nats/token) and "
                 f"{n_lab['active']} active on some domain (interval outside ±{c.loss_threshold:g}).")
        if self.switching:
            text += f" **{len(self.switching)} switch**: " + "; ".join(
                f"{s['head']} dormant on {'/'.join(s['dormant_on'])}, active on {'/'.join(s['active_on'])} "
                f"(Δloss {max(s['delta_loss'][d] for d in s['active_on']):+.4f})" for s in self.switching[:3]) + "."
        else:
            text += " No head is dormant on one domain and active on another at these thresholds."
        return text

    def report(self):
        c = self.config
        model = self.meta.get("model", "")
        r = Report.of(self, f"Attention sinks and active-dormant heads: {model}".rstrip(": "))
        if self.heads:
            labels = [head_label(L, h) for L, h in self.heads]
            r.add_heatmap("Loss change when each head is ablated, per domain",
                          [self.delta_loss[d] for d in self.domains], labels, self.domains, x_title="head",
                          y_title="domain", fields=("heads", "domains"),
                          caption=f"Mean over sequences of ablated - clean next-token loss (nats/token), ablation "
                                  f"'{c.ablation}'; near 0: the head is dormant there.")
            r.add_table("Ablated heads: sink score, Δloss and label per domain", self.table())
        if self.attention is not None:
            top = self.stats[self.domains[0]].sink_heads(0.0)[0]
            r.add_attention(f"Attention patterns of the strongest sink heads ({self.domains[0]}, first sequence)",
                            self.attention, layer=top[0], head=top[1])
        for d in self.domains:
            r.add_section(f"Domain: {d}", f"clean loss {self.clean_loss[d]:.4f} nats/token; "
                                          + self.stats[d].summary())
            add_sink_figures(r, self.stats[d], d, "stats[domain].")
        r.add_section("Method", (
            f"Sink score: mean attention of queries q >= 1 to the first token (Guo et al. 2024). Each head in the table "
            f"is ablated ('{c.ablation}') on every domain's {c.n_seqs} sequences of {c.seq_len} tokens; Δloss is the "
            f"mean over sequences of the paired per-sequence difference (ablated - clean) and [lo, hi] its "
            f"{c.ci_level:.0%} paired-bootstrap interval ({c.n_boot} resamples). Dormant: sink score >= "
            f"{c.sink_threshold:g} and the whole interval inside ±{c.loss_threshold:g}; active: the interval outside "
            f"±{c.loss_threshold:g}; undetermined otherwise (more sequences narrow the intervals)."))
        return r


@torch.no_grad()
def ablation_loss_matrix(model, tokens: torch.Tensor, heads: list[tuple[int, int]], ablation: str = "bos",
                         heads_per_pass: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sequence next-token losses: (clean ``[N]``, ablated ``[len(heads), N]``) on ``tokens [N, T]``.

    Each forward pass holds ``heads_per_pass`` copies of the batch; copy j has head ``heads[j]``
    ablated (``bos``: attention moved to position 0; ``zero``: its z zeroed).
    """
    tokens = check_tokens(tokens)
    if ablation not in ABLATIONS:
        raise ValueError(f"unknown ablation {ablation!r}; choose from {ABLATIONS}")
    n_layers, n_heads = int(model.cfg.n_layers), int(model.cfg.n_heads)
    for L, h in heads:
        if not (0 <= L < n_layers and 0 <= h < n_heads):
            raise ValueError(f"head ({L}, {h}) does not exist: the model has {n_layers} layers x {n_heads} heads")
    device = next(model.parameters()).device
    tokens = tokens.to(device)
    N = tokens.shape[0]
    clean = next_token_loss(model(tokens), tokens).cpu()
    hook_name, head_dim = {"bos": ("attn.hook_pattern", 1), "zero": ("attn.hook_z", 2)}[ablation]
    out: list[torch.Tensor] = [torch.zeros(0, N)]
    for start in range(0, len(heads), heads_per_pass):
        chunk = heads[start:start + heads_per_pass]
        k = len(chunk)
        masks: dict[int, torch.Tensor] = {}
        for j, (L, h) in enumerate(chunk):
            masks.setdefault(L, torch.zeros(k, n_heads, dtype=torch.bool, device=device))[j, h] = True

        def ablate(mask):
            def fn(x, hook):  # bos: pattern [kN, H, Q, K]; zero: z [kN, T, H, d_head]
                x5 = x.view(k, N, *x.shape[1:])
                new = torch.zeros_like(x5)
                new[..., 0] = 1 if ablation == "bos" else 0  # bos: all attention on position 0
                shape = [k, 1] + [n_heads if d == head_dim else 1 for d in range(1, x.ndim)]
                return torch.where(mask.view(shape), new, x5).view_as(x)
            return fn

        batch = tokens.repeat(k, 1)
        with scoped_hooks(model, fwd=[(f"blocks.{L}.{hook_name}", ablate(m)) for L, m in masks.items()]):
            out.append(next_token_loss(model(batch), batch).view(k, N).cpu())
    return clean, torch.cat(out)


def paired_bootstrap_ci(delta: torch.Tensor, n_boot: int = 2000, level: float = 0.95,
                        seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Percentile bootstrap interval (lo ``[K]``, hi ``[K]``) of the mean over sequences of ``delta [K, N]``.

    ``delta[k, i]`` is a paired difference (ablated − clean loss of sequence i); the same
    resampled sequence indices serve every row.  N = 1 gives the degenerate interval [x, x].
    """
    if delta.ndim != 2 or delta.shape[1] < 1:
        raise ValueError(f"delta must be [heads, sequences] with >= 1 sequence, got {tuple(delta.shape)}")
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, delta.shape[1], (n_boot, delta.shape[1]), generator=g)
    means = delta.double()[:, idx].mean(-1)  # [K, n_boot]
    a = (1 - level) / 2
    q = torch.quantile(means, torch.tensor([a, 1 - a], dtype=means.dtype), dim=1)
    return q[0].float(), q[1].float()


def label_head(sink: float, lo: float, hi: float, sink_threshold: float, loss_threshold: float) -> str:
    """``dormant`` / ``active`` / ``undetermined`` from the sink score and the Δloss interval (module docstring, step 5)."""
    if lo > loss_threshold or hi < -loss_threshold:
        return "active"
    if sink >= sink_threshold and -loss_threshold < lo and hi < loss_threshold:
        return "dormant"
    return "undetermined"


def candidate_heads(stats: dict[str, SinkStats], sink_threshold: float, max_heads: int) -> list[tuple[int, int]]:
    """Heads reaching ``sink_threshold`` on some domain, most domain-dependent first."""
    s = torch.stack([st.sink_score for st in stats.values()])  # [D, L, H]
    spread = (s.amax(0) - s.amin(0)).where(s.amax(0) >= sink_threshold, -1.0)  # -1: a sink on no domain
    return [(L, h) for L, h, _ in strongest_heads(spread, 0.0)[:max_heads]]


def active_dormant(model, domains: list[Domain] | dict[str, torch.Tensor], config: DormantConfig | None = None) -> DormantResult:
    """Sink statistics per domain, batched head ablations, active/dormant labels and switching heads.

    ``domains``: :class:`Domain` objects (tokenised with ``seq_len``/``n_seqs``) or a dict
    ``name -> tokens [N, T]`` whose position 0 is the sink token.
    """
    cfg = config or DormantConfig()
    t0 = time.time()
    if isinstance(domains, dict):
        toks = {k: check_tokens(v) for k, v in domains.items()}
    else:
        toks = {d.name: domain_tokens(model, d, cfg.seq_len, cfg.n_seqs) for d in domains}
    if len(toks) < 1:
        raise ValueError("give at least one domain")
    stats = {name: sink_stats(model, t, cfg.batch_size) for name, t in toks.items()}
    for st in stats.values():
        st.sink_threshold = cfg.sink_threshold
    if cfg.heads == "all":
        heads = [(L, h) for L in range(int(model.cfg.n_layers)) for h in range(int(model.cfg.n_heads))]
    else:
        heads = candidate_heads(stats, cfg.sink_threshold, cfg.max_heads)
    clean, delta, ci, labels = {}, {}, {}, {}
    tau = cfg.loss_threshold
    for name, t in toks.items():
        c, ab = ablation_loss_matrix(model, t, heads, cfg.ablation, cfg.heads_per_pass)
        clean[name] = float(c.mean())
        d = ab - c  # [heads, N] paired per-sequence differences
        lo, hi = paired_bootstrap_ci(d, cfg.n_boot, cfg.ci_level, cfg.seed) if heads else (torch.zeros(0),) * 2
        delta[name] = d.mean(1).tolist()
        ci[name] = list(zip(lo.tolist(), hi.tolist()))
        s = stats[name].sink_score
        labels[name] = [label_head(float(s[L, h]), a, b, cfg.sink_threshold, tau)
                        for (L, h), (a, b) in zip(heads, ci[name])]
    switching = []
    names = list(toks)
    for i, (L, h) in enumerate(heads):
        dorm = [d for d in names if labels[d][i] == "dormant"]
        act = [d for d in names if labels[d][i] == "active" and ci[d][i][0] > tau]
        if dorm and act:
            switching.append({"head": head_label(L, h), "dormant_on": dorm, "active_on": act,
                              "sink_score": {d: float(stats[d].sink_score[L, h]) for d in names},
                              "delta_loss": {d: delta[d][i] for d in names},
                              "delta_ci": {d: list(ci[d][i]) for d in names}})
    top = stats[names[0]].sink_heads(0.0)[:VIEW_HEADS]
    view = attention_view(model, toks[names[0]][0, :VIEW_TOKENS], [L for L, _, _ in top])
    return DormantResult(domains=names, stats=stats, heads=heads, clean_loss=clean, delta_loss=delta, delta_ci=ci,
                         labels=labels, switching=switching, config=cfg, attention=view,
                         meta=provenance(model, time.time() - t0))
