"""A report opened in a real headless Chromium (Debian's ``chromium`` package): every plotly
figure must draw, no script error may occur, and a screenshot is saved.

How: ``chromium --headless --dump-dom`` with a virtual-time budget runs the page's scripts to
completion and prints the DOM.  The report's own draw script records the outcome in
``#interp-status`` (figures, figures drawn, errors caught by ``window.onerror`` /
``unhandledrejection``); independently of that script, the test checks that each figure's
``div`` now holds plotly's ``svg.main-svg`` and the trace layers for its type.  A second run
takes ``--screenshot``; its pixels must contain the heatmap's saturated red and blue.  A
third run feeds a deliberately broken page, so the checks are shown to fail when they should.

Set ``INTERP_SCREENSHOT_DIR`` to keep the screenshot; ``INTERP_CHROMIUM`` to use another binary.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest

from interp.reports import Report

CHROMIUM = (os.environ.get("INTERP_CHROMIUM") or shutil.which("chromium")
            or shutil.which("chromium-browser") or shutil.which("google-chrome"))
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium not found: install Debian's package "
                             "(apt-get update && apt-get install -y chromium); CI installs it")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--virtual-time-budget=20000", "--enable-logging=stderr", "--v=0"]
N_FIGURES = 7


def chromium(page: Path, workdir: Path, *extra: str) -> subprocess.CompletedProcess:
    """Run headless Chromium on ``page`` with a fresh profile folder."""
    profile = tempfile.mkdtemp(prefix="profile-", dir=workdir)
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *extra, page.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"chromium failed ({proc.returncode}): {proc.stderr[-2000:]}"
    return proc


def status_of(dom: str) -> dict:
    m = re.search(r'<div id="interp-status"([^>]*)>([^<]*)</div>', dom)
    assert m, "the report's status element is missing from the DOM"
    attrs = dict(re.findall(r'data-([a-z]+)="([^"]*)"', m.group(1)))
    return {**attrs, "text": m.group(2)}


def plot_divs(dom: str) -> dict[str, str]:
    """The inner DOM of each figure div, by id."""
    starts = [(m.start(), m.group(1)) for m in re.finditer(r'<div class="interp-plot[^"]*" id="([^"]+)"', dom)]
    ends = [s for s, _ in starts[1:]] + [len(dom)]
    return {fid: dom[s:e] for (s, fid), e in zip(starts, ends)}


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


def test_cli_report_from_results_json_draws(tmp_path, capsys):
    """The product path: results.json -> ``interp report`` -> a page that draws in Chromium."""
    import json

    from interp.cli.main import main as cli
    from test_reports_render import circuit_results

    src = tmp_path / "results.json"
    src.write_text(json.dumps(circuit_results()))
    assert cli(["report", str(src), "--out", str(tmp_path / "report.html"), "--json"]) == 0
    n = json.loads(capsys.readouterr().out)["figures"]
    proc = chromium(tmp_path / "report.html", tmp_path, "--dump-dom")
    st = status_of(proc.stdout)
    assert st["state"] == "ok" and st["figures"] == st["drawn"] == str(n) and n >= 8, st
    assert all(inner.count('class="main-svg"') >= 2 for inner in plot_divs(proc.stdout).values())
