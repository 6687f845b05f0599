"""Notebook displays survive an HTML export and render offline: a kernel runs cells that end with an
interp figure, a typed result and a progress bar; nbconvert exports the executed notebook to HTML;
headless Chromium (no network) must draw every figure from the plotly.js the outputs carry."""

from __future__ import annotations

import re

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
nbconvert = pytest.importorskip("nbconvert")

CELLS = [
    "from interp.reports.figures import heatmap\nheatmap('h', [[1.0, -2.0], [0.5, 3.0]], x_title='head', y_title='layer')",
    "from interp.models import load_model\nfrom interp.attribution import attribution_patching\nfrom interp.tasks import Task\n"
    "m = load_model('tiny-llama')\nt = Task.from_prompts(m, ['abc defg', 'xyz wvut'], ['abd degg', 'xzz wvat'],"
    " answers=[('a', 'b'), ('c', 'd')])\nattribution_patching(m, t)",
    "from tqdm.auto import tqdm\nfor _ in tqdm(range(3)): pass",
]


def test_exported_notebook_draws_offline(tmp_path):
    from test_browser_report import chromium

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    outs = [o for c in nb.cells for o in c.outputs]
    text = "".join(str(o.get("text", "")) for o in outs)
    assert "IProgress not found" not in text and not any(o.get("output_type") == "error" for o in outs), text
    assert any("application/vnd.plotly.v1+json" in o.get("data", {}) for o in outs)  # JupyterLab's renderer
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outs)  # tqdm as a widget
    body, _ = nbconvert.HTMLExporter().from_notebook_node(nb)
    page = tmp_path / "export.html"
    page.write_text(body)
    assert not re.search(r"<script[^>]+src=\"https?://[^\"]*plot", body)  # no CDN: plotly.js travels inline
    dom = chromium(page, tmp_path, "--dump-dom").stdout
    # independent of any script's own bookkeeping: count plotly's drawn SVG roots per figure div
    n_plots = len(re.findall(r'class="[^"]*js-plotly-plot', dom))
    assert n_plots == 4, n_plots  # the heatmap, and the result's heads heatmap and resid and MLP bars
    assert dom.count('class="main-svg"') >= 2 * n_plots
