"""Edge scores and edge circuits on a task: what ``interp edges`` runs, as a typed result.

:func:`run_edges` builds the task, scores every edge of the residual-stream graph with one method
(EAP, EAP-IG, clean-corrupted or EAP-IG-activations; :mod:`interp.attribution.edges`, Hanna,
Pezzelle & Belinkov 2024), optionally checks the top K edges against real edge patching
(:mod:`interp.attribution.edge_patching`: Pearson r of score vs effect), sums |score| per (sender
stage, receiver stage) block (:func:`interp.attribution.edge_stages.stage_matrix`), and, given circuit
sizes, measures the faithfulness of the top-n (and greedy) edge circuits of this and other methods
in batched circuit runs (:func:`interp.circuits.faithfulness.faithfulness_curve`).  It returns an
:class:`EdgeResult` (kind ``edges``), whose report leads with the finding: the smallest measured
circuit that keeps ``target`` of the metric, drawn as a graph (edge width by score), the curve
against its real axis (edges kept), the stage matrix, then the top edges.

Cost: the scoring method (EAP: 2 forwards + 1 backward of B*T tokens; EAP-IG: m backward passes;
EAP-IG-activations: (2L + 1) m), ``check`` edges patched (``check / (max_tokens / B*T)`` forwards),
and per circuit one B*T-token copy of a batched forward.  Memory: the method's (edges.py), plus the
result's top edges, stage matrix ``(2L+1)^2`` and curves (a few kB).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import ClassVar

from interp.config import takes_config
from interp.attribution.edge_patching import edge_patching
from interp.attribution.edge_stages import stage_matrix
from interp.attribution.edges import METHODS, SHARES, edge_attribution
from interp.reports import Report, figures as F
from interp.results import check_fields, encode, pearson_or_reason, register
from interp.tasks import make_task

from .circuit import as_edge_mask, component_edges, node_layer, top_n_circuit
from .faithfulness import SELECTIONS, faithfulness_curve
from .result import TaskRun, task_fields


@dataclass(frozen=True)
class EdgeRunConfig:
    """Settings of :func:`run_edges` (also its keywords, one to one)."""

    method: str = "eap-ig"
    """Edge scoring method (``interp.attribution.edges.METHODS``)."""
    steps: int = 5
    """Interpolation steps of EAP-IG / EAP-IG-activations (the paper's m = 5)."""
    share: str = "own"
    """EAP-IG-activations: score a sender with its own group's gradients (``own``) or their mean (``all``)."""
    n: int = 8
    """Prompts."""
    seed: int = 0
    """Seed of the prompts."""
    corruption: str | None = None
    """The task's corruption (None: its default)."""
    top: int = 50
    """Top edges by |score| kept in the result."""
    check: int = 0
    """Also edge-patch the top ``check`` edges for real (ground truth, Pearson r)."""
    sizes: tuple[int, ...] = ()
    """Circuit sizes (edges requested) whose faithfulness is measured; sizes above the number of edges
    mean all edges; empty: no circuits."""
    compare: tuple[str, ...] = ()
    """Other methods whose circuits are measured beside ``method``'s."""
    selection: str = "top-n"
    """``top-n``, ``greedy`` (grown from the logits) or ``both``."""
    prune: bool = True
    """Drop edges not on a path embeddings -> logits."""
    target: float = 0.8
    """F_norm the reported circuit must keep (the smallest measured size that does)."""
    max_tokens: int = 4096
    """Tokens per forward/backward pass."""

    def __post_init__(self):
        bad = [m for m in (self.method, *self.compare) if m not in METHODS]
        if bad:
            raise ValueError(f"unknown edge methods {bad}; choose from {METHODS}")
        check_fields(self, {"share": SHARES, "selection": SELECTIONS}, {"n": 1, "top": 1, "check": 0, "steps": 1})
        if any(s < 0 for s in self.sizes):
            raise ValueError(f"circuit sizes must be >= 0, got {self.sizes}")
        if self.compare and not self.sizes:
            raise ValueError("compare needs circuit sizes")


@register
@dataclass
class EdgeResult(TaskRun):
    """Edge scores of one method on a task, their check against edge patching, and edge circuits."""

    kind: ClassVar[str] = "edges"
    axes: ClassVar[dict[str, str]] = {
        "graph.layer": "layer",
        "curve.curves.n_edges": "edges kept", "curve.curves.f_norm": "F_norm",
        "stages.columns": "receiver stage", "stages.rows": "sender stage",
        "top_edges.patch": "edge patching effect", "top_edges.score": "edge score"}

    method: str
    """``eap``, ``eap-ig``, ``clean-corrupted`` or ``eap-ig-activations``."""
    n_edges: int
    """Edges of the graph (sender writes before receiver reads)."""
    n_layers: int
    top_edges: list[dict]
    """The ``top`` edges by |score| (``EdgeScores.top``): ``edge``, ``sender``, ``receiver``, ``score``
    (estimated metric change when the edge alone carries the corrupted value), their hooks,
    ``normalized`` (score / (clean - corrupt)) and, when checked, ``patch`` (the real effect)."""
    stages: dict
    """``z`` [sender stage][receiver stage]: sum of |score|; ``rows`` / ``columns`` their names."""
    check: dict | None = None
    """Edge patching of the top edges: ``n_edges``, ``pearson`` (None with ``pearson_undefined``); its seconds
    are ``timings["edge_patching"]``."""
    curve: dict | None = None
    """Faithfulness of edge circuits: ``sizes`` (edges requested), ``curves`` {method: {n_requested, n_edges
    (after pruning), n_nodes, metric, f_norm}}, ``identity`` (full / empty circuit checks), ``target``."""
    circuit: dict | None = None
    """The smallest measured top-n circuit of ``method`` with F_norm >= target: ``n_requested``, ``n_edges``
    (after pruning), ``f_norm``, ``edges`` (``u->v`` names); None without a curve or when none reaches it."""
    graph: list[dict] = field(default_factory=list)
    """The drawn graph: the circuit's edges (else the top edges') summed per component
    (:func:`interp.circuits.circuit.component_edges`: ``source``, ``target``, ``score``)."""
    timings: dict = field(default_factory=dict)

    def summary(self) -> str:
        c = self.circuit
        text = (f"**{c['n_edges']} of {self.n_edges} edges ({100 * c['n_edges'] / self.n_edges:.2f}%) keep "
                f"{100 * c['f_norm']:.1f}% of the clean - corrupted metric** ({self.method} top "
                f"{c['n_requested']}, pruned)" if c else f"**{self.method}** scored {self.n_edges} edges")
        text += (f" on {self.n_prompts} {self.task} prompts of {self.model} (metric clean "
                 f"{self.metric_clean:.3f}, corrupted {self.metric_corrupt:.3f}).")
        if self.curve and not c:
            best = max(f for c in self.curve["curves"].values() for f in c["f_norm"])
            text += f" No measured {self.method} circuit keeps {self.curve['target']:.0%} (best F_norm {best:.3f})."
        if self.check:
            ck = self.check
            r = (f"Pearson r = {ck['pearson']:.3f}" if ck["pearson"] is not None
                 else f"Pearson r undefined ({ck['pearson_undefined']})")
            text += f" Against real edge patching of the top {ck['n_edges']} edges: {r}."
        return text

    def report(self):
        import plotly.graph_objects as go

        r = Report.of(self, f"Edge attribution ({self.method}): {self.task} on {self.model}",
                         timings=self.timings)
        nodes = {n: {"id": n, "label": n, "layer": node_layer(n, self.n_layers)}
                 for e in self.graph for n in (e["source"], e["target"])}
        what = (f"The {self.method} circuit (top {self.circuit['n_requested']}, pruned to {self.circuit['n_edges']} "
                f"edges) that keeps {100 * self.circuit['f_norm']:.1f}% of the metric" if self.circuit
                else f"The top {len(self.top_edges)} edges by |score|")
        r.add_graph("The edge circuit" if self.circuit else "Top edges", list(nodes.values()),
                    [{"source": e["source"], "target": e["target"], "weight": -e["score"]} for e in self.graph],
                    caption=f"{what}, summed per component (a head's q/k/v inputs into the head), in columns by "
                            "layer (embeddings left, logits right). Edge width: |score|; red edges carry the behaviour "
                            "(corrupting them lowers the metric), blue ones work against it.",
                    fields=("graph.layer", "graph"))
        if self.curve:
            fig, rows = go.Figure(), []
            for mth, c in self.curve["curves"].items():
                fig.add_trace(go.Scatter(x=[max(n, 1) for n in c["n_edges"]], y=c["f_norm"], mode="lines+markers",
                                         name=mth))
                rows += [{"method": mth, "n requested": q, "edges (pruned)": n, "nodes": k, "metric": m, "F_norm": f}
                         for q, n, k, m, f in zip(c["n_requested"], c["n_edges"], c["n_nodes"], c["metric"],
                                                  c["f_norm"])]
            fig.add_hline(y=self.curve["target"], line_dash="dash", line_color="#888",
                          annotation_text=f"target {self.curve['target']:.0%}")
            fig.update_layout(xaxis_type="log", xaxis_title="edges kept", yaxis_title="F_norm")
            ident = self.curve.get("identity") or {}
            r.add_figure(fig, title="Faithfulness of top-n edge circuits",
                         fields=("curve.curves.n_edges", "curve.curves.f_norm"),
                         caption="F_norm = (m(C) - m(corrupt)) / (m(clean) - m(corrupt)) of each method's circuit "
                                 "against the edges it keeps (after pruning dead ends; log scale); every edge outside "
                                 "C carries the corrupted run; dashed: the target. Checks: full circuit - clean metric "
                                 f"= {ident.get('full_minus_clean', float('nan')):.2e}, empty circuit - corrupted "
                                 f"metric = {ident.get('empty_minus_corrupt', float('nan')):.2e}.")
            r.add_table("Faithfulness per circuit", rows)
        r.add_heatmap("|score| summed by sender stage x receiver stage", self.stages["z"], self.stages["columns"],
                      self.stages["rows"], x_title="receiver stage", y_title="sender stage",
                      fields=("stages.columns", "stages.rows"),
                      caption="Sum of |score| over the edges from a sender stage (row) to a receiver stage (column).")
        if self.check:
            pts = [e for e in self.top_edges if "patch" in e]
            r.add_figure(F.method_vs_patching(
                f"{self.method} against edge patching", [e["patch"] for e in pts], [e["score"] for e in pts],
                self.method, [e["edge"] for e in pts], x_title="edge patching effect", y_title="edge score",
                caption=f"Each point one of the top {len(pts)} edges: the metric change of patching it for "
                        f"real (x) and its {self.method} score (y); dashed: the least-squares fit."),
                fields=("top_edges.patch", "top_edges.score"))
        cols = {"edge": "edge", "score": "score", "normalized": "share of the gap", "patch": "edge patching effect",
                "sender_hook": "sender hook", "receiver_hook": "receiver hook"}
        r.add_table("Top edges", [{cols[k]: e[k] for k in cols if k in e} for e in self.top_edges],
                    caption=f"The {len(self.top_edges)} edges with the largest |{self.method} score| (estimated metric "
                            "change when the edge alone carries the corrupted value); share of the gap = score / "
                            "(clean - corrupted metric); edge patching effect: the real change, where checked. "
                            "Receivers .q/.k/.v are a head's query/key/value input (L3KV1: grouped key/value head 1), "
                            "MLPn an MLP input.")
        return r


@takes_config(EdgeRunConfig)
def run_edges(model, task_name: str, config: EdgeRunConfig | None = None, *, progress: bool = False) -> EdgeResult:
    """Edge scores, their check and edge circuits on ``task_name`` (see module doc): an :class:`EdgeResult`.

    Settings: an :class:`EdgeRunConfig` or its fields as keywords (``method="eap", sizes=(10, 100)``), not both.
    """
    cfg = config
    task = make_task(task_name, model, n=cfg.n, seed=cfg.seed, corruption=cfg.corruption)
    kw = {"steps": cfg.steps, "max_tokens": cfg.max_tokens, "share": cfg.share}
    res = edge_attribution(model, task, cfg.method, **kw)
    timings = {cfg.method: res.seconds}
    span = res.metric_clean - res.metric_corrupt
    top = [{**e, "normalized": e["score"] / span if span else None} for e in res.top(cfg.top)]
    check = None
    if cfg.check:
        k = min(cfg.check, len(top))
        p = edge_patching(model, task, [e["edge"] for e in top[:k]], max_tokens=cfg.max_tokens, progress=progress)
        for e, eff in zip(top, p.effects.tolist()):
            e["patch"] = eff
        r, why = pearson_or_reason([e["score"] for e in top[:k]], p.effects, cfg.method, "edge patching")
        check = {"n_edges": k, "pearson": r, "pearson_undefined": why}
        timings["edge_patching"] = p.seconds
    curve = circuit = None
    if cfg.sizes:
        others = [m for m in dict.fromkeys(cfg.compare) if m != cfg.method]
        scores = [res] + [edge_attribution(model, task, m, **kw) for m in others]
        timings.update({s.method: s.seconds for s in scores[1:]})
        sizes = sorted({min(n, res.graph.n_edges) for n in cfg.sizes})
        fc = faithfulness_curve(model, task, scores, sizes, prune=cfg.prune, max_tokens=cfg.max_tokens,
                                selection=cfg.selection)
        timings["faithfulness"] = fc.seconds
        curve = {**encode(fc), "sizes": sizes, "target": cfg.target}
        own = fc.curves.get(cfg.method) or dict.fromkeys(("n_requested", "n_edges", "f_norm"), ())  # top-n
        ok = [(n, e, f) for n, e, f in zip(own["n_requested"], own["n_edges"], own["f_norm"]) if f >= cfg.target]
        if ok:
            n, e, f = min(ok, key=lambda x: x[1])
            c = top_n_circuit(res, n, prune=cfg.prune)
            circuit = {"n_requested": n, "n_edges": e, "f_norm": f, "edges": c.edge_names()}
    shown = c.edges if circuit else as_edge_mask(res.graph, [e["edge"] for e in top])
    return EdgeResult(
        **task_fields(model, task_name, task, res), method=cfg.method, n_edges=res.graph.n_edges,
        n_layers=model.cfg.n_layers, top_edges=top, graph=component_edges(res, shown),
        stages=dict(zip(("z", "rows", "columns"), stage_matrix(res))), check=check, curve=curve, circuit=circuit,
        config={**asdict(cfg), "scoring": res.config}, timings=timings)
