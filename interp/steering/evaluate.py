"""Steering tasks and the equal-KL comparison of steering methods.

Tasks (``data/steering/*.json``, written by ``data/steering/make_steering_data.py``) hold ``build`` examples
``(prompt, preferred, dispreferred)`` for the builders and disjoint held-out ``eval`` prompts.  Two kinds:

* ``generation`` (sentiment): success = mean VADER compound score (Hutto & Gilbert 2014; the
  ``vaderSentiment`` package, lexicon inside) of the greedy continuations, minus the unsteered mean;
* ``logit`` (IOI towards the repeated name): success = change of ``log p(preferred | x) - log p(dispreferred | x)``
  (teacher-forced, summed over the response tokens), averaged over the eval prompts.

Equal cost to fluency: for every method the strength ``s`` is calibrated (doubling then bisection on
``s >= 0``, the one-row case of :func:`interp.decompositions.snmf_features.kl_search`) so that the mean
next-token ``KL(p_unsteered || p_steered)`` after the eval prompts hits each target; at that
strength we measure success, the KL reached, and the perplexity of the steered greedy continuation under the
unsteered model.  Cost per method: the builder's forward/backward passes and seconds (``vector.meta``), plus the
calibration passes.  Time: per (method, target) ~10 batched forwards for the calibration and ``n_new`` forwards
of the eval prompts for the generations.

The report (:meth:`SteeringComparison.report`) puts the finding first (a sentence from the numbers), then
success-versus-KL curves per method, the equal-KL table with the seed paper's claims beside it, example
generations, then method and provenance.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Sequence

import torch

from interp.decompositions.snmf_features import kl_search
from interp.results import Result, register, versions

from .runs import activations_at, generate, last_logprobs, response_logprobs, tokenize
from .vector import SteeringVector

DATA = Path(__file__).resolve().parents[2] / "data" / "steering"
TASKS = ("sentiment", "ioi")
DEFAULT_KL_TARGETS = (0.1, 0.3, 1.0)

# What the seed paper reports (Nguyen et al. 2025, arXiv 2507.18043, abstract), for the comparison table.
PAPER_CLAIMS = {
    "grains": "TruthfulQA MC +13.22 points (34.15 -> 47.37) on Llama-3.1-8B-Instruct; MMHal-Bench hallucination "
              "0.624 -> 0.514 on LLaVA-1.6-7B; SPA-VL win rate +8.11 (7-8B models, other benchmarks)",
    "mean_diff": "the baseline GrAInS reports beating (CAA / ITI-style mean differences)",
}


LABELS = {"mean_diff": "mean difference (CAA)", "grains": "GrAInS", "sae": "SAE latent", "transcoder":
          "transcoder latent", "snmf": "SNMF feature"}
SUCCESS = {"generation": "change in mean VADER sentiment of the continuation",
           "logit": "change in log p(preferred) - log p(dispreferred)"}


def _label(name: str) -> str:
    return LABELS.get(name, name)


@dataclass
class SteeringTask:
    """Prompts with preferred / dispreferred outputs."""

    name: str
    kind: str
    """``generation`` (VADER score of the continuations) or ``logit`` (log-prob difference)."""
    build: list[dict]
    """``{prompt, preferred, dispreferred}`` rows the vectors are built from."""
    eval: list[dict]
    """Held-out ``{prompt, preferred, dispreferred}`` rows (empty responses for generation tasks)."""

    @property
    def eval_prompts(self) -> list[str]:
        return [r["prompt"] for r in self.eval]


def load_task(name: str, n_build: int | None = None, n_eval: int | None = None) -> SteeringTask:
    """The task ``name`` (``sentiment`` | ``ioi``) from ``data/steering/<name>.json``, or a task JSON file
    (``name`` ending in ``.json``)."""
    p = Path(name) if name.endswith(".json") else DATA / f"{name}.json"
    if not p.exists():
        raise ValueError(f"unknown steering task {name!r}; known: {', '.join(TASKS)} (or give a JSON path)")
    d = json.loads(p.read_text())
    build, ev = d["build"][:n_build], d["eval"][:n_eval]
    if not build or not ev:
        raise ValueError(f"task {name!r} needs at least one build and one eval example")
    overlap = {r["prompt"] for r in build} & {r["prompt"] for r in ev}
    if overlap:
        raise ValueError(f"task {name!r}: eval prompts also used to build vectors: {sorted(overlap)[:3]}")
    return SteeringTask(d["task"], d["kind"], build, ev)


def vader_scores(texts: Sequence[str]) -> list[float]:
    """VADER compound sentiment in [-1, 1] per text (vaderSentiment, lexicon shipped in the package)."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer  # a dependency of interp
    an = SentimentIntensityAnalyzer()
    return [an.polarity_scores(t)["compound"] for t in texts]


