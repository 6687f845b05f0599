"""Feature dashboards: what makes a latent fire and what it writes, as one standalone HTML page.

For each chosen latent i of a dictionary trained on ``hook_in`` rows of an activation store:

1. **Top-activating contexts.**  The store's rows are streamed once (``store.stream``), encoded, and
   each chosen latent keeps its ``n_examples`` largest (f_i, row) pairs, each batch merged into them
   (ties go to the earlier row).  For each, the rows of the same sequence within ``window`` tokens
   before (and ``after`` after) are read back (``store.rows``), encoded again, and shown as tokens
   coloured by f_i, so the maximally activating token stands out (``store.tokens`` and
   ``store.seq_pos`` give the text and its position).
2. **Activation histogram** of the non-zero f_i over the streamed rows, with the firing frequency:
   exact counts in bins of width 2**e from 0 up to the bin of the max (17 to 32 bins; e is the least
   with max < 32 * 2**e).  When the running max grows, e grows and old bins merge 2**shift to one,
   which is exact: floor(v / (2w)) = floor(floor(v / w) / 2).
3. **Logit effect**: the decoder direction through the unembedding, ``W_dec[i] @ W_U``
   (Bricken et al. 2023's "logit weights"; it ignores the final norm's per-token scale), top
   and bottom tokens.

The result is a typed :class:`FeatureDashboard` (kind ``sae_dashboard``); its report is the page
(plotly.js inlined, opens offline).

Memory: one ``[batch, d_sae]`` code at a time; per chosen latent ``n_examples`` (activation, row) pairs
and 32 bin counts, whatever ``n_rows``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Sequence

import torch

from interp.config import takes_config
from interp.results import Result, encode, register, versions

from .base import SparseCoder

HIST_BINS = 32
"""Most bins of a histogram (a power of two, so the bin widths 2**e are exact)."""


@dataclass
class DashboardConfig:
    """How much :func:`feature_dashboard` reads and shows."""

    n_rows: int = 100_000
    """Store rows streamed to find the examples."""
    n_examples: int = 8
    """Top-activating contexts per latent."""
    window: int = 16
    """Tokens of context before the activating token."""
    after: int = 4
    """Tokens of context after it."""
    n_logits: int = 10
    """Promoted and suppressed tokens listed per latent."""


@dataclass
class FeatureSummary:
    """What the dashboard found about one latent."""

    feature: int
    """Latent index."""
    frequency: float
    """Fraction of streamed rows on which it fires."""
    top_rows: list
    """Store row indices of the top-activating examples, best first."""
    top_values: list
    """Their activations."""
    top_logits: list
    """(token, logit weight) pairs with the largest ``W_dec[i] @ W_U``."""
    bottom_logits: list
    """(token, logit weight) pairs with the smallest."""
    contexts: list = field(default_factory=list)
    """Per top row ``{row, value, tokens, acts, at}``: the tokens around it and this latent's activation on each."""
    hist_edges: list = field(default_factory=list)
    """Bin edges of the histogram of its non-zero activations."""
    hist_counts: list = field(default_factory=list)
    """Rows per bin."""


