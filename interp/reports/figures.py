"""Plotly figure helpers for attribution reports.

Every helper takes plain numbers (torch tensors, numpy arrays or nested lists), turns them
into a float array with :func:`as_array`, and returns a :class:`Figure`: the plotly figure
plus a one-paragraph caption that tells the reader what they are looking at.  NaN and inf
values never crash a helper: they are drawn as gaps (``null`` in plotly's JSON) and the
caption says how many there were.

Helpers:

- :func:`heatmap` -- a matrix, e.g. layer x head scores; diverging colours centred on zero
  when the values have both signs, a sequential scale otherwise.
- :func:`layer_head` -- a layer x head matrix with the standard labels and axis titles.
- :func:`lines` -- one or more named series over a shared x axis (training curves, ratios).
- :func:`faithfulness_curve` -- metric recovered vs number of components kept, with the
  target share and the chosen circuit size marked.
- :func:`grouped_bars` -- one value per (category, series), e.g. Pearson r per component type
  per method (a single unnamed series: one score per layer).
- :func:`method_vs_patching` -- scatter of a method's scores against activation patching
  with Pearson r and a least-squares line.
- :func:`circuit_graph` -- nodes placed in columns by layer, edges drawn as lines whose width
  follows |weight| and colour its sign (no networkx).

Memory: each helper copies its input once into a float64 array; the figure holds the values
as JSON lists, so a report costs about 20 bytes per plotted number.
"""

from __future__ import annotations

import html
import itertools
import math
from typing import Any, NamedTuple, Sequence

import numpy as np
import plotly.graph_objects as go

from interp.results import pearson

#: Diverging scale (blue = negative, white = zero, red = positive), colour-blind safe (RdBu).
DIVERGING = [
    [0.0, "#053061"], [0.15, "#2166ac"], [0.3, "#4393c3"], [0.45, "#d1e5f0"], [0.5, "#f7f7f7"],
    [0.55, "#fddbc7"], [0.7, "#d6604d"], [0.85, "#b2182b"], [1.0, "#67001f"],
]
SEQUENTIAL = "Viridis"
TEMPLATE = "plotly_white"


_PLOTLY_JS_CALLS = itertools.count()


def plotly_js_once() -> bool:
    """True the first time it is called in this Python session (then False): whether a notebook
    output should carry plotly.js inline.  One copy per notebook keeps figures drawable offline and
    in an HTML export (nbconvert) without a CDN."""
    return next(_PLOTLY_JS_CALLS) == 0


class Figure(NamedTuple):
    """A plotly figure with the caption a report prints under it.

    In Jupyter, a cell that ends with a ``Figure`` shows it with its caption: as plotly's own
    mimetype (JupyterLab) and as HTML that carries plotly.js inline once per session, so the
    figure also survives ``jupyter nbconvert --to html`` and opens offline.
    """

    fig: go.Figure
    """The plotly figure (JSON-serialisable, no numpy inside)."""
    caption: str
    """What the reader sees, in one or two sentences, including a note on NaN/inf gaps."""
    n_nonfinite: int = 0
    """How many input values were NaN or inf (drawn as gaps)."""

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        import plotly.io as pio

        body = pio.to_html(self.fig, include_plotlyjs=plotly_js_once(), full_html=False,
                           config={"displaylogo": False})
        cap = f'<p style="color:#555;font-size:13px;max-width:900px">{html.escape(self.caption)}</p>'
        return {"application/vnd.plotly.v1+json": self.fig.to_plotly_json(), "text/html": body + cap,
                "text/plain": f"Figure: {self.fig.layout.title.text or ''}"}


def as_array(x: Any, name: str = "values", ndim: int | None = None) -> np.ndarray:
    """``x`` (tensor, ndarray, nested list, number) as a float64 array.

    ``None`` entries become NaN.  Raises ``ValueError`` naming ``name`` for ragged lists,
    non-numeric entries or a wrong number of dimensions.
    """
    if type(x).__module__.startswith("torch"):
        x = x.detach().cpu().float().numpy()
    try:
        arr = np.asarray(x)  # a ragged list raises here; a None entry makes an object array
        if arr.dtype.kind not in "biufO":  # strings (numpy would parse "1.5"), bytes, dates
            raise TypeError(f"entries of dtype {arr.dtype}")
        arr = arr.astype(np.float64)  # None -> NaN; a dict or a non-numeric string raises
    except (ValueError, TypeError) as e:
        raise ValueError(f"{name}: expected numbers in a rectangular (not ragged) array, got "
                         f"{type(x).__name__} ({e})") from None
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array, got shape {tuple(arr.shape)}")
    return arr