def response_logprob_diff(model, task: SteeringTask, vector: SteeringVector | None = None, strength: float = 0.0
                          ) -> torch.Tensor:
    """``[N]``: ``log p(preferred | x) - log p(dispreferred | x)`` per eval prompt (teacher forced)."""
    from .build import _split

    seqs = [_split(model, r["prompt"], resp) for r in task.eval for resp in (r["preferred"], r["dispreferred"])]
    lp = torch.stack([lp.sum() for lp in response_logprobs(model, *zip(*seqs), vector, strength)])
    return lp[0::2] - lp[1::2]


@dataclass
class Calibration:
    strength: float
    kl: float
    reached: bool
    passes: int


def calibrate(model, vector: SteeringVector, token_lists, base_lp: torch.Tensor, target: float, s0: float
              ) -> Calibration:
    """The strength ``s >= 0`` whose mean next-token KL over ``token_lists`` is ``target`` (within 10%, at most
    12 bisections): the one-row case of :func:`~interp.decompositions.snmf_features.kl_search`, from ``s0``."""
    def kl_at(s):  # KL(p_base || p_s) per row, averaged over the rows ("batchmean")
        lp = last_logprobs(model, token_lists, vector, float(s))
        return torch.nn.functional.kl_div(lp, base_lp, log_target=True, reduction="batchmean")[None]

    t, start = torch.tensor([float(target)]), torch.tensor([float(s0)])
    s, kl, reached, passes = kl_search(kl_at, t, start, 0.1, 12)
    return Calibration(float(s), float(kl), bool(reached), passes)


