"""The typed circuit result: its edges against the edge scores they aggregate, its JSON round trip,
and its report's first screen in a real browser (summary sentence and circuit graph above the fold)."""

from __future__ import annotations

import json
import re

import pytest
from browser import report_test
import torch

from interp.circuits import run_circuit
from interp.circuits.result import CircuitResult, circuit_edges
from interp.models.hooks import component_label
from interp.results import load_result
from interp.tasks import make_task


@pytest.fixture(scope="module")
def tiny_run(tiny_llama, tmp_path_factory):
    out = tmp_path_factory.mktemp("circ")
    r = run_circuit(tiny_llama, "ioi", method="atp", n=3, heldout_n=4)
    r.write(out)
    return r, out


def test_edges_sum_the_receivers_of_each_member(tiny_llama):
    """A head's incoming edge adds the EAP scores of its q, k and v receivers (k/v of its KV group),
    read here one by one from edge_attribution by name."""
    from interp.attribution.edges import edge_attribution

    task = make_task("ioi", tiny_llama, n=3, seed=0)
    comps = ["blocks.0.attn.hook_z[1]", "blocks.1.attn.hook_z[2]", "blocks.0.hook_mlp_out"]
    edges, note = circuit_edges(tiny_llama, task, comps, top=1000)
    es = edge_attribution(tiny_llama, task, method="eap")
    got = {(e["source"], e["target"]): e["score"] for e in edges}
    group = tiny_llama.cfg.n_heads // (getattr(tiny_llama.cfg, "n_key_value_heads", None) or tiny_llama.cfg.n_heads)
    kv = 2 // group
    qkv = ["L1H2.q", f"L1KV{kv}.k", f"L1KV{kv}.v"] if group > 1 else ["L1H2.q", "L1H2.k", "L1H2.v"]
    want = sum(es.score("L0H1", r) for r in qkv)
    assert got[("L0H1", "L1H2")] == pytest.approx(want, rel=1e-12, abs=1e-12)  # same float64 sums, any order
    assert got[("MLP0", "logits")] == pytest.approx(es.score("MLP0", "logits"), rel=1e-12, abs=1e-12)
    assert got[("embed", "L0H1")] == pytest.approx(sum(es.score("embed", r.replace("L1", "L0").replace("H2", "H1")
                                                                   .replace(f"KV{kv}", f"KV{1 // group}"))
                                                       for r in qkv), rel=1e-12, abs=1e-12)
    assert all(s in {"L0H1", "L1H2", "MLP0", "embed"} and t in {"L0H1", "L1H2", "MLP0", "logits"} for s, t in got)
    # without members every sender -> component pair is summed the same way (as above: float64 sums)
    from interp.circuits import component_edges

    every = {(e["source"], e["target"]): e["score"] for e in component_edges(es)}
    assert all(every[k] == pytest.approx(v, rel=1e-12, abs=1e-12) for k, v in got.items()) and len(every) > len(got)
    one = torch.zeros_like(es.graph.mask)  # a mask picks the edges: here the single edge L0H1 -> L1H2.q
    one[es.graph.resolve(["L0H1->L1H2.q"])[0]] = True
    assert component_edges(es, one) == [{"source": "L0H1", "target": "L1H2", "score": es.score("L0H1", "L1H2.q")}]
    assert "EAP" in note


def test_round_trip_and_fields(tiny_run):
    r, out = tiny_run
    back = load_result(out / "results.json")
    assert isinstance(back, CircuitResult) and back.to_json() == r.to_json()
    assert back.scores.method == "atp" and torch.equal(back.patching.scores["attn_head"],
                                                       r.patching.scores["attn_head"])
    assert back.attention.patterns.shape[0] == 2 and back.components == r.components
    members = [n["id"] for n in r.graph()[0] if n["kind"] in ("head", "mlp")]
    assert [component_label(c) for c in r.components] == members
    # the graph shows importance: a member's node score is minus its (noising) score; the ends sit left and right
    nodes = {n["id"]: n for n in r.graph()[0]}
    assert [nodes[component_label(c["name"])]["score"] for c in r.circuit["components"]] == [
        -c["score"] for c in r.circuit["components"]]
    ends = {n for e in r.edges for n in (e["source"], e["target"])} & {"embed", "logits"}
    assert ends and all(nodes[n]["layer"] == {"embed": -1, "logits": 2}[n] for n in ends)  # tiny llama: 2 layers
    # the faithfulness curve is indexed by circuit size, never by layer
    assert r.curve["chosen"] == r.circuit["n_components"] and max(r.curve["n_components"]) == r.circuit["n_total"]


def test_patching_check_is_real_activation_patching(tiny_run, tiny_llama):
    """The report's ground truth column equals noising activation patching run here."""
    from interp.attribution import activation_patching

    r, _ = tiny_run
    task = make_task("ioi", tiny_llama, n=3, seed=0)
    ap = activation_patching(tiny_llama, task, ("attn_head", "mlp"), source="noise", progress=False)
    torch.testing.assert_close(r.patching.scores["attn_head"], ap.scores["attn_head"], rtol=0, atol=0)


def test_first_screen_shows_summary_and_graph(tiny_run, tmp_path):
    from test_browser_report import chromium

    _, out = tiny_run
    page = tmp_path / "report.html"
    probe = ("<script>setTimeout(function () { var s = document.getElementById('summary').getBoundingClientRect();"
             "var g = document.querySelector('div.interp-plot').getBoundingClientRect();"
             "document.body.setAttribute('data-probe', JSON.stringify({s: s.bottom, g: g.bottom, "
             "gid: document.querySelector('div.interp-plot').id}));}, 500);</script></body>")
    page.write_text((out / "report.html").read_text().replace("</body>", probe, 1))
    dom = chromium(page, tmp_path, "--dump-dom", "--window-size=1400,900").stdout
    got = json.loads(re.search(r"data-probe=\"([^\"]*)\"", dom).group(1).replace("&quot;", '"'))
    assert got["gid"] == "fig-the-circuit"
    assert got["s"] < 900 and got["g"] <= 900, got  # both end inside the first 1400 x 900 screen


@report_test("circuit")
def test_report_renders_with_declared_axes(tiny_run, tmp_path):
    """The circuit report in Chromium: every figure draws and every axis title is the one CircuitResult.axes
    declares for the field it shows (the graph's x is the layer, the curve's x the circuit size)."""
    from browser import check_result_report, needs_chromium

    if needs_chromium.args[0]:
        pytest.skip(needs_chromium.kwargs["reason"])
    r, out = tiny_run
    check_result_report(load_result(out / "results.json"), tmp_path)