def jsonable(arr: np.ndarray) -> tuple[list, int]:
    """``arr`` (a float array from :func:`as_array`) as nested lists with NaN/inf replaced by ``None``; also
    the number replaced."""
    bad = ~np.isfinite(arr)
    obj = np.where(bad, None, arr).tolist() if bad.any() else arr.tolist()
    return obj, int(bad.sum())


def gap_note(n: int, what: str = "values") -> str:
    """The caption sentence for ``n`` non-finite inputs (empty when ``n == 0``)."""
    if n == 0:
        return ""
    return f" Note: {n} of the {what} {'is' if n == 1 else 'are'} NaN or infinite and shown as gaps."


def _labels(labels: Sequence | None, n: int, name: str) -> list[str]:
    if labels is None:
        return [str(i) for i in range(n)]
    labels = [str(v) for v in labels]
    if len(labels) != n:
        raise ValueError(f"{name}: {len(labels)} labels for an axis of length {n}")
    if len(set(labels)) != n:     # a category axis would merge equal labels into one cell
        labels = [f"{i} {lab}" for i, lab in enumerate(labels)]
    return labels


def _series(title: str, by_name: Any, n: int | None, mismatch: str) -> tuple[dict[Any, list], int]:
    """A non-empty dict of 1-D series of equal length (``n``, or the first's) as ``{name: JSON values}``,
    and how many of the values are NaN/inf; a series of another length is an error saying ``mismatch``."""
    if not isinstance(by_name, dict) or not by_name:
        raise ValueError(f"{title}: the series must be a non-empty dict of name -> values")
    out, bad = {}, 0
    for name, vals in by_name.items():
        v = as_array(vals, f"{title}: series {name!r}", ndim=1)
        n = len(v) if n is None else n
        if len(v) != n:
            raise ValueError(f"{title}: series {name!r} has {len(v)} {mismatch} {n}")
        out[name], b = jsonable(v)
        bad += b
    return out, bad


def _layout(fig: go.Figure, title: str, height: int | None = None, **kw) -> None:
    fig.update_layout(
        title={"text": title, "x": 0.0, "xanchor": "left"}, template=TEMPLATE,
        margin={"l": 60, "r": 20, "t": 50, "b": 50}, height=height, **kw,
    )


def heatmap(title: str, z: Any, x_labels: Sequence | None = None, y_labels: Sequence | None = None,
            x_title: str = "", y_title: str = "", caption: str = "",
            zrange: tuple[float, float] | None = None) -> Figure:
    """A matrix as a heatmap (rows = ``y_labels``, top to bottom; columns = ``x_labels``); a diverging
    scale centred on 0 when the values (or ``zrange``) have both signs, a sequential one otherwise.

    ``zrange``: the colour scale's fixed (min, max), for a quantity with a natural range (an attention
    share in [0, 1]); by default it spans the data, which makes tiny differences look large."""
    arr = as_array(z, title or "heatmap", ndim=2)
    n_rows, n_cols = arr.shape
    xl, yl = _labels(x_labels, n_cols, f"{title}: x_labels"), _labels(y_labels, n_rows, f"{title}: y_labels")
    obj, bad = jsonable(arr)
    fin = arr[np.isfinite(arr)]
    lo, hi = zrange if zrange is not None else ((fin.min(), fin.max()) if fin.size else (0.0, 0.0))
    diverging = lo < 0 < hi
    scale = {"colorscale": DIVERGING, "zmid": 0.0} if diverging else {"colorscale": SEQUENTIAL}
    if zrange is not None:
        scale.update(zmin=zrange[0], zmax=zrange[1])
    hover = (f"{y_title or 'row'} %{{y}}<br>{x_title or 'column'} %{{x}}<br>value %{{z:.4g}}"
             "<extra></extra>")
    fig = go.Figure(go.Heatmap(z=obj, x=xl, y=yl, hovertemplate=hover, hoverongaps=False,
                               xgap=1 if n_cols <= 40 else 0, ygap=1 if n_rows <= 40 else 0, **scale))
    height = int(min(900, max(320, 120 + 22 * n_rows)))
    # NaN cells are gaps: a grey plot background makes them stand apart from white (zero) cells
    _layout(fig, title, height=height, xaxis_title=x_title, yaxis_title=y_title, plot_bgcolor="#d0d0d0")
    fig.update_yaxes(autorange="reversed", type="category", showgrid=False)
    fig.update_xaxes(showgrid=False, type="category")
    if not caption:
        colours = ("red is positive, blue negative, white zero" if diverging
                   else "brighter is larger")
        caption = (f"Each cell is one ({y_title or 'row'}, {x_title or 'column'}) pair of a "
                   f"{n_rows} x {n_cols} matrix; colour is the value ({colours}).")
        caption += (f" Values range from {fin.min():.4g} to {fin.max():.4g}." if fin.size
                    else " All values are NaN or infinite.")
    note = gap_note(bad, "cells").replace("shown as gaps", "shown as grey gaps")
    return Figure(fig, caption + note, bad)