@register
@dataclass
class SteeringComparison(Result):
    """Every method on one task at equal next-token KL; JSON round trip, report."""

    kind: ClassVar[str] = "steering_comparison"
    axes: ClassVar[dict[str, str]] = {"methods.*.points.kl": "next-token KL from the unsteered model (nats)",
                                      "methods.*.points.delta": "success change from unsteered",
                                      "methods.*.points.ppl": "continuation perplexity"}

    task: str
    task_kind: str
    """``generation`` or ``logit``."""
    model: str
    model_hash: str
    kl_targets: list[float]
    baseline: dict
    """Unsteered ``success`` (mean score / log-prob diff) and ``ppl`` of its continuations."""
    methods: dict
    """``{method: {hook_name, layer, mode, cost {forward_passes, backward_passes, seconds}, chosen (what was
    picked and why), points: [{target, strength, kl, reached, success, delta, ppl, calibration_passes}]}}``."""
    examples: list[dict]
    """``[{prompt, unsteered, <method>: text}]`` at the middle KL target."""
    config: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def at(self, target: float) -> dict:
        """``{method: point}`` at KL target ``target``."""
        return {m: next(p for p in r["points"] if p["target"] == target) for m, r in self.methods.items()}

    @property
    def middle_target(self) -> float:
        """The KL target the summary and the example generations are at."""
        return self.kl_targets[len(self.kl_targets) // 2]

    def summary(self) -> str:
        """One sentence from the numbers: which method moves the metric most at the middle KL target."""
        t = self.middle_target
        ranked = sorted(self.at(t).items(), key=lambda kv: kv[1]["delta"], reverse=True)
        parts = [f"{_label(m)} {p['delta']:+.3f}"
                 + ("" if p["reached"] else f" (KL reached only {p['kl']:.3g})") for m, p in ranked]
        lead = (f"{_label(ranked[0][0])} moves the metric most"
                if ranked[0][1]["delta"] != ranked[-1][1]["delta"]
                else "no method moves the metric more than another")
        b = self.baseline
        return (f"On {self.task} ({self.model}), at next-token KL {t:g} nats from the unsteered model, "
                f"{lead}: {SUCCESS.get(self.task_kind, 'success')} = " + ", ".join(parts) +
                f" (unsteered {b['success']:+.3f}, continuation perplexity {b['ppl']:.1f}).")

    def _versus_kl(self, y: str):
        """One line per method: ``points.<y>`` against the KL reached (log x); hover shows the strength."""
        import plotly.graph_objects as go

        fig = go.Figure()
        for m, rec in self.methods.items():
            pts = rec["points"]
            fig.add_trace(go.Scatter(x=[p["kl"] for p in pts], y=[p[y] for p in pts], mode="lines+markers",
                                     name=_label(m), text=[f"s={p['strength']:.3g}" for p in pts]))
        fig.update_layout(xaxis_title=self.axes["methods.*.points.kl"],
                          yaxis_title=self.axes[f"methods.*.points.{y}"], xaxis_type="log")
        return fig

    def report(self):
        """The finding, success and perplexity versus KL per method, the equal-KL table with the seed paper's
        claims beside it, example generations, then method and provenance."""
        from interp.reports import Report

        r = Report.of(self, f"Steering comparison: {self.task} on {self.model}")
        r.add_section("Success versus fluency cost")
        r.add_figure(self._versus_kl("delta"), title="Success versus KL, per method",
                     fields=("methods.*.points.kl", "methods.*.points.delta"),
                     caption="Each point: the strength calibrated to one KL target; x is the KL reached, y "
                             f"the {SUCCESS.get(self.task_kind, 'success')} relative to the unsteered model.")
        fig = self._versus_kl("ppl")
        fig.add_hline(y=self.baseline["ppl"], line_dash="dot", annotation_text="unsteered")
        r.add_figure(fig, title="Continuation perplexity versus KL, per method",
                     fields=("methods.*.points.kl", "methods.*.points.ppl"),
                     caption="Perplexity of the steered greedy continuation under the unsteered model.")
        cost = {m: rec["cost"] for m, rec in self.methods.items()}
        rows = [{"KL target": t, "method": _label(m), "KL reached": round(p["kl"], 3),
                 "strength": round(p["strength"], 4), "success change": round(p["delta"], 4),
                 "perplexity": round(p["ppl"], 2), "build passes (fwd/bwd)":
                 f"{cost[m].get('forward_passes')}/{cost[m].get('backward_passes')}",
                 "build seconds": round(cost[m].get("seconds") or 0.0, 2),
                 "paper claims (not this benchmark)": PAPER_CLAIMS.get(m, "")}
                for t in self.kl_targets for m, p in self.at(t).items()]
        r.add_table("Success at equal KL", rows,
                    caption="Small-model replication on our own tasks, not the paper's benchmarks: the "
                            "paper's numbers are for 7-8B models on TruthfulQA, MMHal-Bench and SPA-VL.")
        if self.examples:
            r.add_section("Example generations (middle KL target)")
            r.add_table("Before and after", [{_label(k): v for k, v in e.items()} for e in self.examples],
                        caption="Greedy continuations of evaluation prompts, unsteered and with each "
                                "method's vector at the strength calibrated to next-token KL "
                                f"{self.middle_target:g} nats.")
        r.add_section("Method and provenance",
                      "Strength per method: doubling then bisection on s >= 0 until the mean next-token "
                      "KL(p_unsteered || p_steered) over the held-out prompts is within 10% of each target. "
                      "See docs/methods.md, Steering (GrAInS, mean-difference, feature steering) for the "
                      "formulas and where GrAInS differs from its reference code.")
        r.add_table("Vectors", [{"method": _label(m), "hook": rec["hook_name"], "mode": rec["mode"],
                                 "chosen": rec.get("chosen", "")}
                                for m, rec in self.methods.items()])
        return r


def evaluate_steering(model, vectors: dict[str, SteeringVector], task: SteeringTask,
                      kl_targets: Sequence[float] = DEFAULT_KL_TARGETS, n_new: int = 12, n_examples: int = 4,
                      seed: int = 0) -> SteeringComparison:
    """Calibrate each vector to every KL target on ``task``'s eval prompts and measure success and fluency."""
    from interp.models.load import model_name, weight_hash

    if not vectors:
        raise ValueError("evaluate_steering needs at least one steering vector")
    targets = sorted(float(t) for t in kl_targets)  # kl_search refuses a target <= 0 or not finite
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    toks = tokenize(model, task.eval_prompts)
    base_lp = last_logprobs(model, toks)

    def measure(vec, s):
        conts = generate(model, toks, n_new, vec, s)
        texts = [model.tokenizer.decode(c.tolist()) for c in conts]
        # generation tasks: the VADER score of the continuations
        success = (response_logprob_diff(model, task, vec, s) if task.kind == "logit"
                   else torch.tensor(vader_scores(texts)))
        # perplexity: exp of the continuations' mean NLL per token under the *unsteered* model
        seqs = [torch.cat([p, c]) for p, c in zip(toks, conts)]
        nll = torch.stack([-lp.mean() for lp in response_logprobs(model, seqs, map(len, toks))])
        return {"success": float(success.mean()), "ppl": float(nll.mean().exp())}, texts

    base, base_texts = measure(None, 0.0)
    examples = [{"prompt": p, "unsteered": t} for p, t in list(zip(task.eval_prompts, base_texts))[:n_examples]]
    mid = targets[len(targets) // 2]
    methods = {}
    for name, vec in vectors.items():
        h = activations_at(model, toks, vec.hook_name).norm(dim=-1).mean()
        s0 = 0.05 * float(h) / max(float(vec.vector.norm()), 1e-12)
        pts = []
        for t in targets:
            tc = time.perf_counter()
            cal = calibrate(model, vec, toks, base_lp, t, s0)
            res, texts = measure(vec, cal.strength)
            pts.append({"target": t, "strength": cal.strength, "kl": cal.kl, "reached": cal.reached, **res,
                        "delta": res["success"] - base["success"], "calibration_passes": cal.passes,
                        "seconds": time.perf_counter() - tc})
            if t == mid:
                for e, txt in zip(examples, texts):
                    e[name] = txt
        methods[name] = {"hook_name": vec.hook_name, "layer": vec.layer, "mode": vec.mode, "method": vec.method,
                         "cost": {k: vec.meta.get(k) for k in ("forward_passes", "backward_passes", "seconds")},
                         "chosen": vec.meta.get("chosen", ""), "points": pts}
    from importlib.metadata import version

    meta = {"seconds": time.perf_counter() - t0,  # the model is the result's own field
            "versions": {**versions(), "vaderSentiment": version("vaderSentiment")}}
    cfg = {"kl_targets": targets, "n_new": n_new, "n_eval": len(task.eval), "n_build": len(task.build),
           "seed": seed}
    return SteeringComparison(task=task.name, task_kind=task.kind, model=model_name(model), model_hash=weight_hash(model),
                              kl_targets=targets, baseline=base, methods=methods, examples=examples, config=cfg,
                              meta=meta)