@register
@dataclass
class FeatureDashboard(Result):
    """Top contexts, activation histogram and logit effect of chosen latents (:func:`feature_dashboard`)."""

    kind: ClassVar[str] = "sae_dashboard"
    axes: ClassVar[dict[str, str]] = {"features.hist_edges": "activation", "features.hist_counts": "rows"}

    sae_config: dict
    n_rows: int
    """Rows streamed to find the examples."""
    features: list[FeatureSummary]
    path: str = ""
    """The HTML page written ("" if none)."""
    meta: dict = field(default_factory=dict)

    def summary(self) -> str:
        c = self.sae_config
        best = max(self.features, key=lambda f: f.frequency)
        s = (f"{len(self.features)} latents of the {c.get('arch')} dictionary on {c.get('hook_in')} over {self.n_rows:,} "
             f"rows: the most frequent, {best.feature}, fires on {best.frequency:.2%} of rows")
        if best.top_logits:
            s += " and promotes " + ", ".join(repr(t) for t, _ in best.top_logits[:4])
        return s + "."

    def report(self):
        from interp.reports import Report

        c = self.sae_config
        r = Report.of(self, f"Feature dashboard: {c.get('arch')} dictionary on {c.get('hook_in')}", config=c,
                      rows_scanned=self.n_rows, model=c.get("model_name"))
        for f in self.features:
            r.add_section(f"Feature {f.feature}", f"fires on {f.frequency:.3%} of rows; max activation "
                                                  f"{max(f.top_values, default=0.0):.3g}")
            for x in f.contexts:
                r.add_token_attributions(f"Feature {f.feature}: row {x['row']} (activation {x['value']:.3g})",
                                         x["tokens"], x["acts"], caption=f"max-activating token: {x['tokens'][x['at']]!r} "
                                                                         f"at context index {x['at']}")
            if f.hist_counts:
                centres = [f"{(a + b) / 2:.3g}" for a, b in zip(f.hist_edges[:-1], f.hist_edges[1:])]
                r.add_bars(f"Feature {f.feature}: non-zero activations", centres, {"": f.hist_counts},
                           x_title=self.axes["features.hist_edges"], y_title=self.axes["features.hist_counts"],
                           fields=("features.hist_edges", "features.hist_counts"),
                           caption=f"{sum(f.hist_counts)} non-zero activations of feature {f.feature} (of {self.n_rows} "
                                   f"rows), {len(f.hist_counts)} bins.")
            if f.top_logits:
                r.add_table(f"Feature {f.feature}: logit effect (W_dec[{f.feature}] @ W_U)",
                            [{"promoted": a, "logit": round(b, 4), "suppressed": cc, "logit ": round(d, 4)}
                             for (a, b), (cc, d) in zip(f.top_logits, f.bottom_logits)])
        return r


@torch.no_grad()
def scan_features(sae: SparseCoder, store, features: Sequence[int] | None, n_rows: int, n_top: int,
                  batch_size: int = 4096):
    """Stream ``n_rows`` rows once: ``(features, top activations [F, <=n_top] best first, their rows,
    histograms [(edges, counts)], all firing counts, rows)``.  Ties go to the earlier row."""
    c = sae.cfg
    counts = torch.zeros(c.d_sae, dtype=torch.long, device=sae.device)
    feats = None if features is None else torch.as_tensor(list(features), dtype=torch.long, device=sae.device)
    seen = 0
    for x in store.stream(c.hook_in, batch_size, device=sae.device, dtype=torch.float32):
        acts = sae.encode(x[: n_rows - seen]).acts
        counts += (acts > 0).sum(0)
        if feats is None:  # the most frequent latents of the first batch
            feats = counts.topk(min(10, c.d_sae)).indices
        a = acts[:, feats].T.double()  # [F, b]; float64 holds each float32 value times any 2**-e exactly
        if seen == 0:
            vals, rows, mx = a[:, :0], feats[:, None][:, :0], a.new_zeros(len(feats))
            hist = torch.zeros(len(feats), HIST_BINS, dtype=torch.long, device=a.device)
        vals, order = torch.cat([vals, a], 1).sort(dim=1, descending=True, stable=True)
        rows = torch.cat([rows, torch.arange(seen, seen + a.shape[1], device=a.device).expand_as(a)], 1)
        vals, rows = vals[:, :n_top], rows.gather(1, order[:, :n_top])
        e0, mx = _bin_exponent(mx), torch.maximum(mx, a.max(1).values)
        shift = (_bin_exponent(mx) - e0).clamp(0, 62)[:, None]  # wider bins: merge 2**shift old bins into one
        hist = torch.zeros_like(hist).scatter_add_(1, torch.arange(HIST_BINS, device=a.device) >> shift, hist)
        bins = (a * torch.exp2(-_bin_exponent(mx).double())[:, None]).long()  # floor: activations are >= 0
        hist.scatter_add_(1, bins, (a > 0).long())
        seen += a.shape[1]
        if seen >= n_rows:
            break
    if seen == 0:
        raise ValueError("the store yielded no rows")
    hists = []
    for m, h, w in zip(mx.tolist(), hist.tolist(), torch.exp2(_bin_exponent(mx).double()).tolist()):
        n = int(m / w) + 1 if m > 0 else 0  # bins up to the one holding the max
        hists.append(([w * i for i in range(n + 1)] if n else [], h[:n]))
    return feats.tolist(), vals.cpu(), rows.cpu(), hists, counts.cpu(), seen


