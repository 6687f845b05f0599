"""Typed results of the decompositions: SNMF features of an MLP (kind ``snmf``) and LIB against PCA
(kind ``lib``), on a model's residual layers or on the modular-addition toy.

Each has a summary sentence written from its numbers and a report with its own layout: SNMF leads
with how much of the activations the features explain and what the strongest features read and
write; LIB leads with how much more compact the LIB basis is than PCA (directions carrying 90% of
the interaction importance, or on the toy the nodes and edges that keep 99% of the accuracy), then
the interaction graphs.  Design choice: the results hold the numbers a reader needs (factor shapes,
loss curve, feature cards, top-``n`` graph), never the factors themselves.  Memory: a few kB to a few MB of
JSON (the loss curve, ``top`` importances and the graph's ``top^2`` edges per layer pair).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from interp.reports import Report
from interp.results import Result, register


@register
@dataclass
class SNMFFeatures(Result):
    """An SNMF fit of ``blocks.L.mlp.hook_post`` and cards for its strongest features
    (:func:`interp.decompositions.snmf_features.snmf_features`)."""

    kind: ClassVar[str] = "snmf"
    axes: ClassVar[dict[str, str]] = {
        "fit.losses#0": "iteration", "fit.losses": "squared reconstruction error",
        "features.index": "feature", "features.mean_coef": "mean coefficient"}

    model: str
    hook: str
    source: dict
    """Where the rows came from: ``{store, rows}`` or ``{texts, n_texts, rows}``."""
    fit: dict
    """:meth:`SNMFResult.to_json`: k, d_a, n, loss, rel_loss, best_iter, n_iter, seconds, config, path, losses."""
    features: list[dict]
    """One :class:`~interp.decompositions.snmf_features.FeatureCard` per described feature, strongest first."""
    steering: dict
    """The steering calibration: prompt, KL targets, forward passes."""
    comparison: dict | None = None
    """SNMF / DiffMeans / SAE on the concept set (:func:`~interp.decompositions.snmf_compare.compare_on_concepts`)."""
    config: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def summary(self) -> str:
        f = self.fit
        s = (f"SNMF with k={f['k']} features of {self.hook} ({f['d_a']} neurons) on {f['n']:,} tokens of {self.model} "
             f"leaves {100 * f['rel_loss']:.1f}% of the squared norm unexplained after {f['n_iter']} iterations.")
        if self.features:
            c = self.features[0]
            top = ", ".join(repr(t) for t, _ in c["vocab"]["top"][:4])
            s += (f" The strongest, feature {c['index']} (mean coefficient {c['mean_coef']:.3g}, {c['n_neurons']} "
                  f"neurons), promotes {top}; steered +, the model continues {c['steered']['+']!r}.")
        return s

    def report(self):
        f = self.fit
        r = Report.of(self, f"SNMF features of {self.hook} ({self.model})")
        if self.features:
            r.add_section("The strongest features")
            r.add_table("Feature cards", [{
                "feature": c["index"], "neurons": c["n_neurons"], "mean coef": round(c["mean_coef"], 4),
                "top contexts": " | ".join(f"{x['context']}[{x['token']}]" for x in c["contexts"][:4]),
                "promotes": " ".join(t for t, _ in c["vocab"]["top"][:8]),
                "steered +": c["steered"]["+"], "steered -": c["steered"]["-"]} for c in self.features],
                caption="Input side: the contexts with the largest coefficient (token in brackets); output side: the "
                        "tokens the feature's residual direction promotes; steering at the middle KL target.")
            r.add_bars("Mean coefficient per feature", [str(c["index"]) for c in self.features],
                       {"": [c["mean_coef"] for c in self.features]},
                       x_title=self.axes["features.index"], y_title=self.axes["features.mean_coef"],
                       fields=("features.index", "features.mean_coef"),
                       caption="Mean of each described feature's non-negative coefficient over the fitted tokens.")
        r.add_section("The fit")
        r.add_line("Reconstruction error per iteration", list(range(len(f["losses"]))), {"loss": f["losses"]},
                   x_title=self.axes["fit.losses#0"], y_title=self.axes["fit.losses"], log_y=True,
                   fields=("fit.losses#0", "fit.losses"),
                   caption=f"||A - ZY||^2 of the winning restart; best at iteration {f['best_iter']}.")
        if self.comparison:
            r.add_table("Concept comparison", self.comparison["rows"])
        r.add_section("Method",
                      "Semi-NMF A ~ ZY (Shafran, Geiger & Geva 2025) with winner-take-all sparsity on Z "
                      f"({f['config'].get('sparsity')}), {f['config'].get('init')} initialisation, "
                      f"{f['config'].get('n_restarts')} restart(s), the {f['path']} kernel "
                      "(interp.decompositions.snmf).")
        r.add_table("Source", self.source)
        return r


def spectra(res) -> dict:
    """How concentrated a :class:`~interp.decompositions.lib.LIBResult` is, per node layer."""
    return {"kept": [b.k for b in res.bases], "seconds": res.seconds,
            "dirs_for_90pct_importance": [n_for_frac(b.importance, 0.9) for b in res.bases],
            "edges_for_90pct_strength": [None if E is None else n_for_frac(E, 0.9) for E in res.edges]}


def n_for_frac(v, frac: float) -> int:
    """How many of the largest entries of ``v`` carry ``frac`` of its (non-negative) sum."""
    c = v.flatten().double().clamp_min(0).sort(descending=True).values.cumsum(0)
    return int((c < frac * c[-1]).sum()) + 1


@register
@dataclass
class LIBComparison(Result):
    """LIB and PCA bases of the same node layers, with their interaction graphs; on the modular-addition
    toy also the nodes and edges each needs to keep 99% of the accuracy."""

    kind: ClassVar[str] = "lib"
    axes: ClassVar[dict[str, str]] = {
        "names": "node layer", "spectra.dirs_for_90pct_importance": "directions carrying 90% of importance",
        "ablation.edges": "edges needed for 99% accuracy", "ablation.nodes": "nodes needed for 99% accuracy",
        "lib.importance#1": "direction (most important first)", "lib.importance": "importance",
        "lib.nodes": "node"}

    model: str
    names: list[str]
    """Node-layer names, input first."""
    lib: dict
    """:meth:`LIBResult.to_json` of the LIB fit (top nodes' importance, graph)."""
    pca: dict
    """The same for the PCA basis."""
    spectra: dict
    """``{basis: {kept, seconds, dirs_for_90pct_importance, edges_for_90pct_strength}}`` (lists per node layer)."""
    ablation: list[dict] | None = None
    """Toy only: per map ``{layer, <basis>_kept, <basis>_nodes, <basis>_edges}`` (minimal counts for the target)."""
    accuracy: float | None = None
    """Toy only: the model's accuracy over all p^2 pairs."""
    target: float | None = None
    """Toy only: 0.99 x ``accuracy``."""
    settings: dict = field(default_factory=dict)
    notes: str = ""
    meta: dict = field(default_factory=dict)

    def _total(self, basis: str, what: str) -> int:
        return sum(r[f"{basis}_{what}"]["needed"] for r in self.ablation)

    def summary(self) -> str:
        if self.ablation:
            return (f"On {self.model} (accuracy {100 * self.accuracy:.1f}%), keeping 99% of it needs "
                    f"{self._total('lib', 'edges')} edges in the LIB basis against {self._total('pca', 'edges')} in "
                    f"PCA's, and {self._total('lib', 'nodes')} against {self._total('pca', 'nodes')} nodes, over the "
                    f"{len(self.ablation)} maps {', '.join(r['layer'] for r in self.ablation)}.")
        s = self.spectra
        d = {b: s[b]["dirs_for_90pct_importance"] for b in ("lib", "pca")}
        e = {b: [x for x in s[b]["edges_for_90pct_strength"] if x is not None] for b in ("lib", "pca")}
        per = "; ".join(f"{n}: {dl} LIB against {dp} PCA directions (of {kl} and {kp} kept)" for n, dl, dp, kl, kp
                        in zip(self.names, d["lib"], d["pca"], s["lib"]["kept"], s["pca"]["kept"]))
        return (f"On {self.model}, the directions holding 90% of the interaction importance, per node layer: {per}. "
                f"90% of the edge strength lies in {sum(e['lib'])} LIB edges against {sum(e['pca'])} PCA edges.")

    def _graph(self, r, basis: str, top: int = 12) -> None:
        from interp.reports.figures import circuit_graph

        fit = getattr(self, basis)
        nodes = [dict(nd, label=f"{nd['index']:02d}", score=nd["importance"]) for nd in fit["nodes"]
                 if nd["index"] < top]
        ids = {nd["id"] for nd in nodes}
        edges = sorted((e for e in fit["edges"] if e["source"] in ids and e["target"] in ids), key=lambda e: -e["weight"])
        fig = circuit_graph(f"{basis.upper()} interaction graph", nodes, edges[: 4 * top * len(self.names)]).fig
        fig.update_xaxes(title_text=self.axes["names"], tickvals=list(range(len(self.names))), ticktext=self.names)
        r.add_figure(fig, title=f"{basis.upper()} interaction graph", fields=("names", "lib.nodes"),
                     caption=f"The top {top} nodes of each node layer (colour: importance) and the strongest edges "
                             "between consecutive layers (width: strength).")

    def report(self):
        r = Report.of(self, f"LIB vs PCA on {self.model}", self.settings)
        r.add_section("How compact each basis is")
        if self.ablation:
            for what in ("edges", "nodes"):
                r.add_bars(f"{what.capitalize()} needed for 99% accuracy", self.names[:-1],  # one row per map
                           {b.upper(): [x[f"{b}_{what}"]["needed"] for x in self.ablation] for b in ("lib", "pca")},
                           x_title=self.axes["names"], y_title=self.axes[f"ablation.{what}"],
                           fields=("names", f"ablation.{what}"),
                           caption=f"The fewest {what} of each map's input layer that keep {100 * self.target:.1f}% "
                                   "accuracy when the rest are mean-ablated (bisection).")
        r.add_bars("Directions carrying 90% of importance", self.names,
                   {b.upper(): self.spectra[b]["dirs_for_90pct_importance"] for b in ("lib", "pca")},
                   x_title=self.axes["names"], y_title=self.axes["spectra.dirs_for_90pct_importance"],
                   fields=("names", "spectra.dirs_for_90pct_importance"),
                   caption="Per node layer: how many of the basis's directions, most important first, hold 90% of "
                           "the summed importance (Lambda for LIB, variance for PCA).")
        imp = {f"{b.upper()} {n}": v for b in ("lib", "pca") for n, v in zip(self.names, getattr(self, b)["importance"])}
        n = max(len(v) for v in imp.values())
        r.add_line("Importance spectrum", list(range(n)),
                   {k: list(v) + [float("nan")] * (n - len(v)) for k, v in imp.items()},
                   x_title=self.axes["lib.importance#1"], y_title=self.axes["lib.importance"], log_y=True,
                   fields=("lib.importance#1", "lib.importance"),
                   caption="Importance of the leading directions of each node layer, per basis.")
        r.add_section("Interaction graphs")
        for basis in ("lib", "pca"):
            self._graph(r, basis)
        r.add_section("Method",
                      "Local interaction basis (Bushnaq et al. 2024, arXiv 2405.10928): per node layer the "
                      "directions rotated by the Gram matrix of the Jacobian of later layers, scaled by their "
                      "importance; PCA is the same pipeline with the variance basis. " + self.notes)
        return r
