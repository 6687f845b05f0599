"""The report builder, figure helpers and token view, checked against their inputs.

Each test reads the written HTML back (the figure JSON blocks, the token spans) and compares
it with the numbers that went in, or with an independent computation (scipy's Pearson r).
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import plotly
import plotly.graph_objects as go
import pytest
import torch
from scipy.stats import pearsonr

from interp.reports import Report, token_view
from interp.results import pearson
from interp.reports import figures as F

FIG_RE = re.compile(r'<script type="application/json" id="(fig-[^"]+)-data">(.*?)</script>', re.S)


def figures_in(html: str) -> dict[str, dict]:
    """Every embedded figure spec of a report, by div id."""
    return {fid: json.loads(body) for fid, body in FIG_RE.findall(html)}


def test_standalone_html_inlines_plotly_once(tmp_path):
    r = Report("Demo", config={"model": "tiny-llama", "n": 3}, meta={"versions": {"torch": "2.13.0"}})
    for i in range(4):
        r.add_heatmap(f"map {i}", np.arange(6.0).reshape(2, 3) - i, ["a", "b", "c"], ["x", "y"])
    r.add_line("curve", [0, 1, 2], {"loss": [3.0, 2.0, 1.0]}, "step", "loss")
    path = r.write(tmp_path / "sub" / "report.html")
    html = path.read_text(encoding="utf-8")
    bundle = plotly.offline.get_plotlyjs()
    assert html.count(bundle) == 1                       # the library, once, not per figure
    assert html.count(bundle[:200]) == 1
    assert len(figures_in(html)) == 5
    assert html.count('class="interp-plot"') == 5
    assert not re.search(r'<script[^>]+src=', html)      # nothing fetched: opens offline
    assert "cdn.plot.ly" not in html.replace(bundle, "")
    # title, contents with a link to every figure, run info
    assert "<title>Demo</title>" in html and 'id="contents"' in html
    for i in range(4):
        assert f'href="#map-{i}"' in html and f'id="map-{i}"' in html
    assert "tiny-llama" in html and "2.13.0" in html and plotly.__version__ in html


def test_report_without_figures_has_no_plotly():
    r = Report("Only text").add_text("# Heading\nSome *words*.").add_table("t", [{"a": 1}])
    assert plotly.offline.get_plotlyjs()[:200] not in r.to_html()


def test_heatmap_values_nan_gaps_and_colour_scale():
    z = [[1.0, -2.0, float("nan")], [float("inf"), 0.5, 3.0]]
    r = Report("nan").add_heatmap("scores", z, ["h0", "h1", "h2"], ["l0", "l1"])
    html = r.to_html()
    (spec,) = figures_in(html).values()
    trace = spec["data"][0]
    assert trace["type"] == "heatmap"
    assert trace["z"] == [[1.0, -2.0, None], [None, 0.5, 3.0]]   # NaN and inf become gaps
    assert trace["x"] == ["h0", "h1", "h2"] and trace["y"] == ["l0", "l1"]
    assert trace["zmid"] == 0.0                                   # both signs: diverging around 0
    assert r.notes == ["scores: 2 NaN/inf values shown as gaps."]
    assert "2 of the cells are NaN or infinite" in html
    only_pos = figures_in(Report("p").add_heatmap("p", [[1, 2], [3, 4]]).to_html())
    assert "zmid" not in next(iter(only_pos.values()))["data"][0]   # sequential scale


def test_repeated_labels_stay_separate_cells():
    (spec,) = figures_in(Report("t").add_heatmap("h", [[1.0, 2.0, 3.0]], [" Mary", " and", " Mary"], ["L0"]).to_html()).values()
    assert spec["data"][0]["x"] == ["0  Mary", "1  and", "2  Mary"]


def test_accepts_tensors_arrays_lists_alike():
    base = [[0.25, -1.5], [2.0, 4.0]]
    zs = [base, np.array(base), torch.tensor(base), torch.tensor(base, dtype=torch.bfloat16)]
    specs = [next(iter(figures_in(Report("t").add_heatmap("h", z).to_html()).values())) for z in zs]
    for s in specs:
        assert s["data"][0]["z"] == base


def test_all_nan_heatmap_does_not_crash():
    r = Report("all nan").add_heatmap("empty", np.full((2, 2), np.nan))
    assert "All values are NaN" in r.to_html()
    assert r.notes == ["empty: 4 NaN/inf values shown as gaps."]


def test_line_and_bars_keep_values():
    r = Report("lines")
    r.add_line("curves", [1, 2, 3], {"a": [1.0, float("nan"), 3.0], "b": torch.tensor([0.0, 1.0, 2.0])}, "step", "y")
    r.add_bars("bars", ["resid", "attn", "mlp"], {"atp": [0.7, 0.9, 0.2], "relp": [0.9, 0.95, 0.99]})
    specs = list(figures_in(r.to_html()).values())
    a, b = specs[0]["data"]
    assert a["name"] == "a" and a["y"] == [1.0, None, 3.0] and a["x"] == [1.0, 2.0, 3.0]
    assert b["y"] == [0.0, 1.0, 2.0]
    atp, relp = specs[1]["data"]
    assert atp["type"] == "bar" and atp["x"] == ["resid", "attn", "mlp"] and relp["y"] == [0.9, 0.95, 0.99]


def test_faithfulness_curve_marks_target_and_circuit():
    f = F.faithfulness_curve([1, 2, 4], [0.2, 0.6, 0.9], target=0.8, chosen=4, total=20)
    shapes = f.fig.layout.shapes
    assert {s.y0 for s in shapes if s.y0 == s.y1} == {0.8}
    assert {s.x0 for s in shapes if s.x0 == s.x1} == {4}
    assert "4 of 20 components" in f.caption


def test_pearson_matches_scipy_and_scatter_uses_finite_pairs():
    """interp.results.pearson (the one Pearson) equals scipy's; the method-vs-patching scatter computes it
    over the pairs where both scores are finite and says how many."""
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=50), rng.normal(size=50)
    y = 0.6 * x + y
    # float64 Pearson vs scipy's: 50 terms, ~50 eps64
    assert pearson(x, y) == pytest.approx(pearsonr(x, y).statistic, abs=1e-12)
    x2, y2 = x.copy(), y.copy()
    x2[3], y2[7] = np.nan, np.inf
    keep = np.ones(50, bool)
    keep[[3, 7]] = False
    title = F.method_vs_patching("t", x2, y2, "m").fig.layout.title.text
    assert f"Pearson r = {pearsonr(x[keep], y[keep]).statistic:.3f}, n = 48" in title  # the title's 3 decimals
    assert math.isnan(pearson([1, 1, 1], [1, 2, 3]))   # constant input: undefined, not a crash
    assert "r = undefined, n = 3" in F.method_vs_patching("t", [1, 1, 1], [1, 2, 3], "m").fig.layout.title.text


def test_method_vs_patching_scatter_reports_r():
    p = np.array([[1.0, 2.0], [3.0, -1.0]])
    m = 2 * p + 0.1
    f = F.method_vs_patching("heads", p, m, "atp", ["L0H0", "L0H1", "L1H0", "L1H1"])
    assert "Pearson r = 1.000" in f.fig.layout.title.text
    pts = f.fig.data[0]
    assert list(pts.x) == p.ravel().tolist() and list(pts.y) == m.ravel().tolist()
    assert list(pts.text) == ["L0H0", "L0H1", "L1H0", "L1H1"]


def test_circuit_graph_layout_by_layer():
    nodes = [{"id": "a", "label": "L0H1", "layer": 0, "score": 1.0},
             {"id": "b", "label": "MLP1", "layer": 1, "score": -0.5, "kind": "mlp"},
             {"id": "c", "label": "L1H2", "layer": 1},
             {"id": "out", "label": "logits", "layer": 3}]
    edges = [{"source": "a", "target": "b", "weight": 2.0}, {"source": "b", "target": "out", "weight": -1.0},
             {"source": "a", "target": "c", "weight": 0.5}]
    f = F.circuit_graph("g", nodes, edges)
    node_traces = [t for t in f.fig.data if t.mode == "markers+text"]  # scored nodes; unscored ones drawn grey
    x = {k: v for t in node_traces for k, v in zip(t.text, t.x)}
    y = {k: v for t in node_traces for k, v in zip(t.text, t.y)}
    assert x == {"L0H1": 0, "MLP1": 1, "L1H2": 1, "logits": 3}
    assert [t.marker.color for t in node_traces][0] == "#d9d9d9"  # the nodes without a score
    assert y["MLP1"] != y["L1H2"]                           # two nodes of a layer do not overlap
    lines = f.fig.data[:3]
    assert [ln.line.color for ln in lines] == ["#b2182b", "#2166ac", "#b2182b"]    # sign -> colour
    assert lines[0].line.width > lines[1].line.width > lines[2].line.width          # |weight| -> width
    assert f.n_nonfinite == 0                              # a node without a score is not a NaN


@pytest.mark.parametrize("nodes,edges,msg", [
    ([], [], "non-empty"),
    ([{"id": "a"}], [], "'id' and 'layer'"),
    ([{"id": "a", "layer": 0}, {"id": "a", "layer": 1}], [], "duplicate node id 'a'"),
    ([{"id": "a", "layer": 0}], [{"source": "a", "target": "zz", "weight": 1}], "target 'zz' is not a node id"),
    ([{"id": "a", "layer": "first"}], [], "non-numeric layer"),
])
def test_circuit_graph_bad_input(nodes, edges, msg):
    with pytest.raises(ValueError, match=re.escape(msg)):
        Report("g").add_graph("g", nodes, edges)


def test_token_view_colours_escaping_and_whitespace():
    toks = ["<bos>", "When", " Mary", "\n", "<script>alert(1)</script>", "\t", " ", "&"]
    scores = [0.0, 0.5, 2.0, -2.0, 1.0, float("nan"), 0.0, -1.0]
    v = token_view(toks, scores)
    spans = re.findall(r'<span class="(tok[^"]*)" title="([^"]*)" data-score="([^"]*)"(?: style="([^"]*)")?>', v.html)
    assert len(spans) == len(toks)
    styles = [s[3] for s in spans]
    assert styles[2] == "background:rgb(178,24,43);color:#fff"     # +max: full red
    assert styles[3] == "background:rgb(33,102,172);color:#fff"     # -max: full blue
    assert styles[0] == "background:rgb(247,247,247);color:#111"    # zero: white
    assert styles[1] == "background:rgb(230,191,196);color:#111"    # 0.5/2: a quarter of the way to red
    assert "tok-nan" in spans[5][0] and styles[5] == ""
    assert "tok-ws" in spans[6][0] and "tok-ws" in spans[3][0] and "tok-ws" not in spans[2][0]
    assert "<script>" not in v.html and "&lt;script&gt;alert(1)&lt;/script&gt;" in v.html
    assert "&amp;" in v.html
    assert "↵</span></span><br>" in v.html                          # newline: mark + real break
    assert "#2 &#x27; Mary&#x27;  score 2" in spans[2][1]            # hover: index, repr, value
    assert v.n_nonfinite == 1 and "1 of the scores is NaN" in v.caption
    assert v._repr_html_().startswith("<style>") and v.html in v._repr_html_()   # notebook display


@pytest.mark.parametrize("tokens,scores,msg", [
    (["a", "b"], [1.0], "2 tokens but 1 scores"),
    ("ab", [1.0, 2.0], "tokens must be a list"),
    (["a"], [[1.0]], "expected a 1-D array"),
    (["a", "b"], [1.0, "x"], "expected numbers"),
])
def test_token_view_bad_input(tokens, scores, msg):
    with pytest.raises(ValueError, match=re.escape(msg)):
        Report("t").add_token_attributions("t", tokens, scores)


@pytest.mark.parametrize("call,msg", [
    (lambda r: r.add_heatmap("h", [[1, 2], [3]]), "ragged"),
    (lambda r: r.add_heatmap("h", [1, 2]), "expected a 2-D array"),
    (lambda r: r.add_heatmap("h", [[1, 2]], x_labels=["a"]), "1 labels for an axis of length 2"),
    (lambda r: r.add_heatmap("h", [["a", "b"]]), "expected numbers"),
    (lambda r: r.add_heatmap("h", [[1.0, "2"]]), "expected numbers"),  # a number as text is not parsed
    (lambda r: r.add_line("l", [0, 1], {"a": [1, 2, 3]}), "series 'a' has 3 points but xs has 2"),
    (lambda r: r.add_line("l", [0, 1], {}), "non-empty dict"),
    (lambda r: r.add_table("t", [1, 2]), "list of dicts"),
    (lambda r: r.add_figure("not a figure"), "expects a plotly Figure"),
    (lambda r: r.add_text(3), "expects a string"),
])
def test_bad_input_errors_name_the_problem(call, msg):
    with pytest.raises(ValueError, match=re.escape(msg)):
        call(Report("bad"))


def test_bad_report_arguments(tmp_path):
    with pytest.raises(ValueError, match="title must be a non-empty string"):
        Report("  ")
    with pytest.raises(ValueError, match="config must be a dict or a dataclass"):
        Report("x", config=[1, 2])
    with pytest.raises(ValueError, match="is a directory"):
        Report("x").write(tmp_path)


def test_dataclass_config_and_tables():
    from dataclasses import dataclass

    @dataclass
    class Cfg:
        model: str = "tiny-gpt2"
        steps: int = 10

    r = Report("cfg", config=Cfg(), meta={"timings": {"patch": 1.5}})
    r.add_table("rows", [{"a": 1, "b": float("nan")}, {"a": 2.5, "c": "<b>x</b>"}])
    html = r.to_html()
    assert "tiny-gpt2" in html and ">steps<" in html and ">patch<" in html
    table = html[html.index('id="rows"'):]
    assert "<th>a</th><th>b</th><th>c</th>" in table
    assert "&lt;b&gt;x&lt;/b&gt;" in table and '<span class="nan">nan</span>' in table
    assert r.notes == ["rows: 1 NaN/inf value shown as gaps."]


def test_add_figure_keeps_user_figure_and_caption():
    fig = go.Figure(go.Scatter(x=[1, 2], y=[3, 4]), layout={"title": {"text": "my fig"}})
    html = Report("f").add_figure(fig, caption="Two points.").to_html()
    (spec,) = figures_in(html).values()
    assert spec["data"][0]["y"] == [3, 4]
    assert 'id="my-fig"' in html and "Two points." in html


def test_markdown_escapes_and_formats():
    out = Report._text_html("# Title\n\nSome **bold** and `<code>` <script>x</script>\n\n- one\n- two\n\n```\na < b\n```"
                            "\n\n[x](javascript:alert(1)) [y](https://a.b)")
    assert "<h3>Title</h3>" in out and "<strong>bold</strong>" in out
    assert "<code>&lt;code&gt;</code>" in out and "&lt;script&gt;" in out and "<script>" not in out
    assert "<ul>\n<li>one</li>\n<li>two</li>\n</ul>" in out
    assert "<pre><code>a &lt; b\n</code></pre>" in out
    assert '<a href="https://a.b">y</a>' in out and 'href="javascript:' not in out  # no script links


def test_figure_json_cannot_close_the_script_element():
    html = Report("x").add_heatmap("h", [[1.0]], x_labels=["</script><script>alert(1)</script>"], y_labels=["y"]).to_html()
    (spec,) = figures_in(html).values()
    assert spec["data"][0]["x"] == ["</script><script>alert(1)</script>"]
    assert "<script>alert(1)" not in html


def test_notebook_fragments_carry_plotly_js_once(monkeypatch):
    """A notebook carries one copy of plotly.js: the session's first fragment with figures inlines it, later
    fragments (and figure displays) do not; a fragment without figures never does."""
    import itertools

    monkeypatch.setattr(F, "_PLOTLY_JS_CALLS", itertools.count())  # a fresh Python session
    bundle = plotly.offline.get_plotlyjs()[:200]
    plain = Report("text").add_text("no figures").fragment_html()
    frags = [Report("f").add_line("l", [0, 1], {"a": [1.0, 2.0]}).fragment_html() for _ in range(2)]
    shown = F.lines("l", [0, 1], {"a": [1.0, 2.0]})._repr_mimebundle_()["text/html"]
    assert [bundle in h for h in (plain, *frags, shown)] == [False, True, False, False]


def test_report_of_a_result_takes_its_head():
    """Report.of(result, title): the result's summary, its config unless one is given, and as meta its model,
    task and versions fields (the ones it sets), its meta dict, then the keywords."""
    class Res:  # the fields a typed result may carry; Report.of reads only these and summary()
        model, task, versions = "tiny-gpt2", "", {"torch": "9.9"}
        config = {"n": 3}
        meta = {"seconds": 1.5, "model": "from-meta"}

        def summary(self):
            return "**3** of 12 heads."

    r = Report.of(Res(), "Heads", extra="x")
    assert (r.title, r.summary, r.config) == ("Heads", "**3** of 12 heads.", {"n": 3})
    assert r.meta == {"model": "from-meta", "versions": {"torch": "9.9"}, "seconds": 1.5, "extra": "x"}
    assert Report.of(Res(), "Heads", config={"k": 1}).config == {"k": 1}
    assert "from-meta" in r.to_html() and "**3**" not in r.to_html()