def _bin_exponent(mx: torch.Tensor) -> torch.Tensor:
    """The least e with ``mx < HIST_BINS * 2**e`` (exact: frexp, and HIST_BINS is a power of two)."""
    return torch.frexp(mx).exponent - HIST_BINS.bit_length() + 1


def _context(sae, store, tok, row: int, value: float, feature: int, config: DashboardConfig) -> dict:
    """Rows of ``row``'s sequence around it: ``{row, value, tokens, acts (of feature), at (row's index)}``."""
    lo, hi = max(0, row - config.window), min(store.n_rows, row + config.after + 1)
    sp = store.seq_pos[lo:hi]
    keep = sp[:, 0] == sp[row - lo, 0]  # the rows of row's sequence
    idx = torch.arange(lo, hi)[keep].tolist()
    acts = sae.encode(store.rows(sae.cfg.hook_in, idx, device=sae.device)).acts[:, feature].cpu()
    toks = [_tok_str(tok, t) for t in store.tokens[lo:hi][keep].tolist()]
    return {"row": row, "value": value, "tokens": toks, "acts": acts.tolist(), "at": idx.index(row)}


def _tok_str(tokenizer, t: int) -> str:
    return f"<{t}>" if tokenizer is None else tokenizer.decode([t])


@torch.no_grad()
@takes_config(DashboardConfig)
def feature_dashboard(sae: SparseCoder, store, out: str | Path, features: Sequence[int] | None = None,
                      model=None, *, config: DashboardConfig) -> FeatureDashboard:
    """Write a dashboard of ``features`` (default: the 10 most frequent latents) to ``out`` (HTML).

    ``model`` gives the tokenizer and W_U (the logit-effect section is left out without it).
    ``config``, or its fields as keywords (not both): how many rows, examples and tokens.
    """
    c = sae.cfg
    if features is not None:
        bad = [f for f in features if not 0 <= int(f) < c.d_sae]
        if bad:
            raise ValueError(f"feature indices {bad} are outside 0..{c.d_sae - 1}")
    feats, top_vals, top_rows, hists, counts, seen = scan_features(sae, store, features, config.n_rows,
                                                                   config.n_examples)
    tok = getattr(model, "tokenizer", None)
    logit_w = None
    if model is not None:
        W_U = model.W_U.to(sae.device, torch.float32)
        if W_U.shape[0] != c.out_dim:
            raise ValueError(f"model d_model={W_U.shape[0]} does not match the dictionary's output width {c.out_dim}")
        logit_w = sae.W_dec[feats] @ W_U  # [F, vocab]
    summaries = []
    for j, f in enumerate(feats):
        fired = top_vals[j] > 0
        rows, vals = top_rows[j][fired].tolist(), top_vals[j][fired].tolist()
        contexts = [_context(sae, store, tok, r, v, f, config) for r, v in zip(rows, vals)]
        top_l = bot_l = []
        if logit_w is not None:
            lw = logit_w[j]
            top_l = [[_tok_str(tok, int(t)), float(lw[t])] for t in lw.topk(config.n_logits).indices]
            bot_l = [[_tok_str(tok, int(t)), float(lw[t])] for t in (-lw).topk(config.n_logits).indices]
        summaries.append(FeatureSummary(f, float(counts[f]) / seen, rows, vals, top_l, bot_l,
                                        contexts, *hists[j]))
    res = FeatureDashboard(sae_config=encode(c), n_rows=seen, features=summaries, meta={"versions": versions()})
    res.path = str(res.report().write(out))
    return res
