"""The typed result of ``run_circuit``: the circuit, the evidence for it, and its report.

A :class:`CircuitResult` holds what a reader needs to judge a circuit: its members and how much
of the behaviour they keep (on the discovery prompts and on held-out ones), the curve the search
walked, the attribution scores that ordered it beside real activation patching of every head and
MLP, the edges between members (EAP: gradient x corrupted-minus-clean sender output, one
forward and one backward pass, Syed et al. 2023; summed per receiving component by
:func:`interp.circuits.circuit.component_edges`), IOI head roles, one prompt's attention
patterns, and per-token attributions on example prompts.

Its report leads with one sentence written from those numbers, then the circuit graph and the
faithfulness curve, then the scores beside patching, then the examples, then method and
provenance.  ``to_json`` / ``from_json`` round-trip every field (see :mod:`interp.results`).

Names: components are addressed by hook (``blocks.9.attn.hook_z[2]``, ``blocks.4.hook_mlp_out``)
in data and shown as ``L9H2`` / ``MLP4`` (:func:`interp.models.hooks.component_label`).

Memory: the scores ([L, H] and [L] per method, [L, T] for the residual) and one prompt's attention
patterns (L x H x T x T floats); edges are at most a few hundred records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from interp.attribution.components import AttributionResult, add_score_figures, score_axes
from interp.models.hooks import HEAD_RE, component_label, parse_component
from interp.reports import Report, figures as F
from interp.reports.attention import AttentionPatterns
from interp.results import Result, pearson_or_reason, register, versions

from .circuit import component_edges, node_layer


@dataclass(kw_only=True)
class TaskRun(Result):
    """The fields every result of a run on a task shares (:func:`task_fields` fills them)."""

    task: str
    """``ioi`` or ``greater-than``."""
    model: str
    """Name of the model."""
    n_prompts: int
    """Prompts of the task (a circuit's discovery prompts)."""
    corruption: str | None
    """How the corrupted prompts were made (the task's description)."""
    metric_clean: float
    """Batch-mean metric (e.g. logit difference) on the clean prompts."""
    metric_corrupt: float
    """Batch-mean metric on the corrupted prompts."""
    prompts: dict = field(default_factory=dict)
    """The task's prompts and answers (``Task.to_json``)."""
    position_labels: list[str] = field(default_factory=list)
    """Tokens of the first clean prompt (labels for per-position scores)."""
    config: dict = field(default_factory=dict)
    """The run's settings."""
    versions: dict = field(default_factory=dict)
    """Package versions and machine (``interp.results.versions``)."""


def task_fields(model, task_name: str, task, ref) -> dict:
    """:class:`TaskRun`'s fields for a run on ``task`` (made as ``task_name``); ``ref`` holds the metrics."""
    from interp.models import model_name

    return {"task": task_name, "model": model_name(model), "n_prompts": task.n,
            "corruption": task.meta.get("corruption"), "metric_clean": ref.metric_clean,
            "metric_corrupt": ref.metric_corrupt, "prompts": task.to_json(), "versions": versions(),
            "position_labels": prompt_tokens(model, task)}


def prompt_tokens(model, task) -> list[str]:
    """The first clean prompt's tokens, one string each."""
    return [model.tokenizer.decode([t]) for t in task.clean[0].tolist()]


@register
@dataclass
class CircuitResult(TaskRun):
    """A circuit found on a task, with its faithfulness, the scores behind it and its edges."""

    kind: ClassVar[str] = "circuit"
    axes: ClassVar[dict[str, str]] = score_axes("scores") | score_axes("patching", reference=True) | {
        "components.layer": "layer", "curve.n_components": "components kept in the circuit",
        "curve.faithfulness": "share of clean metric recovered"}

    method: str
    """Attribution method that ordered the search (``patch``, ``atp``, ``relp``, ``ig``)."""
    search: str
    """``greedy`` (pruning by real patching) or ``topk`` (smallest top-k of the ranking)."""
    seed: int
    """Seed that drew the discovery prompts."""
    circuit: dict
    """The search's record: ``components`` (hook addresses with scores), ``n_components``,
    ``n_total``, ``fraction``, ``faithfulness`` (F on the discovery prompts), ``heldout``
    (``F``, ``n``, ``seed``) and the search's own evidence (``denoise_recovered``, ...)."""
    curve: dict
    """The faithfulness curve the search walked: ``n_components`` (circuit sizes, real counts) and
    ``faithfulness`` (F at each size), ``target`` share, ``chosen`` size, ``total``, ``how``."""
    topk: dict
    """The top-k curve of the ranking alone (``curve_sizes``, ``curve_faithfulness``, the smallest
    top-k circuit's ``n_components`` and ``faithfulness``), for comparison with a greedy search."""
    scores: AttributionResult
    """The method's scores (noising: each component corrupted alone in the clean run)."""
    patching: AttributionResult | None = None
    """Activation patching of every head and MLP in the same direction (ground truth beside
    ``scores``); None when skipped."""
    edges: list[dict] = field(default_factory=list)
    """Edges between circuit members (plus ``embed`` and ``logits``): ``source``, ``target`` (short
    names) and ``score`` (EAP estimate of the metric change when the edge is corrupted)."""
    edges_note: str = ""
    """Why edges are missing or how they were aggregated."""
    roles: dict = field(default_factory=dict)
    """IOI head roles of circuit heads (``L9H2`` -> ``name_mover``, ...)."""
    attention: AttentionPatterns | None = None
    """Attention patterns of the first clean prompt (every layer and head)."""
    examples: list[dict] = field(default_factory=list)
    """Per-token IG attributions: ``title``, ``tokens``, ``scores`` per example prompt."""
    timings: dict = field(default_factory=dict)
    """Seconds per step."""

    # ------------------------------------------------------------------ reading
    @property
    def components(self) -> list[str]:
        """Hook addresses of the circuit's members."""
        return [c["name"] for c in self.circuit["components"]]

    def sorted_roles(self) -> list[tuple[str, str]]:
        """``(head, role)`` in layer, then head order."""
        return sorted(self.roles.items(), key=lambda x: parse_component(x[0])[1:])

    def summary(self) -> str:
        c = self.circuit
        text = (f"**{c['n_components']} of {c['n_total']} components ({100 * c['fraction']:.1f}%) keep "
                f"{100 * c['faithfulness']:.1f}% of the clean - corrupted metric** on {self.n_prompts} "
                f"{self.task} prompts")
        ho = c.get("heldout")
        if ho:
            text += f"; {100 * ho['F']:.1f}% on {ho['n']} held-out prompts (seed {ho['seed']})"
        how = ("greedy pruning by real activation patching, tries ordered by " if self.search == "greedy"
               else "the smallest top-k set of the ranking by ")
        text += (f". Found by {how}{self.method} scores on {self.model}; outside the circuit every component "
                 f"takes its {self.config.get('source', 'corrupt')} value (corruption: {self.corruption}).")
        if self.patching is not None:
            r, why = pearson_or_reason(self.scores.per_component("attn_head"), self.patching.per_component("attn_head"),
                                       self.method)
            text += (f" On heads, {self.method} tracks activation patching with Pearson r = {r:.3f}." if why is None
                     else f" On heads, Pearson r with activation patching is undefined ({why}).")
        if self.roles:
            named = ", ".join(f"{h} {role.replace('_', ' ')}" for h, role in self.sorted_roles())
            text += f" Head roles in the circuit: {named}."
        return text

    def graph(self) -> tuple[list[dict], list[dict]]:
        """Nodes (circuit members, with embed and logits when edges reach them) and edges for a figure."""
        # shown as importance: the metric lost when the component or edge alone is corrupted (-noising score)
        nodes = [{"id": n, "label": f"{n} ({self.roles[n].replace('_', ' ')})" if n in self.roles else n,
                  "layer": node_layer(c["name"], 0), "score": None if c["score"] is None else -c["score"],
                  "kind": "head" if HEAD_RE.match(c["name"]) else "mlp"}
                 for c, n in zip(self.circuit["components"], map(component_label, self.components))]
        ends = {n for e in self.edges for n in (e["source"], e["target"])}
        n_layers = self.scores.scores["attn_head"].shape[0] if "attn_head" in self.scores.scores else 0
        nodes += [{"id": n, "label": n, "layer": node_layer(n, n_layers), "kind": n} for n in ("embed", "logits")
                  if n in ends]
        edges = [{"source": e["source"], "target": e["target"], "weight": -e["score"]} for e in self.edges]
        return nodes, edges

    def report(self):
        r = Report.of(self, f"{self.task} circuit on {self.model} ({self.method}, {self.search})",
                         method=self.method, timings=self.timings)
        nodes, edges = self.graph()
        cap = (f"The {len(self.components)} circuit members in columns by layer (left = early). Node colour: the "
               f"metric lost when that component alone is corrupted, by {self.method} (-score, noising). ")
        cap += (f"Edges: the {len(edges)} strongest EAP edges between members (embeddings and logits included); "
                "width follows the metric lost when that edge alone is corrupted; red edges carry the behaviour, "
                "blue ones work against it. " + self.edges_note
                if edges else f"No edges drawn: {self.edges_note or 'edge scores were not computed.'}")
        r.add_graph("The circuit", nodes, edges, caption=cap, fields=("components.layer", "components"))
        cv = self.curve
        r.add_figure(F.faithfulness_curve(cv["n_components"], cv["faithfulness"], target=cv.get("target"),
                                          chosen=cv.get("chosen"), total=cv.get("total"),
                                          title="Faithfulness against circuit size", caption=cv.get("caption", "")),
                     fields=("curve.n_components", "curve.faithfulness"))
        if self.roles:
            r.add_table("Head roles", [{"head": h, "role": role} for h, role in self.sorted_roles()],
                        caption="Roles of the circuit's heads from attention-pattern and copy-score tests "
                                "(Wang et al. 2022).")
        r.add_section("Scores beside activation patching",
                      "Each method's score of every head and MLP (noising: the component alone corrupted in the "
                      "clean run), as a share of the clean - corrupted metric.")
        ref = "patching" if self.patching is not None and self.method != "patch" else None
        results = {"patching": self.patching, self.method: self.scores} if ref else {self.method: self.scores}
        add_score_figures(r, results, reference=ref, paths={"patching": "patching", self.method: "scores"})
        if self.attention is not None:
            r.add_attention("Attention patterns (first prompt)", self.attention)
        if self.examples:
            r.add_section("Example prompts", "Per-token IG attributions (input embeddings, corrupted prompt as "
                                             "baseline): red tokens push the metric up, blue down.")
            for ex in self.examples:
                r.add_token_attributions(ex["title"], ex["tokens"], ex["scores"])
        return r


def circuit_edges(model, task, components: list[str], top: int | None = None) -> tuple[list[dict], str]:
    """EAP scores of the edges between ``components`` (plus embed and logits), strongest first
    (:func:`interp.circuits.circuit.component_edges`).  Returns ``(edges, note)``; a model the edge
    graph does not support gives no edges and the reason."""
    from interp.attribution.edges import edge_attribution

    try:
        es = edge_attribution(model, task, method="eap")
    except (ValueError, NotImplementedError) as e:
        return [], f"edge attribution is not available for this model ({e})"
    edges = component_edges(es, members={component_label(c) for c in components})
    top = 3 * len(components) if top is None else top
    note = (f"EAP on the discovery prompts ({es.seconds:.1f} s); {len(edges)} edges among members, "
            f"the {min(top, len(edges))} strongest kept.")
    return edges[:top], note