def layer_head(title: str, z: Any, caption: str = "", zrange: tuple[float, float] | None = None) -> Figure:
    """A layer x head matrix (rows = layers ``L0..``, columns = heads ``H0..``): :func:`heatmap` with
    the axes every per-head figure of interp uses ("head" across, "layer" down)."""
    n_layers, n_heads = as_array(z, title or "layer x head", ndim=2).shape  # heatmap converts z again
    return heatmap(title, z, [f"H{h}" for h in range(n_heads)], [f"L{l}" for l in range(n_layers)],
                   x_title="head", y_title="layer", caption=caption, zrange=zrange)


def lines(title: str, xs: Any, ys_by_name: dict[str, Any], x_title: str = "", y_title: str = "",
          caption: str = "", log_y: bool = False) -> Figure:
    """Named series over a shared x axis; NaN/inf points break the line."""
    x = as_array(xs, f"{title}: xs", ndim=1)
    xo, bad = jsonable(x)
    series, b = _series(title, ys_by_name, len(x), "points but xs has")
    fig = go.Figure()
    for name, yo in series.items():
        fig.add_trace(go.Scatter(x=xo, y=yo, name=str(name), mode="lines+markers" if len(x) <= 60 else "lines",
                                 hovertemplate=f"{name}<br>{x_title or 'x'} %{{x}}<br>{y_title or 'y'} %{{y:.4g}}<extra></extra>"))
    _layout(fig, title, height=380, xaxis_title=x_title, yaxis_title=y_title)
    if len(x) <= 40 and np.all(np.isfinite(x)) and np.all(x == np.round(x)):  # layers, steps: no 0.2 ticks
        fig.update_xaxes(dtick=max(1, int(np.ceil((x.max() - x.min()) / 12))) if len(x) > 1 else 1)
    if log_y:
        fig.update_yaxes(type="log")
    if not caption:
        names = [str(n) for n in ys_by_name]
        what = f"{y_title or 'value'} of {', '.join(names)}" if names != [y_title] else (y_title or "value")
        caption = (f"Line: {what} (y{', log scale' if log_y else ''}) against {x_title or 'x'} (x), "
                   f"{len(x)} points{' per series' if len(names) > 1 else ''}; one colour per series.")
    return Figure(fig, caption + gap_note(bad + b, "points"), bad + b)


def faithfulness_curve(n_components: Any, recovered: Any, target: float | None = None,
                       chosen: int | None = None, total: int | None = None,
                       title: str = "Faithfulness", caption: str = "") -> Figure:
    """Share of the clean metric recovered when only the top-n components keep clean values."""
    f = lines(title, n_components, {"recovered": recovered}, "components kept in the circuit",
              "share of clean metric recovered", caption=caption or " ")
    fig = f.fig
    if target is not None and math.isfinite(float(target)):
        fig.add_hline(y=float(target), line_dash="dash", line_color="#888",
                      annotation_text=f"target {float(target):.0%}", annotation_position="bottom right")
    if chosen is not None:
        fig.add_vline(x=chosen, line_dash="dot", line_color="#b2182b",
                      annotation_text=f"circuit: {chosen}", annotation_position="top left")
    if not caption:
        of = f" of {total}" if total else ""
        caption = ("Each point patches every component outside the top-n (by attribution score) "
                   "and reports the metric recovered, as a share of the clean-minus-corrupt metric; "
                   "1.0 means the circuit alone reproduces the behaviour.")
        if chosen is not None:
            caption += f" The red dotted line marks the chosen circuit ({chosen}{of} components)."
    return Figure(fig, caption + gap_note(f.n_nonfinite, "points"), f.n_nonfinite)


