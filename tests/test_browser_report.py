"""Reports opened in a real headless Chromium (Debian's ``chromium`` package): every plotly figure
must draw, no script error may occur, every axis is titled as the result type declares its field.

How: ``chromium --headless --dump-dom`` with a virtual-time budget runs the page's scripts to
completion and prints the DOM (tests/browser.py).  The report's own draw script records the outcome
in ``#interp-status``; independently of that script, the test checks that each figure's ``div`` now
holds plotly's ``svg.main-svg`` and the trace layers for its type.  A screenshot's pixels must
contain the heatmap's saturated red and blue, and a deliberately broken page must fail the checks.
Then each typed result kind from a real run on a tiny model goes through ``check_result_report``.

Set ``INTERP_SCREENSHOT_DIR`` to keep the screenshots; ``INTERP_CHROMIUM`` to use another binary.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest
from scipy.stats import pearsonr

from browser import check_result_report, chromium, needs_chromium, plot_divs, report_test, status_of
from interp.reports import Report
from test_reports import figures_in

pytestmark = needs_chromium
N_FIGURES = 7


def build_report() -> Report:
    rng = np.random.default_rng(0)
    heads = rng.normal(size=(6, 8))
    heads[0, 0], heads[5, 7] = 4.0, -4.0           # saturated red and blue cells for the pixel check
    heads[2, 3] = np.nan                           # a gap
    r = Report("Browser check: IOI on a toy model", config={"model": "tiny-llama", "n_prompts": 8},
               meta={"versions": {"torch": "2.13.0"}, "timings": {"patch": 2.5, "atp": 0.1}})
    r.add_text("## What this is\nA report with **every** figure type, rendered in headless Chromium.")
    r.add_section("Scores")
    r.add_heatmap("Attention heads: patching", heads, [f"H{i}" for i in range(8)], [f"L{i}" for i in range(6)],
                  x_title="head", y_title="layer")
    r.add_bars("MLP per layer", [f"L{i}" for i in range(6)], {"patch": rng.normal(size=6), "atp": rng.normal(size=6)},
               "layer", "score")
    r.add_line("Training curve", list(range(50)), {"loss": np.exp(-np.arange(50) / 10), "l0": np.linspace(1, 0.2, 50)},
               "step", "value")
    from interp.reports.figures import faithfulness_curve, method_vs_patching
    r.add_figure(faithfulness_curve([1, 2, 4, 8, 16], [0.1, 0.5, 0.8, 0.9, 1.0], target=0.8, chosen=4, total=48))
    r.add_figure(method_vs_patching("Heads: atp vs patching", heads, heads * 0.9 + 0.1, "atp"))
    r.add_graph("Circuit", [{"id": "a", "label": "L0H1", "layer": 0, "score": 1.0},
                            {"id": "b", "label": "MLP2", "layer": 2, "score": -0.4},
                            {"id": "c", "label": "L4H3", "layer": 4, "score": 0.7},
                            {"id": "o", "label": "logits", "layer": 6}],
                [{"source": "a", "target": "b", "weight": 0.8}, {"source": "b", "target": "c", "weight": -0.3},
                 {"source": "c", "target": "o", "weight": 1.2}, {"source": "a", "target": "c", "weight": 0.2}])
    r.add_figure(go.Figure(go.Scatter(x=[0, 1, 2], y=[1, 0, 1], mode="lines")), caption="A user-made figure.")
    r.add_section("Example prompt")
    r.add_token_attributions("When Mary and John went to the store", ["<bos>", "When", " Mary", " and", " John",
                             "\n", "<b>went</b>", " to", "\t", " the", " store"],
                             [0.0, 0.1, 2.0, -0.2, -1.5, 0.05, 0.3, 0.0, float("nan"), 0.1, 0.4])
    r.add_table("Head roles", [{"head": "L4H3", "role": "name mover"}, {"head": "L0H1", "role": "duplicate token"}])
    assert sum(s.kind == "figure" for s in r.sections) == N_FIGURES
    return r


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    d = tmp_path_factory.mktemp("browser")
    return build_report().write(d / "report.html"), d


def test_every_figure_draws_without_script_errors(written):
    page, d = written
    proc = chromium(page, d, "--dump-dom")
    dom = proc.stdout
    st = status_of(dom)
    assert st["state"] == "ok", st
    assert st["figures"] == st["drawn"] == str(N_FIGURES) and st["errors"] == "0", st
    divs = plot_divs(dom)
    assert len(divs) == N_FIGURES
    for fid, inner in divs.items():                       # independent of the page's own count
        assert "js-plotly-plot" in dom[dom.index(f'id="{fid}"') - 60:dom.index(f'id="{fid}"')]
        assert inner.count('class="main-svg"') >= 2, f"{fid} did not draw"
    kinds = {fid: set(re.findall(r'<g class="(hm|trace bars|trace scatter)[ "]', inner)) for fid, inner in divs.items()}
    assert "hm" in kinds["fig-attention-heads-patching"]
    assert "trace bars" in kinds["fig-mlp-per-layer"]
    assert "trace scatter" in kinds["fig-training-curve"] and "trace scatter" in kinds["fig-circuit"]
    assert "Uncaught" not in proc.stderr                  # nothing reached the console either
    # the token view is plain HTML: escaped, with its newline mark
    assert "&lt;b&gt;went&lt;/b&gt;" in dom and "↵" in dom


def test_screenshot_shows_the_figures(written):
    page, d = written
    shot = d / "report.png"
    chromium(page, d, f"--screenshot={shot}", "--window-size=1280,2600")
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1280, 2600)
    keep = os.environ.get("INTERP_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / "report.png")
    print(f"screenshot: {shot}")
    pil = pytest.importorskip("PIL.Image", reason="Pillow (via captum -> matplotlib) checks pixel colours")
    px = np.asarray(pil.open(shot).convert("RGB")).reshape(-1, 3).astype(int)
    near = lambda rgb: int((np.abs(px - np.array(rgb)).sum(axis=1) < 30).sum())  # noqa: E731
    assert near((103, 0, 31)) > 500, "the heatmap's saturated red cell is not on the screenshot"
    assert near((5, 48, 97)) > 500, "the heatmap's saturated blue cell is not on the screenshot"


def test_checks_fail_on_a_broken_page(written):
    """The same checks report a figure whose data is corrupt and a script that throws."""
    page, d = written
    html = page.read_text(encoding="utf-8")
    start = html.index('id="fig-mlp-per-layer-data">') + len('id="fig-mlp-per-layer-data">')
    html = html[:start] + "{not json" + html[html.index("</script>", start):]
    html = html.replace('<div id="interp-status"',
                        "<script>throw new Error('boom from the test')</script><div id=\"interp-status\"", 1)
    bad = d / "broken.html"
    bad.write_text(html, encoding="utf-8")
    proc = chromium(bad, d, "--dump-dom")
    st = status_of(proc.stdout)
    assert st["state"] == "error" and st["drawn"] == str(N_FIGURES - 1) and st["errors"] == "2", st
    assert "fig-mlp-per-layer" in st["text"] and "JSON" in st["text"] and "boom from the test" in st["text"]
    assert "Uncaught Error: boom from the test" in proc.stderr


@report_test("attribution")
def test_attribution_report(tiny_gpt2, tmp_path):
    from interp.attribution import attribution_patching
    from interp.tasks import make_task

    res = attribution_patching(tiny_gpt2, make_task("ioi", tiny_gpt2, n=2, seed=0), per_position=("resid",))
    check_result_report(res, tmp_path)
    figs = figures_in((tmp_path / "attribution.html").read_text())
    gap = res.metric_clean - res.metric_corrupt
    heads = figs["fig-attention-heads-atp"]["data"][0]["z"]   # the scores as a share of the gap
    assert np.allclose(heads, (res.scores["attn_head"] / gap).tolist(), rtol=1e-6)


@report_test("compare")
def test_compare_report(tiny_llama, tmp_path):
    from interp.attribution.components import TYPE_NAMES
    from interp.circuits.compare import compare_methods

    res = compare_methods(tiny_llama, "ioi", n=2, methods=("atp", "relp"))
    dom = check_result_report(res, tmp_path)
    html = (tmp_path / "compare.html").read_text()
    figs = figures_in(html)
    # the Pearson bars and every scatter's r are the r recomputed here (scipy) from the saved scores
    ref = res.scores["patch"].scores
    for m in ("atp", "relp"):
        for c in ("resid", "attn", "attn_head", "mlp"):
            want = pearsonr(ref[c].reshape(-1).double(), res.scores[m].scores[c].reshape(-1).double()).statistic
            assert res.pearson[m][c] == pytest.approx(want, abs=1e-9)
            assert f"{TYPE_NAMES[c][:1].upper() + TYPE_NAMES[c][1:]}: {m} vs patching (Pearson r = {want:.3f}" in html
    bars = figs["fig-pearson-r-with-activation-patching-by-method"]["data"]
    assert {t["name"]: t["y"] for t in bars} == {m: list(res.pearson[m].values()) for m in ("atp", "relp")}
    best = max(("atp", "relp"), key=lambda m: sum(res.pearson[m].values()))
    assert f"{best} agrees best with activation patching" in res.summary()
    assert dom.count("Wall time per method") >= 1 and html.count('id="wall-time-per-method') == 1  # once


@report_test("steering_comparison")
def test_steering_comparison_report(tiny_llama, tmp_path):
    from interp.steering import GrainsConfig, compare_methods, load_task

    res = compare_methods(tiny_llama, load_task("sentiment", n_build=2, n_eval=2), layer=0, kl_targets=(0.02,),
                          n_new=2, grains=GrainsConfig(steps=2))
    check_result_report(res, tmp_path)
    fig = figures_in((tmp_path / "steering_comparison.html").read_text())["fig-success-versus-kl-per-method"]
    assert {t["name"]: t["y"] for t in fig["data"]} == {
        "mean difference (CAA)": [p["delta"] for p in res.methods["mean_diff"]["points"]],
        "GrAInS": [p["delta"] for p in res.methods["grains"]["points"]]}


def test_report_test_fails_when_the_kind_is_not_checked():
    """The declaration cannot lie: a test declared for a kind that it never checks fails."""
    @report_test("compare")
    def declared_but_unchecked():
        pass

    with pytest.raises(AssertionError, match=r"declares report kind\(s\) \['compare'\] but did not check"):
        declared_but_unchecked()
