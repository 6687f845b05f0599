"""The report builder: a titled sequence of sections written as one standalone HTML file.

How a report is assembled:

1. ``Report(title, config, meta, summary=...)`` records the finding in a sentence or two
   (shown first, under the title) and the run (configuration, model, versions, timings; shown
   last, as "Method and provenance", so the page leads with the result).
2. ``add_*`` calls append sections in reading order.  Figures are built by
   :mod:`interp.reports.figures` (each returns a caption saying what the reader sees),
   token views by :mod:`interp.reports.tokens`, prose as CommonMark (markdown-it-py, raw HTML off, so a
   prompt containing ``<script>`` prints as text; ``#`` becomes ``<h3>`` under the sections' ``<h2>``).
   ``add_section`` starts a group; the sections after it nest under it in the contents.
3. ``to_html()`` writes a title, a table of contents, the sections, and one copy of
   plotly.js inlined in ``<head>`` (about 4.8 MB, once per file, however many figures), so the
   file opens offline.  Each figure's JSON sits in a ``<script type="application/json">``
   block; one script at the end draws them all with ``Plotly.newPlot`` and writes the outcome
   (figures drawn, script errors caught by ``window.onerror``) into ``#interp-status``, which
   the headless-browser test reads.

NaN and inf inputs are drawn as gaps; each such section's caption says so and
``Report.notes`` collects the notes.  :func:`render_results` gives the report of any ``results.json``
(its typed result's own ``report()``).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
import html
import itertools
import json
import math
import re
from pathlib import Path
from typing import Any, NamedTuple, Optional, Sequence

import plotly.graph_objects as go
from markdown_it import MarkdownIt

from interp.reports import figures as F
from interp.reports.assets import asset
from interp.reports.attention import CSS as ATTENTION_CSS
from interp.reports.tokens import CSS as TOKEN_CSS
from interp.reports.tokens import token_view
from interp.results import load_result, versions as _versions

_FRAGMENTS = itertools.count()
_MARKDOWN = MarkdownIt("commonmark", {"html": False})


@functools.cache
def plotly_js() -> str:
    """The plotly.js bundle shipped with the installed plotly package (read once)."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


class Section(NamedTuple):
    """One block of a report."""

    kind: str
    """``"group"`` (a heading that later sections nest under), ``"text"``, ``"figure"``,
    ``"tokens"``, ``"attention"`` or ``"table"``."""
    title: str
    """Heading shown above the block and in the contents (empty for untitled text)."""
    anchor: str
    """HTML id of the block, used by the contents links."""
    body: str
    """HTML of the block; for ``"figure"`` the plotly figure as JSON."""
    caption: str
    """What the reader sees (figures, token views, tables)."""


TABLE_CSS = asset("tables.css")
"""The data tables' style (also carried by :class:`Table` in a notebook)."""

CSS = asset("report.css") + TABLE_CSS + TOKEN_CSS + ATTENTION_CSS

_HEAD_SCRIPT = asset("report_head.js")

_DRAW_SCRIPT = asset("report_draw.js")