def grouped_bars(title: str, categories: Sequence | None, values_by_name: dict[str, Any],
                 x_title: str = "", y_title: str = "", caption: str = "") -> Figure:
    """Bars per category, one colour per named series (e.g. Pearson r per component type per method)."""
    series, bad = _series(title, values_by_name, None, "values, expected")
    cats = _labels(categories, len(next(iter(series.values()))), f"{title}: categories")
    fig = go.Figure()
    for name, vo in series.items():
        fig.add_trace(go.Bar(x=cats, y=vo, name=str(name) or None, showlegend=bool(name),
                             hovertemplate=f"{name + '<br>' if name else ''}%{{x}}: %{{y:.4g}}<extra></extra>"))
    _layout(fig, title, height=360, xaxis_title=x_title, yaxis_title=y_title, barmode="group")
    fig.update_xaxes(type="category")
    if not caption:
        named = [k for k in values_by_name if k]
        caption = f"Bar height is {y_title or 'the value'} per {x_title or 'entry'}"
        caption += f", one colour per series ({', '.join(named)})." if named else "."
    return Figure(fig, caption + gap_note(bad, "bars"), bad)


def method_vs_patching(title: str, patching: Any, method: Any, method_name: str,
                       labels: Sequence | None = None, caption: str = "", x_title: str = "activation patching",
                       y_title: str | None = None) -> Figure:
    """Scatter of a method's scores (y, titled ``y_title``, default the method's name) against
    activation patching (x), with Pearson r."""
    p, m = as_array(patching, f"{title}: patching").ravel(), as_array(method, f"{title}: {method_name}").ravel()
    if p.shape != m.shape:
        raise ValueError(f"{title}: patching has {p.size} scores but {method_name} has {m.size}")
    lab = _labels(labels, p.size, f"{title}: labels")
    ok = np.isfinite(p) & np.isfinite(m)  # r over the finite pairs (a gap is counted in the caption)
    n, pf, mf = int(ok.sum()), p[ok], m[ok]
    r = pearson(pf, mf)  # nan for fewer than two pairs, or a constant side
    fig = go.Figure(go.Scatter(
        x=pf.tolist(), y=mf.tolist(), mode="markers", text=[l for l, o in zip(lab, ok) if o],
        marker={"size": 7, "opacity": 0.75}, name="components",
        hovertemplate="%{text}<br>patching %{x:.4g}<br>" + method_name + " %{y:.4g}<extra></extra>"))
    if math.isfinite(r):
        slope, icpt = np.polyfit(pf, mf, 1)
        xs = [float(pf.min()), float(pf.max())]
        fig.add_trace(go.Scatter(x=xs, y=[slope * v + icpt for v in xs], mode="lines", name="least squares",
                                 line={"dash": "dash", "color": "#888"}, hoverinfo="skip"))
    r_txt = f"{r:.3f}" if math.isfinite(r) else "undefined"
    _layout(fig, f"{title} (Pearson r = {r_txt}, n = {n})", height=380,
            xaxis_title=x_title, yaxis_title=y_title or method_name, showlegend=False)
    if not caption:
        caption = (f"Each point is one component: its activation-patching effect (x) against its "
                   f"{method_name} score (y); hover for its name. Pearson r = {r_txt} over {n} components; the "
                   "dashed line is the least-squares fit: points on it mean the method's scores are patching's up "
                   "to scale and offset.")
    return Figure(fig, caption + gap_note(p.size - n, "components"), p.size - n)


