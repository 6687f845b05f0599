"""Typed results of dictionary work: an evaluation of an SAE (kind ``sae``) or a transcoder (kind
``transcoder``), and a training run of either (kind ``dictionary_training``).

Each result holds the numbers (:mod:`interp.dictionaries.metrics` defines them), writes a summary
sentence from them and a report with its own layout: an SAE report leads with reconstruction
(explained variance at L0) and the latent-density histogram; a transcoder report leads with what
replacing the MLP costs the model (CE recovered); a training report with the curves.  Design
choice: the results keep paths and configs, never weights (those are SAELens folders).
Memory: the per-latent density vector (``d_sae`` floats) and the training history.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import ClassVar

import torch

from interp.results import Result, register

from .metrics import RowMetrics, SplicedMetrics

NUMBER_NAMES = {
    "n_rows": "rows evaluated", "l0": "L0 (active latents per row)", "fvu": "fraction of variance unexplained",
    "explained_variance": "explained variance", "dead_fraction": "dead latent fraction",
    "cosine": "mean cosine (target, reconstruction)", "mse": "mean squared error per row",
    "n_tokens": "spliced: tokens predicted", "ce_orig": "spliced: CE original (nats)",
    "ce_dict": "spliced: CE with the dictionary (nats)", "ce_zero": "spliced: CE zero-ablated (nats)",
    "ce_recovered": "spliced: CE recovered", "kl_dict": "spliced: KL with the dictionary (nats)",
    "kl_zero": "spliced: KL zero-ablated (nats)", "kl_score": "spliced: KL score",
    "hook_in": "spliced: hook read", "hook_out": "spliced: hook replaced"}
"""Readable names of the RowMetrics / SplicedMetrics fields in the report's table."""


def _what(c: dict) -> str:
    """``topk SAE on <hook> (n latents)``, or (``hook_out`` set) ``relu transcoder <in> -> <out> (...)``."""
    hooks = f"transcoder {c['hook_in']} -> {c['hook_out']}" if c.get("hook_out") else f"SAE on {c['hook_in']}"
    return f"{c['arch']} {hooks} ({c['d_sae']} latents)"


def _pct(x: float) -> str:
    """``x`` as a percentage; "n/a" for a non-finite value."""
    return f"{100 * x:.1f}%" if math.isfinite(x) else "n/a"