def _script_json(obj_json: str) -> str:
    """JSON safe to embed in a ``<script>`` element (no ``</script>`` or ``<!--`` inside)."""
    return obj_json.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def format_value(v: Any) -> tuple[str, bool]:
    """A table cell's HTML and whether it is numeric (right-aligned)."""
    if type(v).__module__.startswith(("torch", "numpy")) and hasattr(v, "tolist"):
        v = v.tolist()
    if v is None:
        return '<span title="not recorded">—</span>', False
    if isinstance(v, bool):
        return str(v), False
    if isinstance(v, int):
        return f"{v:,}" if abs(v) >= 100_000 else str(v), True
    if isinstance(v, float):
        if not math.isfinite(v):
            return f'<span class="nan">{v}</span>', True
        return (f"{v:.4g}" if v != int(v) or abs(v) >= 1e6 else str(int(v))), True
    if isinstance(v, str):
        return html.escape(v if len(v) <= 300 else v[:300] + "…"), False
    try:
        s = json.dumps(v, default=str, allow_nan=True)
    except (TypeError, ValueError):
        s = repr(v)
    except RecursionError:
        s = "(nested too deeply to show)"
    return f"<code>{html.escape(s if len(s) <= 200 else s[:200] + '…')}</code>", False


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level with dotted keys (lists are kept as values)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def table_html(rows: Sequence[dict], max_rows: int = 500) -> tuple[str, int]:
    """Rows of dicts as an HTML table (columns = union of keys, first-seen order); also non-finite count."""
    cols = list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    body, bad = [], 0
    for r in rows[:max_rows]:
        cells = []
        for c in cols:
            v = r.get(c, "")
            if isinstance(v, float) and not math.isfinite(v):
                bad += 1
            text, num = format_value(v)
            cells.append(f'<td class="num">{text}</td>' if num else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    more = (f'<tr><td colspan="{len(cols)}">… {len(rows) - max_rows} more rows not shown</td></tr>'
            if len(rows) > max_rows else "")
    return f'<table class="data"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}{more}</tbody></table>', bad


class Table(NamedTuple):
    """Rows of dicts shown as a table in Jupyter (a cell that ends with it renders it); no pandas."""

    rows: Sequence[dict]
    """One dict per row; columns are the union of keys in first-seen order."""
    caption: str = ""
    """Shown under the table."""

    def _repr_html_(self) -> str:
        body, _ = table_html(list(self.rows))
        cap = f'<p style="color:#555;font-size:13px">{html.escape(self.caption)}</p>' if self.caption else ""
        return f"<style>{TABLE_CSS}</style>{body}{cap}"


def _as_dict(x: Any, name: str) -> dict:
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return dataclasses.asdict(x)
    if x is None or isinstance(x, dict):
        return dict(x or {})
    raise ValueError(f"Report {name} must be a dict or a dataclass instance, got {type(x).__name__}")


#: ``(x_field, y_field)``: which result field each axis of a figure shows (either may be None).
Fields = Optional[tuple[Optional[str], Optional[str]]]


class Report:
    """A standalone HTML report: title, run information, contents, then sections in order.

    ``config``: the run's configuration (dict or dataclass); ``meta``: model, versions,
    timings and anything else about the run (dict).  Every ``add_*`` method returns ``self``.
    """

    def __init__(self, title: str, config: Any = None, meta: Any = None, summary: str = ""):
        if not isinstance(title, str) or not title.strip():
            raise ValueError("Report title must be a non-empty string")
        self.title = title.strip()
        self.summary = summary
        """The finding, written from the numbers (Markdown); shown first, under the title."""
        self.config = _as_dict(config, "config")
        self.meta = _as_dict(meta, "meta")
        self.sections: list[Section] = []
        self.notes: list[str] = []
        self._anchors: set[str] = {"run", "contents", "notes"}
        self._n_fig = 0

    @classmethod
    def of(cls, result, title: str, config: Any = None, **meta) -> "Report":
        """A typed result's report head: ``title``, the result's ``summary()``, ``config`` (default: its
        ``config`` field) and as meta its ``model``, ``task`` and ``versions`` fields (those it has and sets),
        its ``meta`` dict, then the keywords ``meta``."""
        own = {k: getattr(result, k) for k in ("model", "task", "versions") if getattr(result, k, None)}
        return cls(title, config=getattr(result, "config", None) if config is None else config,
                   meta={**own, **(getattr(result, "meta", None) or {}), **meta}, summary=result.summary())

    # ------------------------------------------------------------------ adding
    def _anchor(self, title: str) -> str:
        base = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:48] or "section"
        a, i = base, 2
        while a in self._anchors:
            a, i = f"{base}-{i}", i + 1
        self._anchors.add(a)
        return a

    def _append(self, kind: str, title: str, body: str, caption: str = "", n_bad: int = 0) -> "Report":
        """Add a section (its anchor from ``title``), noting ``n_bad`` NaN/inf inputs; returns ``self``."""
        if n_bad:
            self.notes.append(f"{title}: {n_bad} NaN/inf value{'s' if n_bad > 1 else ''} shown as gaps.")
        self.sections.append(Section(kind, title, self._anchor(title or kind), body, caption))
        return self

    def add_section(self, title: str, text: str = "") -> "Report":
        """Start a group: a heading in the contents; the following sections nest under it."""
        return self._append("group", title, self._text_html(text) if text else "")

    def add_text(self, md_or_html: str) -> "Report":
        """Prose: Markdown, or HTML when the string starts with ``<`` (inserted as given)."""
        if not isinstance(md_or_html, str):
            raise ValueError(f"add_text expects a string, got {type(md_or_html).__name__}")
        return self._append("text", "", self._text_html(md_or_html))

    @staticmethod
    def _text_html(text: str) -> str:
        if text.lstrip().startswith("<"):
            return text
        return re.sub(r"<(/?)h([1-6])>", lambda m: f"<{m[1]}h{min(6, int(m[2]) + 2)}>", _MARKDOWN.render(text))

    def add_heatmap(self, title: str, z: Any, x_labels: Sequence | None = None,
                    y_labels: Sequence | None = None, caption: str = "", x_title: str = "",
                    y_title: str = "", fields: Fields = None) -> "Report":
        """A matrix (e.g. layer x head) as a heatmap; rows are ``y_labels`` from the top."""
        return self._add(F.heatmap(title, z, x_labels, y_labels, x_title, y_title, caption), title, fields)

    def add_layer_heads(self, title: str, z: Any, field: str, caption: str = "",
                        zrange: tuple[float, float] | None = None) -> "Report":
        """A layer x head matrix (:func:`interp.reports.figures.layer_head`); ``field`` is the result
        field it shows (its dimension 0 is the layer, 1 the head); ``zrange`` fixes the colour scale."""
        return self._add(F.layer_head(title, z, caption, zrange), title, (f"{field}#1", f"{field}#0"))

    def add_line(self, title: str, xs: Any, ys_by_name: dict, x_title: str = "", y_title: str = "",
                 caption: str = "", log_y: bool = False, fields: Fields = None) -> "Report":
        """Named series over a shared x axis."""
        return self._add(F.lines(title, xs, ys_by_name, x_title, y_title, caption, log_y), title, fields)

    def add_bars(self, title: str, categories: Sequence | None, values_by_name: dict,
                 x_title: str = "", y_title: str = "", caption: str = "", fields: Fields = None) -> "Report":
        """Grouped bars: one group per category, one colour per named series."""
        return self._add(F.grouped_bars(title, categories, values_by_name, x_title, y_title, caption), title, fields)

    def add_graph(self, title: str, nodes: list[dict], edges: list[dict], caption: str = "",
                  fields: Fields = None) -> "Report":
        """A circuit graph: ``nodes`` (id, label, layer, optional score/kind), ``edges`` (source, target, weight)."""
        return self._add(F.circuit_graph(title, nodes, edges, caption), title, fields)

    def add_figure(self, fig: Any, caption: str = "", title: str = "", fields: Fields = None) -> "Report":
        """Any plotly figure (``go.Figure`` or its dict form).

        ``fields``: ``(x_field, y_field)``, the result fields the x and y axes show (see
        :attr:`interp.results.Result.axes`); recorded in the figure's ``layout.meta`` so a test can
        check each axis title against what the result type declares, independently of this code.
        """
        if isinstance(fig, F.Figure):
            fig, caption, n_bad = fig.fig, caption or fig.caption, fig.n_nonfinite
        elif isinstance(fig, (dict, go.Figure)):  # built by hand: a copy gets the report's look
            fig, n_bad = go.Figure(fig), 0
            fig.update_layout(template=F.TEMPLATE, height=fig.layout.height or 380,
                              margin={k: v for k, v in {"l": 60, "r": 20, "t": 30, "b": 50}.items()
                                      if getattr(fig.layout.margin, k) is None})
        else:
            raise ValueError(f"add_figure expects a plotly Figure, got {type(fig).__name__}")
        title = title or fig.layout.title.text or f"Figure {self._n_fig + 1}"
        if not caption:
            kinds = sorted({tr.type for tr in fig.data})
            caption = f"{title}: {len(fig.data)} trace(s) of type {', '.join(kinds) or 'none'}."
        return self._add(F.Figure(fig, caption, n_bad), title, fields)

    def _add(self, f: F.Figure, title: str, fields: Fields = None) -> "Report":
        self._n_fig += 1
        fig = go.Figure(f.fig)  # a copy: what the report changes stays out of the caller's figure
        if fig.layout.title.text:  # the section heading shows the title; do not repeat it inside the plot
            title = fig.layout.title.text
            fig.update_layout(title=None, margin={"t": 30})
        if fields:
            x, y = fields  # (x_field, y_field): unpacking refuses any other length
            fig.update_layout(meta={"fields": {"x": x, "y": y}})
        return self._append("figure", title, _script_json(fig.to_json()),
                            f"<b>Figure {self._n_fig}.</b> {html.escape(f.caption)}", f.n_nonfinite)

    def add_token_attributions(self, title: str, tokens: Sequence[str], scores: Any,
                               caption: str = "") -> "Report":
        """A prompt's tokens coloured by score (diverging scale, hover for exact values)."""
        v = token_view(tokens, scores, title, caption)
        return self._append("tokens", title, v.html, html.escape(v.caption), v.n_nonfinite)

    def add_attention(self, title: str, view, caption: str = "", layer: int | None = None,
                      head: int = 0) -> "Report":
        """An attention-pattern viewer (:class:`interp.reports.attention.AttentionPatterns`):
        layer and head selectors, the token x token pattern, hover a token for its row and column."""
        cap = caption or (f"Attention patterns of one prompt ({len(view.tokens)} tokens, layers "
                          f"{view.layers[0]}-{view.layers[-1]}): pick a layer and head; hover a token or a cell "
                          "to shade where that token attends (first strip) and which tokens attend to it (second).")
        return self._append("attention", title, view.html(layer, head), html.escape(cap))

    def add_table(self, title: str, rows: Sequence[dict] | dict, caption: str = "") -> "Report":
        """A table from a list of dicts (columns = union of keys), or a dict as key/value rows."""
        if isinstance(rows, dict):
            rows = [{"key": k, "value": v} for k, v in rows.items()]
        if not isinstance(rows, (list, tuple)) or not all(isinstance(r, dict) for r in rows):
            raise ValueError(f"{title}: add_table expects a list of dicts (one per row)")
        body, bad = table_html(list(rows))
        cap = caption or f"{len(rows)} row{'s' if len(rows) != 1 else ''}."
        cap += F.gap_note(bad, "cells").replace("shown as gaps", "shown in red")
        return self._append("table", title, body, html.escape(cap), bad)

    # ------------------------------------------------------------------ output
    def _run_html(self) -> str:
        meta = dict(self.meta)
        model = meta.pop("model", None) or self.config.get("model")
        lines = [f"<b>Model:</b> {html.escape(str(model)) if model else '<i>not recorded</i>'}"]
        for key in ("task", "method", "created", "host"):
            if key in meta:
                lines.append(f"<b>{key.capitalize()}:</b> {html.escape(str(meta.pop(key)))}")
        parts = ["<p>" + "<br>".join(lines) + "</p>"]
        timings = meta.pop("timings", None) or meta.pop("seconds", None)
        versions = meta.pop("versions", None) or {}
        versions = ({str(k): str(x) for k, x in versions.items()} if isinstance(versions, dict)
                    else {"recorded": str(versions)})

        def pairs(title: str, d: dict, key: str = "field", value: str = "value") -> str:
            return f"<h3>{title}</h3>" + table_html([{key: k, value: v} for k, v in flatten(d).items()])[0]

        parts.append(pairs("Configuration", self.config) if self.config
                     else "<p><i>No run configuration was recorded.</i></p>")
        if isinstance(timings, dict) and timings:
            parts.append(pairs("Timings (seconds)", timings, "step", "seconds"))
        elif timings is not None:
            parts.append(f"<p><b>Time:</b> {format_value(timings)[0]} s</p>")
        gen = {k: str(v) for k, v in _versions().items()}
        if versions:
            rows = [{"package": k, "run": versions.get(k, ""), "report": gen.get(k, "")}
                    for k in {**versions, **gen}]
            note = '"run": versions recorded by the run; "report": versions that generated this file.'
        else:  # no empty "run" column: say the run recorded none
            rows = [{"package": k, "report": v} for k, v in gen.items()]
            note = "The run recorded no versions; these generated this file."
        parts.append("<h3>Versions</h3>" + table_html(rows)[0] + f'<p class="caption">{note}</p>')
        if meta:
            parts.append(pairs("Other run information", meta))
        return "".join(parts)

    def _toc_html(self) -> str:
        items = ['<li><a href="#notes">Notes on the data</a></li>'] if self.notes else []
        close = ""  # closes the open group's list before the next group and before the provenance
        for s in self.sections:
            if s.kind == "text" or not s.title:
                continue
            link = f'<a href="#{s.anchor}">{html.escape(s.title)}</a>'
            if s.kind == "group":
                items.append(f"{close}<li>{link}<ol>")
                close = "</ol></li>"
            else:
                items.append(f"<li>{link}</li>")
        items.append(f'{close}<li><a href="#run">Method and provenance: configuration, model, versions, '
                     'timings</a></li>')
        html_items = "".join(items).replace("<ol></ol>", "")
        return (f'<nav class="toc" id="contents"><details{"" if self.summary else " open"}><summary><b>Contents</b>'
                f'</summary><ol>{html_items}</ol></details></nav>')

    def _section_html(self, s: Section) -> str:
        if s.kind == "group":
            return f'<h2 id="{s.anchor}">{html.escape(s.title)}</h2>{s.body}'
        if s.kind == "text":
            return f'<div class="text" id="{s.anchor}">{s.body}</div>'
        head = f'<h3 id="{s.anchor}">{html.escape(s.title)}</h3>' if s.title else ""
        if s.kind == "figure":
            fid = f"fig-{s.anchor}"
            inner = (f'<div class="interp-plot" id="{fid}"></div>'
                     f'<script type="application/json" id="{fid}-data">{s.body}</script>')
        else:
            inner = s.body
        return f'{head}<div class="block">{inner}<p class="caption">{s.caption}</p></div>'

    def _summary_html(self) -> str:
        if not self.summary:
            return ""
        return f'<div class="summary" id="summary">{self._text_html(self.summary)}</div>'

    def _notes_html(self) -> str:
        if not self.notes:
            return ""
        return ('<div class="notes" id="notes"><b>Notes on the data</b><ul>'
                + "".join(f"<li>{html.escape(n)}</li>" for n in self.notes) + "</ul></div>")

    def to_html(self) -> str:
        """The whole report as one HTML document (plotly.js inlined once if there are figures)."""
        js = f"<script>{plotly_js()}</script>" if self._n_fig else ""
        now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        body = "\n".join(self._section_html(s) for s in self.sections)
        return (
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{html.escape(self.title)}</title><style>{CSS}</style>"
            f"<script>{_HEAD_SCRIPT}</script>{js}</head><body>"
            f"<h1>{html.escape(self.title)}</h1>"
            f"{self._summary_html()}"
            f'<div class="subtitle">Generated {now} by interp; {self._n_fig} interactive figure'
            f"{'s' if self._n_fig != 1 else ''} (hover for values, drag to zoom, double-click to reset). "
            "This file is self-contained and opens offline.</div>"
            f"{self._toc_html()}{self._notes_html()}\n{body}"
            f'<h2 id="run">Method and provenance</h2>{self._run_html()}'
            '<div id="interp-status" data-state="pending">Figures not drawn (JavaScript disabled?).</div>'
            f"<script>{_DRAW_SCRIPT % 'document.body'}</script></body></html>\n"
        )

    def fragment_html(self) -> str:
        """The report as an HTML fragment for a notebook output: summary, sections, provenance folded.

        Figures are drawn by a script scoped to this fragment.  The first fragment with figures in this
        Python session inlines plotly.js (about 4.8 MB), as plotly's own notebook mode does, so a notebook
        carries one copy and its HTML export opens offline.
        """
        root = f"interp-frag-{next(_FRAGMENTS)}"
        body = "\n".join(self._section_html(s._replace(anchor=f"{root}-{s.anchor}")) for s in self.sections)
        js = f"<script>{plotly_js()}</script>" if self._n_fig and F.plotly_js_once() else ""
        draw = f"<script>{_DRAW_SCRIPT % f'document.getElementById({root!r})'}</script>"
        return (f'<div class="interp-report" id="{root}"><style>{CSS.replace("body {", ".interp-report {")}</style>{js}'
                f"<h3>{html.escape(self.title)}</h3>{self._summary_html()}{self._notes_html()}{body}"
                f"<details><summary>Method and provenance</summary>{self._run_html()}</details>{draw}</div>")

    def write(self, path: str | Path) -> Path:
        """Write the standalone HTML file (parent folders are created) and return its path."""
        p = Path(path)
        if p.is_dir():
            raise ValueError(f"report path {p} is a directory; give a file name such as {p / 'report.html'}")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(self.to_html(), encoding="utf-8")
        return p

    def __repr__(self) -> str:
        return f"Report({self.title!r}, {len(self.sections)} sections, {self._n_fig} figures)"


def render_results(results: dict | str | Path) -> Report:
    """The report of a results dict or ``results.json`` path (a folder means its ``results.json``): the typed
    result's own ``report()``, dispatched on its ``kind`` (:func:`interp.results.load_result`).

    There is no shape-guessing fallback: an unknown kind, no kind, a newer schema, or a file of a known kind
    without ``schema_version`` is a :class:`interp.results.ResultSchemaError` naming the known kinds; a
    missing, empty, non-UTF-8 or malformed file is a ``ValueError`` / ``FileNotFoundError`` saying which.
    Cost: one JSON parse of the file and the result's own report.
    """
    return load_result(results).report()