def circuit_graph(title: str, nodes: list[dict], edges: list[dict], caption: str = "") -> Figure:
    """Nodes in columns by ``layer`` (x), spread within a column (y); edges as lines.

    ``nodes``: dicts with ``id``, ``label``, ``layer`` and optional ``score`` and ``kind``;
    ``edges``: dicts with ``source``, ``target`` and ``weight``.  Edge width grows with |weight|,
    red edges are positive and blue negative.
    """
    if not isinstance(nodes, (list, tuple)) or not nodes:
        raise ValueError(f"{title}: nodes must be a non-empty list of dicts")
    by_layer: dict[float, list[dict]] = {}
    for i, nd in enumerate(nodes):
        if not isinstance(nd, dict) or "id" not in nd or "layer" not in nd:
            raise ValueError(f"{title}: node {i} must be a dict with 'id' and 'layer', got {nd!r:.80}")
        try:
            by_layer.setdefault(float(nd["layer"]), []).append(nd)
        except (TypeError, ValueError):
            raise ValueError(f"{title}: node {nd['id']!r} has non-numeric layer {nd['layer']!r}") from None
    ids = [str(nd["id"]) for nd in nodes]
    if len(set(ids)) < len(ids):
        raise ValueError(f"{title}: duplicate node id {next(i for i in ids if ids.count(i) > 1)!r}")
    pos: dict[str, tuple[float, float]] = {}
    for layer, group in by_layer.items():
        group.sort(key=lambda d: (str(d.get("kind", "")), str(d.get("label", d["id"]))))
        pos.update({str(nd["id"]): (layer, j - (len(group) - 1) / 2) for j, nd in enumerate(group)})
    edges = list(edges or [])
    for k, e in enumerate(edges):
        if not isinstance(e, dict) or "source" not in e or "target" not in e:
            raise ValueError(f"{title}: edge {k} must be a dict with 'source' and 'target', got {e!r:.80}")
        for end in ("source", "target"):
            if str(e[end]) not in pos:
                raise ValueError(f"{title}: edge {k} {end} {e[end]!r} is not a node id")
    weights = [math.nan if e.get("weight", 1.0) is None else float(e.get("weight", 1.0)) for e in edges]
    wmax = max([abs(w) for w in weights if math.isfinite(w)] or [1.0]) or 1.0
    fig = go.Figure()
    mids = []  # one invisible marker per edge midpoint carries the edge's hover text
    for e, w in zip(edges, weights):
        (x0, y0), (x1, y1) = pos[str(e["source"])], pos[str(e["target"])]
        fin = math.isfinite(w)
        fig.add_trace(go.Scatter(
            x=[x0, x1], y=[y0, y1], mode="lines", hoverinfo="skip", showlegend=False,
            line={"width": 0.8 + 5 * (abs(w) / wmax if fin else 0),
                  "color": ("#b2182b" if w >= 0 else "#2166ac") if fin else "#bbb",
                  "dash": "solid" if fin else "dot"}, opacity=0.55))
        mids.append(((x0 + x1) / 2, (y0 + y1) / 2, f"{e['source']} → {e['target']}<br>weight {w:.4g}"))
    if mids:
        mx, my, mt = zip(*mids)
        fig.add_trace(go.Scatter(x=mx, y=my, mode="markers", marker={"size": 6, "opacity": 0},
                                 text=mt, hovertemplate="%{text}<extra></extra>", showlegend=False))
    scores = [nd.get("score") for nd in nodes]
    sc = as_array(scores, f"{title}: node scores")  # a node without a score is NaN here
    finite = np.isfinite(sc)
    bad = sum(raw is not None and not ok for raw, ok in zip(scores, finite))
    texts = [str(nd.get("label", nd["id"])) for nd in nodes]
    hover = [f"{t}<br>layer {nd['layer']}" + (f"<br>kind {nd['kind']}" if nd.get("kind") else "")
             + (f"<br>score {s:.4g}" if ok else "") for t, nd, s, ok in zip(texts, nodes, sc, finite)]
    xy = [pos[i] for i in ids]
    for idx, scored in ((np.flatnonzero(~finite), False), (np.flatnonzero(finite), True)):
        if not idx.size:  # nodes without a score are drawn grey (light blue when no node has one)
            continue
        marker: dict = {"size": 18, "line": {"width": 1, "color": "#333"},
                        "color": "#d9d9d9" if finite.any() else "#9ecae1"}
        if scored:
            div = sc[finite].min() < 0 < sc[finite].max()
            marker.update(color=sc[idx].tolist(), colorscale=DIVERGING if div else SEQUENTIAL,
                          cmid=0.0 if div else None, showscale=True, colorbar={"title": {"text": "score"}})
        fig.add_trace(go.Scatter(
            x=[xy[i][0] for i in idx], y=[xy[i][1] for i in idx],
            mode="markers+text", text=[texts[i] for i in idx], marker=marker,
            # labels above for even layers, below for odd ones: neighbouring columns do not print over each other
            textposition=["top center" if int(xy[i][0]) % 2 == 0 else "bottom center" for i in idx],
            hovertext=[hover[i] for i in idx], hoverinfo="text", showlegend=False))
    n_per = max(len(g) for g in by_layer.values())
    _layout(fig, title, height=int(min(900, max(360, 140 + 45 * n_per))), xaxis_title="layer")
    fig.update_yaxes(visible=False)
    fig.update_xaxes(tickmode="array", tickvals=sorted(by_layer), zeroline=False)
    if not caption:
        caption = (f"The circuit as a graph: {len(nodes)} components placed in columns by layer "
                   f"(left = early), {len(weights)} edges; edge width follows |weight| (red positive, "
                   "blue negative)" + ("; node colour is its attribution score." if finite.any() else "."))
    return Figure(fig, caption + gap_note(bad + sum(not math.isfinite(w) for w in weights),
                                          "node scores or edge weights"), bad)