@register
@dataclass
class DictionaryEvaluation(Result):
    """An SAE evaluated on store rows and, optionally, spliced into its model."""

    kind: ClassVar[str] = "sae"
    axes: ClassVar[dict[str, str]] = {
        "rows.density": "log10 firing density", "rows.density#0": "latents",
        "spliced": "forward pass", "spliced.ce_orig": "next-token cross-entropy (nats)"}
    noun: ClassVar[str] = "SAE"

    sae_path: str
    """The dictionary's folder (SAELens format), "" when evaluated from memory."""
    sae_config: dict
    """Its :class:`~interp.dictionaries.SAEConfig` as a dict (arch, d_in, d_sae, hook_in, hook_out, ...)."""
    store: str
    """The activation store the rows came from."""
    model: str
    """The model the store was cached from (and the dictionary spliced into)."""
    rows: RowMetrics
    """L0, FVU, explained variance, dead fraction, cosine, MSE and per-latent density."""
    spliced: SplicedMetrics | None = None
    """CE / KL with the dictionary spliced into the model; None when not measured."""
    config: dict = field(default_factory=dict)
    """How it was measured: ``n_tokens`` rows, ``n`` sequences."""
    meta: dict = field(default_factory=dict)
    """Seconds and versions."""

    def _spliced_sentence(self) -> str:
        s = self.spliced
        if s is None:
            return "The spliced CE was not measured."
        if abs(s.ce_zero - s.ce_orig) < 1e-3:  # a ratio over a gap this small (nats/token) is noise, not a score
            return (f"Spliced into {self.model} over {s.n_tokens:,} tokens, CE goes {s.ce_orig:.4f} -> {s.ce_dict:.4f} "
                    f"nats, KL {s.kl_dict:.4f} nats; zero-ablating the activation changes CE by only "
                    f"{s.ce_zero - s.ce_orig:+.4f} nats, so CE recovered ({_pct(s.ce_recovered)}) means nothing here.")
        return (f"Spliced into {self.model} over {s.n_tokens:,} tokens, it recovers {_pct(s.ce_recovered)} of the "
                f"cross-entropy lost to zero-ablation (CE {s.ce_orig:.3f} -> {s.ce_dict:.3f} nats; zero-ablated "
                f"{s.ce_zero:.3f}), KL {s.kl_dict:.4f} nats (KL score {_pct(s.kl_score)}).")

    def summary(self) -> str:
        r = self.rows
        return (f"The {_what(self.sae_config)} explains {_pct(r.explained_variance)} of the variance of "
                f"{r.n_rows:,} rows at L0 {r.l0:.1f}, with {_pct(r.dead_fraction)} of latents dead. "
                + self._spliced_sentence())

    def _add_density(self, r) -> None:
        d = self.rows.density.double()
        live = d[d > 0].log10()
        lo = math.floor(4 * float(live.min())) / 4 if live.numel() else -1.0
        n_bins = max(1, round(-lo / 0.25))
        counts = torch.histc(live, bins=n_bins, min=lo, max=0.0).long().tolist()  # zeros when nothing fired
        centres = [f"{lo + 0.25 * (i + 0.5):.2f}" for i in range(n_bins)]
        r.add_bars("Latent firing density", ["dead"] + centres, {"": [int((d == 0).sum())] + counts},
                   x_title=self.axes["rows.density"], y_title=self.axes["rows.density#0"],
                   caption=f"How often each of the {d.numel()} latents fires on the {self.rows.n_rows:,} rows: log10 of "
                           f"the fraction, bins of 0.25; the first bar counts the latents that never fired "
                           f"({_pct(self.rows.dead_fraction)}).", fields=("rows.density", "rows.density#0"))
        r.add_table("Densest latents", [{"latent": i, "density": round(float(d[i]), 5)}
                                        for i in d.argsort(descending=True)[:10].tolist()],
                    caption="Latents that fire on the largest fraction of rows (candidates for dense, "
                            "uninterpretable latents).")

    def _add_spliced(self, r) -> None:
        s = self.spliced
        if s is None:
            return
        from interp.reports import figures as F

        ce = [s.ce_orig, s.ce_dict, s.ce_zero]
        fig = F.grouped_bars("Next-token loss with the dictionary spliced in",
                             ["original", f"with {self.noun}", "zero-ablated"], {"": ce},
                             self.axes["spliced"], self.axes["spliced.ce_orig"])
        fig.fig.update_traces(text=[f"{v:.4f}" for v in ce], textposition="outside")
        lo, hi = min(ce), max(ce)  # the differences are what matter: zoom the axis onto them
        pad = max(hi - lo, 1e-3 * max(abs(hi), 1.0))
        fig.fig.update_yaxes(range=[lo - pad, hi + pad])
        r.add_figure(fig, fields=("spliced", "spliced.ce_orig"),
                     caption=f"Cross-entropy of {self.model} on {s.n_tokens:,} next tokens: unchanged, with "
                             f"{s.hook_out} replaced by the {self.noun}'s output, and with it set to zero (the axis "
                             f"is zoomed onto the three values; it does not start at 0). CE recovered = "
                             f"{_pct(s.ce_recovered)}.")

    layout: ClassVar[tuple] = (("Reconstruction and sparsity", (_add_density, _add_spliced)),)
    """The report's leading sections and the functions that add their figures."""

    def report(self):
        from interp.reports import Report

        r = Report.of(self, f"{self.noun[0].upper()}{self.noun[1:]} evaluation: {_what(self.sae_config)}")
        for title, parts in self.layout:
            r.add_section(title)
            for add in parts:
                add(self, r)
        numbers = {**asdict(self.rows), **(asdict(self.spliced) if self.spliced is not None else {})}
        rows = [{"quantity": NUMBER_NAMES.get(k, k), "value": v} for k, v in numbers.items()
                if k != "density"]
        r.add_table("All numbers", rows, caption="Row metrics on the store rows, then the spliced forward pass "
                                                 "(definitions in Method).")
        r.add_section("Method",
                      "Row metrics (SAELens definitions): L0 = mean active latents per row; FVU = pooled squared "
                      "error / pooled variance of the target; dead = latents that never fire on these rows. "
                      "Spliced metrics: a forward pass with the target hook replaced (BOS position kept) through a "
                      "scoped hook; CE recovered = (CE_zero - CE_dict) / (CE_zero - CE_orig). "
                      f"Dictionary: {self.sae_path or '(in memory)'}; store: {self.store}.")
        r.add_table("Dictionary configuration", self.sae_config)
        return r


