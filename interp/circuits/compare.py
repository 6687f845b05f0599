"""Every attribution method on the same prompts, against activation patching (RelP paper, Table 1).

For each component type (residual stream per layer and position, attention outputs per layer and
position -- the paper's "attn" column --, attention heads, MLP outputs per layer and position)
:func:`compare_methods` runs activation patching (the ground truth), AtP, RelP (``relp``: the
paper's default LN + Identity + Half rules; ``relp-cp-lrp`` adds the AH-rule, CP-LRP on attention)
and IG (``ig``: each component hook interpolated corrupt -> clean in the corrupted run, its
per-hook sum = patching of that hook; ``ig-embed``, opt-in: the EAP-IG node form along the input
embeddings), then the Pearson r of each method's scores with patching (``None`` with the reason
where r is undefined, a constant or non-finite score vector) and the wall time of each method in
this run.  It returns a :class:`CompareResult`, whose report leads with which method agrees best.

The published numbers (Jafari et al. 2025, Table 1, IOI on GPT-2 small) are kept beside ours as
context, not an oracle: they are for another model.  The paper's demo corrupts IOI by swapping the
two names at S2 (``corruption="s2"``, the like-for-like setting); our default ABC corruption (three
fresh names) changes every name position, where every gradient-at-corrupt method correlates less.

Cost: patching dominates: L*T (resid) + L*T (attn) + L*H (heads) + L*T (MLPs) patched forward
passes of B*T tokens; each gradient method is a few forward and backward passes.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field, replace
from typing import ClassVar

from interp.attribution.components import TYPE_NAMES, AttributionResult, add_score_figures, score_axes
from interp.config import takes_config
from interp.reports import Report
from interp.results import pearson_or_reason, register
from interp.tasks import make_task

from .result import TaskRun, task_fields

PAPER = {
    "ioi": {"source": "RelP paper (arXiv 2508.21258) Table 1, IOI, GPT-2 small (attn = attention outputs per layer and position); "
                      "the paper's demo corrupts by the S2 -> IO name swap (our --corruption s2)",
            "atp": {"resid": 0.753, "attn": 0.979, "mlp": 0.195},
            "relp": {"resid": 0.968, "attn": 0.962, "mlp": 0.992}},
}
COMPONENTS = ("resid", "attn", "attn_head", "mlp")
METHOD_SPECS = {
    "patch": ("patch", {}),
    "atp": ("atp", {}),
    "relp": ("relp", {"rules": "default"}),
    "relp-cp-lrp": ("relp", {"rules": "default+cp-lrp"}),
    "ig": ("ig", {"path": "hooks"}),
    "ig-embed": ("ig", {"path": "embeddings"}),
}


@register
@dataclass
class CompareResult(TaskRun):
    """Attribution methods against activation patching on one task: scores, Pearson r, wall time."""

    kind: ClassVar[str] = "compare"
    axes: ClassVar[dict[str, str]] = {
        **score_axes("scores.*"), **score_axes("scores.patch", reference=True),
        "pearson#1": "component type", "pearson": "Pearson r with activation patching",
        "seconds#0": "method", "seconds": "wall time (s)"}

    seed: int
    """Seed that drew the prompts (every method scored the same ones)."""
    scores: dict[str, AttributionResult]
    """Per method (``patch`` first, the ground truth): its scores of every component type."""
    pearson: dict[str, dict[str, float | None]]
    """``pearson[method][component type]``: r with activation patching over every score of that
    type (per position where scored per position); None where r is undefined."""
    pearson_undefined: dict[str, dict[str, str]] = field(default_factory=dict)
    """Why r is undefined (``pearson_undefined[method][type]``; ``interp.results.pearson_or_reason``)."""
    seconds: dict[str, float] = field(default_factory=dict)
    """Wall time of each method in this run (model passes included)."""
    paper: dict = field(default_factory=dict)
    """Published r for this task (``source``, then ``{method: {type: r}}``); empty when none."""
    created: str = ""
    """UTC time the run finished."""

    def summary(self) -> str:
        head = f"On {self.task} with {self.model}, {self.n_prompts} prompts corrupted by {self.corruption}"
        undefined = "r is undefined for " + "; ".join(f"{m} on {TYPE_NAMES.get(c, c)} ({why})" for m, d in
                                                      self.pearson_undefined.items()
                                                      for c, why in d.items()) + "."
        defined = {m: [v for v in d.values() if v is not None] for m, d in self.pearson.items()}
        means = {m: sum(v) / len(v) for m, v in defined.items() if v}  # mean r over component types
        ranked = sorted(means, key=means.get, reverse=True)  # stable: ties keep the methods' order
        if not ranked:
            return head + ", no method's Pearson r with activation patching is defined" + (
                ": " + undefined if self.pearson_undefined else " (only patching ran).")
        best = ranked[0]
        per = ", ".join(f"{v:.3f} on {TYPE_NAMES.get(c, c)}" for c, v in self.pearson[best].items() if v is not None)
        text = f"{head}: **{best} agrees best with activation patching**, r = {per}."
        if len(ranked) > 1:
            text += " Mean r over component types: " + ", ".join(f"{m} {means[m]:.2f}" for m in ranked) + "."
        if self.pearson_undefined:
            text += " " + undefined
        fast = min((m for m in self.seconds if m != "patch"), key=self.seconds.get, default=None)
        if fast and "patch" in self.seconds and self.seconds[fast] > 0:
            text += (f" Patching took {self.seconds['patch']:.2f} s, {fast} {self.seconds[fast]:.2f} s "
                     f"({self.seconds['patch'] / self.seconds[fast]:.0f}x faster).")
        return text

    def report(self):
        r = Report.of(self, f"Attribution methods vs activation patching: {self.task} on {self.model}",
                         created=self.created)
        types = list(dict.fromkeys(c for d in self.pearson.values() for c in d))
        if self.pearson:
            r.add_bars("Pearson r with activation patching, by method", [TYPE_NAMES.get(c, c) for c in types],
                       {m: [d.get(c) for c in types] for m, d in self.pearson.items()},  # None: a gap
                       x_title="component type", y_title="Pearson r with activation patching",
                       fields=("pearson#1", "pearson"),
                       caption="Each method's Pearson r with activation patching over every component of a type "
                               "(per position for the residual stream, attention and MLP outputs); 1 is perfect "
                               "agreement. A missing bar is an undefined r (see the summary).")
        if self.paper:
            r.add_table("Published values", [{"method": m, **{TYPE_NAMES.get(c, c): v for c, v in d.items()}}
                                             for m, d in self.paper.items() if m != "source"],
                        caption=str(self.paper.get("source", "")) + ". Another model: for scale, not a test.")
        r.add_section("Scores beside activation patching",
                      "Each method's score of every component as a share of the clean - corrupted metric, then "
                      "each method against patching (x) with its Pearson r.")
        paths = {m: "scores.patch" if m == "patch" else "scores.*" for m in self.scores}
        add_score_figures(r, self.scores, reference="patch", paths=paths)
        if self.seconds:
            r.add_bars("Wall time per method", list(self.seconds), {"": list(self.seconds.values())},
                       x_title="method", y_title="wall time (s)", fields=("seconds#0", "seconds"),
                       caption="Seconds of wall time per method, measured in this run on "
                               f"{self.versions.get('machine', 'this machine')} with {self.versions.get('threads')} "
                               "threads.")
        r.add_section("Method and provenance",
                      f"{self.n_prompts} {self.task} prompts (seed {self.seed}), corruption {self.corruption}; "
                      f"metric {self.metric_clean:.4g} clean, {self.metric_corrupt:.4g} corrupted. RelP rules: relp = "
                      "the paper's default (LN, Identity, Half); relp-cp-lrp adds the AH-rule (CP-LRP). "
                      "See docs/methods.md for each method.")
        return r




@dataclass(frozen=True)
class CompareConfig:
    """The settings of :func:`compare_methods`."""

    n: int = 8
    """Prompts of the task."""
    seed: int = 0
    """Seed of the prompts drawn."""
    methods: tuple[str, ...] | None = None
    """Of :data:`METHOD_SPECS` (``None``: all but ``ig-embed``); activation patching always runs."""
    per_position: tuple[str, ...] = ("resid", "attn", "mlp")
    """Component types scored per position."""
    corruption: str | None = None
    """The task's corruption (``interp.tasks.CORRUPTIONS``; ``None``: the task's default)."""
    components: tuple[str, ...] = COMPONENTS
    """The component types compared (``attn`` is the paper's attention column: each layer's attention
    output per position; ``attn_head`` our per-head one)."""


@takes_config(CompareConfig)
def compare_methods(model, task_name: str, *, progress: bool = False, config: CompareConfig) -> CompareResult:
    """Run the methods on one task; Pearson r vs patching per component type; timings."""
    from interp.attribution import component_types

    from .pipeline import run_method

    methods = tuple(m for m in METHOD_SPECS if m != "ig-embed") if config.methods is None else config.methods
    bad = [m for m in methods if m not in METHOD_SPECS]
    if bad:
        raise ValueError(f"unknown method(s) {bad}; choose from {sorted(METHOD_SPECS)}")
    methods = ("patch",) + tuple(m for m in methods if m != "patch")
    comps = tuple(t.name for t in component_types(config.components))  # unknown: a ValueError naming them
    task = make_task(task_name, model, n=config.n, seed=config.seed, corruption=config.corruption)
    per_position = tuple(c for c in config.per_position if c in comps)
    results = {name: replace(run_method(model, task, METHOD_SPECS[name][0], comps, per_position,
                                        progress=progress, **METHOD_SPECS[name][1]), method=name)
               for name in methods}
    ref = results["patch"]
    corr, undefined = {}, {}
    for name, r in list(results.items())[1:]:
        corr[name] = {}
        for c in comps:
            corr[name][c], why = pearson_or_reason(r.scores[c], ref.scores[c], name)
            if why is not None:
                undefined.setdefault(name, {})[c] = why
                warnings.warn(f"compare: Pearson r of {name} vs patching on {c!r} is undefined ({why}); "
                              f"reported as None", stacklevel=2)
    return CompareResult(
        **task_fields(model, task_name, task, ref), seed=config.seed, scores=results, pearson=corr,
        pearson_undefined=undefined, seconds={name: r.seconds for name, r in results.items()},
        paper=PAPER.get(task_name, {}),
        config={"methods": list(methods), "components": list(comps), "per_position": list(per_position)},
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