@register
@dataclass
class TranscoderEvaluation(DictionaryEvaluation):
    """A transcoder (MLP input -> MLP output) evaluated as :class:`DictionaryEvaluation`; the report
    leads with what replacing the MLP by it costs the model."""

    kind: ClassVar[str] = "transcoder"
    noun: ClassVar[str] = "transcoder"
    layout: ClassVar[tuple] = (("Replacing the MLP", (DictionaryEvaluation._add_spliced,)),
                               ("Prediction of the MLP output and sparsity",
                                (DictionaryEvaluation._add_density,)))

    def summary(self) -> str:
        r = self.rows
        return (f"The {_what(self.sae_config)} predicts the MLP output with {_pct(r.explained_variance)} of "
                f"its variance explained ({r.n_rows:,} rows) at L0 {r.l0:.1f}, {_pct(r.dead_fraction)} of "
                "latents dead. "
                + self._spliced_sentence().replace("Spliced into", "Replacing the MLP of"))


@register
@dataclass
class DictionaryTraining(Result):
    """One training run of an SAE or transcoder: what :func:`interp.dictionaries.train_sae` returns, the
    trained dictionary in ``sae`` (not serialised: save it with :func:`~interp.dictionaries.save_sae`)."""

    kind: ClassVar[str] = "dictionary_training"
    axes: ClassVar[dict[str, str]] = {
        "history.step": "optimiser step", "history.fvu": "fraction of variance unexplained",
        "history.l0": "active latents per row (L0)", "history.dead_fraction": "dead latent fraction"}

    sae_config: dict
    train_config: dict
    steps: int
    """Optimiser steps taken so far (over every resumed run)."""
    total_steps: int
    """Steps the configuration asks for."""
    tokens: int
    """Rows trained on so far."""
    seconds: float
    """Wall time of this (possibly resumed) run."""
    tokens_per_s: float
    fvu: float
    """FVU of the last logged steps (training batches)."""
    l0: float
    dead_fraction: float
    """Latents silent for ``dead_after_tokens`` rows at the end."""
    history: list[dict] = field(default_factory=list)
    """Logged steps: ``{step, tokens, lr, fvu, l0, dead_fraction, <loss terms>}``."""
    saved_to: str = ""
    """Where the trained dictionary was saved (SAELens format), "" if not saved."""
    meta: dict = field(default_factory=dict)
    complete: bool = False
    """Whether ``steps`` reached ``total_steps``."""
    sae = None
    """The trained :class:`~interp.dictionaries.SparseCoder` (eval mode) that :func:`train_sae` returns; not a field
    (not serialised), None when read back from JSON."""

    def summary(self) -> str:
        state = "trained" if self.complete else f"stopped at step {self.steps} of {self.total_steps} (rerun to resume)"
        return (f"The {_what(self.sae_config)} {state}: {self.steps} steps on "
                f"{self.tokens:,} rows ending at FVU {self.fvu:.4f} (training batches), L0 {self.l0:.1f}, "
                f"{_pct(self.dead_fraction)} of latents dead; {self.tokens_per_s:,.0f} rows/s.")

    def report(self):
        from interp.reports import Report

        c = self.sae_config
        r = Report.of(self, f"Dictionary training: {c.get('arch')} on {c.get('hook_in')}", config=self.train_config,
                      model=c.get("model_name"))
        if self.history:
            steps = [h["step"] for h in self.history]
            r.add_section("Training curves")
            for key, title, log in (("fvu", "Reconstruction (FVU)", True), ("l0", "Sparsity (L0)", False),
                                    ("dead_fraction", "Dead latents", False)):
                r.add_line(title, steps, {key: [h[key] for h in self.history]}, x_title=self.axes["history.step"],
                           y_title=self.axes[f"history.{key}"], log_y=log, fields=("history.step", f"history.{key}"),
                           caption=f"{self.axes[f'history.{key}'].capitalize()} per logged step: the mean over the "
                                   "training batches since the previous log" + (" (log scale)." if log else "."))
        r.add_section("Method",
                      "Adam with linear warm-up and decay, decoder rows kept at unit norm, b_dec initialised from "
                      "the data (interp.dictionaries.train). Logged values are means over the training batches "
                      f"since the previous log. Saved to {self.saved_to or '(not saved)'}.")
        r.add_table("Dictionary configuration", self.sae_config)
        return r
