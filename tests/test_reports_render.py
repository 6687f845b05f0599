"""``render_results`` and ``interp report``: every kind of results.json, and bad files.

Ground truth is the results dict itself: the figures embedded in the HTML must carry its
numbers, Pearson r must equal scipy's on the same scores, and bad files must fail with a
message that names the problem.
"""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
from scipy.stats import pearsonr

from interp.cli.main import main as cli
from interp.reports import render_results
from test_reports import figures_in  # pytest puts tests/ (no __init__.py) on sys.path


def circuit_results(rng=None) -> dict:
    rng = rng or np.random.default_rng(0)
    L, H = 3, 4
    patch = {"attn_head": rng.normal(size=(L, H)), "mlp": rng.normal(size=L), "resid": rng.normal(size=L)}
    atp = {k: v + 0.3 * rng.normal(size=v.shape) for k, v in patch.items()}
    return {
        "kind": "circuit", "task": "ioi", "model": "tiny-llama",
        "config": {"method": "atp", "n_prompts": 8, "seed": 0},
        "meta": {"versions": {"torch": "2.13.0"}, "timings": {"patch": 3.25, "atp": 0.125}},
        "metric_clean": 3.5, "metric_corrupt": -0.25,
        "scores": {"patch": {k: v.tolist() for k, v in patch.items()},
                   "atp": {k: v.tolist() for k, v in atp.items()}},
        "circuit": {"components": ["blocks.2.attn.hook_z[1]", "blocks.1.hook_mlp_out", "blocks.0.attn.hook_z[3]"]},
        "faithfulness": {"n_components": [1, 2, 3], "recovered": [0.3, 0.7, 0.9], "target": 0.8, "chosen": 3},
        "roles": {"L2H1": "name mover"},
        "examples": [{"title": "BABA", "tokens": ["When", " Mary", "\n"], "scores": [0.1, -0.4, None]}],
        "verification": {"recovered": 0.87},
    }


def test_circuit_report_carries_the_numbers(tmp_path):
    res = circuit_results()
    r = render_results(res)
    html = r.to_html()
    figs = {spec["layout"].get("xaxis", {}).get("title", {}).get("text", "") + "|" + fid: spec
            for fid, spec in figures_in(html).items()}
    heat = [s for k, s in figs.items() if "attention-heads-patch" in k]
    assert heat and heat[0]["data"][0]["z"] == res["scores"]["patch"]["attn_head"]
    assert heat[0]["data"][0]["y"] == ["L0", "L1", "L2"] and heat[0]["data"][0]["x"] == ["H0", "H1", "H2", "H3"]
    # scatter vs patching: Pearson r in the heading equals scipy's
    for ct in ("attn_head", "mlp", "resid"):
        expect = pearsonr(np.ravel(res["scores"]["patch"][ct]), np.ravel(res["scores"]["atp"][ct])).statistic
        assert f"atp vs patching (Pearson r = {expect:.3f}" in html
    # faithfulness curve, circuit graph from component names, token view, run section
    faith = [s for k, s in figs.items() if "faithfulness-curve" in k][0]
    assert faith["data"][0]["y"] == [0.3, 0.7, 0.9]
    graph = [s for k, s in figs.items() if "circuit-components" in k][0]
    nodes = graph["data"][-1]
    assert dict(zip(nodes["text"], nodes["x"])) == {"L2H1": 2, "MLP1": 1, "L0H3": 0}
    assert "↵" in html and "name mover" in html and ">recovered<" in html and "0.87" in html
    assert "tiny-llama" in html and "3.25" in html and "n_prompts" in html
    assert r.title == "Circuit: ioi on tiny-llama"
    assert any("examples: BABA" in n for n in r.notes)           # the None score is noted
    assert 'data-state="pending"' in html


def test_compare_report_table_with_paper_values():
    res = circuit_results()
    res.update(kind="compare", pearson={"atp": {"resid": 0.71, "attn_head": 0.97, "mlp": 0.2},
                                         "relp": {"resid": 0.95, "attn_head": 0.96, "mlp": 0.99}},
               paper={"atp": {"resid": 0.753, "attn_head": 0.979, "mlp": 0.195},
                      "relp": {"resid": 0.968, "attn_head": 0.962, "mlp": 0.992}},
               seconds={"patch": 12.0, "atp": 0.5, "relp": 0.6})
    html = render_results(res).to_html()
    table = html[html.index('id="pearson-r-with-activation-patching"'):]
    table = table[:table.index("</table>")]
    assert re.search(r"<td>relp</td><td>MLP outputs</td><td class=\"num\">0.99</td><td class=\"num\">0.992</td>", table)
    bars = [s for fid, s in figures_in(html).items() if "pearson-r-by-component" in fid][0]
    assert [t["name"] for t in bars["data"]] == ["atp", "relp"] and bars["data"][1]["y"] == [0.95, 0.96, 0.99]
    wall = html[html.index('id="wall-time-per-method"'):]
    assert "<td>atp</td><td class=\"num\">0.5</td><td class=\"num\">24</td>" in wall   # 12 / 0.5
    wall_fig = figures_in(html)["fig-wall-time-per-method-2"]
    assert wall_fig["data"][0]["y"] == [12.0, 0.5, 0.6] and wall_fig["layout"]["yaxis"].get("type") != "log"  # 24x
    res["seconds"] = {"patch": 100.0, "atp": 0.5}                                    # 200x spread: log axis
    wall_fig = figures_in(render_results(res).to_html())["fig-wall-time-per-method-2"]
    assert wall_fig["layout"]["yaxis"]["type"] == "log"


@pytest.mark.parametrize("layout", ["scores", "results"])
def test_attribution_result_to_json_records_are_accepted(layout):
    """``scores: {method: result.to_json()}`` or ``results: [result.to_json(), ...]`` (CONTRACTS.md)."""
    recs = [{"method": m, "scores": {"mlp": [1.0, 2.0, 3.0]}, "seconds": sec, "metric_clean": 2.5,
             "metric_corrupt": 0.5} for m, sec in (("patch", 8.0), ("atp", 0.25))]
    res = {"kind": "circuit", layout: ({r["method"]: r for r in recs} if layout == "scores" else recs)}
    html = render_results(res).to_html()
    bars = figures_in(html)["fig-mlp-outputs-score-per-layer"]
    assert [t["name"] for t in bars["data"]] == ["patch", "atp"] and bars["data"][1]["y"] == [1.0, 2.0, 3.0]
    assert "<td>atp</td><td class=\"num\">0.25</td><td class=\"num\">32</td>" in html   # 8 / 0.25
    assert ">metric_clean<" in html and "atp vs patching (Pearson r = 1.000" in html


def test_circuit_as_list_of_scored_components():
    res = {"kind": "circuit", "circuit": [{"name": "blocks.3.attn.hook_z[0]", "score": 0.5},
                                          {"name": "blocks.1.hook_mlp_out", "score": -0.2}]}
    spec = figures_in(render_results(res).to_html())["fig-circuit-components-by-layer"]
    nodes = spec["data"][-1]
    assert dict(zip(nodes["text"], nodes["x"])) == {"L3H0": 3, "MLP1": 1}
    assert nodes["marker"]["color"] == [0.5, -0.2]


def test_per_position_scores_labelled_by_tokens():
    res = {"kind": "circuit", "tokens": ["<bos>", " Mary", " Mary"],
           "scores": {"patch": {"resid": [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]}}}
    spec = figures_in(render_results(res).to_html())["fig-residual-stream-patch"]
    # distinct labels even for repeated tokens (a category axis would merge equal labels)
    assert spec["data"][0]["x"] == ["0 '<bos>'", "1 ' Mary'", "2 ' Mary'"]
    assert spec["data"][0]["z"] == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]


def test_compare_on_ioi_shows_published_gpt2_numbers_by_default():
    res = {"kind": "compare", "task": "ioi", "pearson": {"relp": {"mlp": 0.9}, "ig": {"mlp": 0.8}}}
    html = render_results(res).to_html()
    # docs/methods.md, RelP: RelP paper Table 1, GPT-2 small, MLP RelP = 0.992; no published IG value
    assert re.search(r'<td>relp</td><td>MLP outputs</td><td class="num">0.9</td><td class="num">0.992</td>', html)
    assert re.search(r'<td>ig</td><td>MLP outputs</td><td class="num">0.8</td><td><span title="not recorded">—</span></td>', html)
    assert "RelP paper, Table 1, IOI on GPT-2 small" in html
    html = render_results({**res, "task": "greater-than"}).to_html()
    assert "0.992" not in html


def test_generic_fallback_maps_shapes_to_figures():
    res = {"kind": "mystery", "lr": 0.001, "name": "run-7",
           "matrix": [[1, 2, 3], [4, 5, 6]],
           "cube": np.arange(24).reshape(2, 3, 4).tolist(),
           "curves": {"step": [0, 10, 20], "loss": [3.0, 2.0, 1.5], "l0": [50, 30, 20]},
           "per_layer": [0.1, 0.2, None],
           "rows": [{"hook": "blocks.0.hook_resid_post", "n": 10}],
           "ragged": [[1, 2], [3]],
           "other": {"step": [[1, 2], [3]], "v": [1.0, 2.0]},          # a ragged "x" key is not an x axis
           "tags": ["a", "b"]}
    r = render_results(res)
    html = r.to_html()
    specs = figures_in(html)
    by_id = {fid.removeprefix("fig-"): s for fid, s in specs.items()}
    assert by_id["matrix"]["data"][0]["z"] == [[1, 2, 3], [4, 5, 6]]
    assert by_id["cube-0"]["data"][0]["z"] == res["cube"][0] and by_id["cube-1"]["data"][0]["z"] == res["cube"][1]
    loss = by_id["curves-loss"]["data"][0]
    assert loss["type"] == "scatter" and loss["x"] == [0, 10, 20] and loss["y"] == [3.0, 2.0, 1.5]
    assert "curves-step" not in by_id                           # the x axis is not plotted against itself
    assert by_id["per-layer"]["data"][0]["type"] == "bar" and by_id["per-layer"]["data"][0]["y"] == [0.1, 0.2, None]
    assert "no dedicated layout" in html and "mystery" in html
    assert "blocks.0.hook_resid_post" in html and "ragged array" in html and "0.001" in html and "run-7" in html
    assert by_id["curves-l0"]["data"][0]["y"] == [50, 30, 20]
    assert by_id["other-v"]["data"][0]["type"] == "bar"
    assert len(specs) == 7            # matrix, 2 cube slices, loss, l0, per_layer, other.v


def test_examples_with_scores_per_method_and_nan_literals(tmp_path):
    p = tmp_path / "results.json"
    p.write_text('{"kind": "circuit", "examples": [{"title": "p0", "tokens": ["a", "b"], '
                 '"scores": {"atp": [1.0, -1.0], "ig": [NaN, 2.0]}}], "ratio": [1, Infinity]}')
    r = render_results(p)
    assert [s.title for s in r.sections if s.kind == "tokens"] == ["examples: p0 (atp)", "examples: p0 (ig)"]
    assert any(n.startswith("examples: p0 (ig): 1 NaN/inf") for n in r.notes)
    assert any(n.startswith("ratio: 1 NaN/inf") for n in r.notes)


def test_deep_nesting_and_many_examples_stay_bounded(tmp_path):
    deep: dict = {"leaf": [1.0, 2.0]}
    for i in range(3000):                   # deeper than Python's recursion limit
        deep = {f"d{i}": deep}
    r = render_results({"kind": "x", "tree": deep, "n": 1})
    assert any("nested more than 6 levels" in s.caption for s in r.sections)
    p = tmp_path / "deep.json"
    p.write_text('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(ValueError, match="nested too deeply"):
        render_results(p)
    many = [{"tokens": ["a"], "scores": [float(i)]} for i in range(50)]
    r = render_results({"kind": "x", "examples": many})
    assert sum(s.kind == "tokens" for s in r.sections) == 20 and "holds 50 examples" in r.to_html()


def test_training_log_records_become_curves():
    """The SAE trainer's history: a list of {"step", "tokens", "lr", "fvu", "l0"} records."""
    hist = [{"step": s, "tokens": 64 * s, "lr": 1e-3, "fvu": 1.0 / (1 + s), "l0": 40 - s} for s in range(1, 6)]
    specs = figures_in(render_results({"kind": "sae", "history": hist}).to_html())
    fvu = specs["fig-history-fvu"]["data"][0]
    assert fvu["x"] == [1, 2, 3, 4, 5] and fvu["y"] == [0.5, 1 / 3, 0.25, 0.2, 1 / 6]
    assert specs["fig-history-l0"]["data"][0]["y"] == [39, 38, 37, 36, 35]
    assert "fig-history-step" not in specs


def test_sinks_kind_labels_layer_by_head():
    att = np.arange(12.0).reshape(2, 2, 3).tolist()          # [L, H, T]
    html = render_results({"kind": "sinks", "sink_score": [[0.9, 0.1], [0.5, 0.95]], "model": "tiny-gpt2",
                           "example_sink_attention": att}).to_html()
    specs = figures_in(html)
    spec = specs["fig-sink-score"]
    assert spec["data"][0]["y"] == ["L0", "L1"] and spec["data"][0]["x"] == ["H0", "H1"]
    assert spec["layout"]["yaxis"]["title"]["text"] == "layer"
    layer1 = specs["fig-example-sink-attention-1"]           # one heatmap per layer: head x position
    assert layer1["data"][0]["z"] == att[1] and layer1["data"][0]["y"] == ["H0", "H1"]
    assert layer1["layout"]["xaxis"]["title"]["text"] == "query position"


def test_massive_kind_uses_log_scale_for_wide_ranges():
    html = render_results({"kind": "massive", "ratio": [2.0, 30.0, 4000.0, 3500.0]}).to_html()
    (spec,) = figures_in(html).values()
    assert spec["layout"]["yaxis"]["type"] == "log"
    html = render_results({"kind": "other", "ratio": [2.0, 30.0, 4000.0, 3500.0]}).to_html()
    (spec,) = figures_in(html).values()
    assert spec["layout"]["yaxis"].get("type") != "log"          # only where the kind says so


def test_store_manifest_tables():
    manifest = {"kind": "store", "model": "tiny-llama", "hooks": ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"],
                "row_shapes": {"blocks.0.hook_resid_post": [32], "blocks.1.hook_resid_post": [32]},
                "shards": [{"index": 0, "row_start": 0, "rows": 512, "files": {
                    "blocks.0.hook_resid_post.bin": {"bytes": 65536}, "blocks.1.hook_resid_post.bin": {"bytes": 65536},
                    "tokens.bin": {"bytes": 2048}}},
                    {"index": 1, "row_start": 512, "rows": 100, "files": {"blocks.0.hook_resid_post.bin": {"bytes": 12800}}}],
                "config": {"n_tokens": 612}}
    html = render_results(manifest).to_html()
    hooks = html[html.index('id="hooks"'):]
    assert re.search(r"<td>blocks.0.hook_resid_post</td><td><code>\[32\]</code></td><td class=\"num\">612</td>"
                     r"<td class=\"num\">78336</td>", hooks)        # 65536 + 12800 bytes over both shards
    shards = html[html.index('id="shards"'):]
    assert re.search(r'<td class="num">1</td><td class="num">512</td><td class="num">100</td><td class="num">1</td>'
                     r'<td class="num">12800</td>', shards)


def test_results_path_and_folder(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps(circuit_results()))
    assert render_results(tmp_path).title == render_results(tmp_path / "results.json").title


@pytest.mark.parametrize("text,msg", [
    ('{"kind": "circuit", "scores": ', "is not valid JSON: Expecting value at line 1, column 31"),
    ("", "is empty"),
    ("[1, 2, 3]", "expected a JSON object at the top level"),
    ('{"kind": "circuit"}', "nothing to render"),
    ('{"kind": 3, "x": [1]}', '"kind" must be a string'),
    ('{"kind": "circuit", "scores": {"atp": [1, 2]}}', "scores['atp']: expected an object {component_type: array}"),
    ('{"kind": "circuit", "scores": {"atp": {"mlp": ["a"]}}}', "scores['atp']['mlp']: expected numbers"),
    ('{"kind": "circuit", "scores": {"patch": {"mlp": [1, 2]}, "atp": {"mlp": [1, 2, 3]}}}',
     "scores['atp']['mlp'] has shape (3,) but scores['patch']['mlp'] has (2,)"),
    ('{"kind": "circuit", "faithfulness": {"a": [1]}}', "faithfulness: needs 'n_components' and 'recovered'"),
    ('{"kind": "compare", "pearson": {"atp": {"mlp": "high"}}}', "pearson['atp']['mlp']: expected a number"),
    ('{"kind": "circuit", "circuit": 7}', "circuit: expected an object with 'nodes'/'edges'"),
    ('{"config": 5, "x": [1]}', '"config" must be an object'),
])
def test_bad_results_files_fail_clearly(tmp_path, text, msg):
    p = tmp_path / "results.json"
    p.write_text(text)
    with pytest.raises(ValueError, match=re.escape(msg)):
        render_results(p)


def test_missing_and_binary_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        render_results(tmp_path / "nope.json")
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match="not UTF-8"):
        render_results(tmp_path / "bin.json")


def test_cli_report(tmp_path, capsys):
    src = tmp_path / "results.json"
    src.write_text(json.dumps(circuit_results()))
    out = tmp_path / "out" / "r.html"
    assert cli(["report", str(src), "--out", str(out), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["out"] == str(out) and out.exists() and payload["bytes"] == out.stat().st_size
    assert payload["figures"] == len(figures_in(out.read_text(encoding="utf-8"))) > 5
    assert cli(["report", str(src)]) == 0                       # default: report.html beside results
    assert (tmp_path / "report.html").exists() and "wrote" in capsys.readouterr().out
    src.write_text("{broken")
    assert cli(["report", str(src), "--out", str(out)]) == 2
    assert "is not valid JSON" in capsys.readouterr().err
    assert cli(["report", str(tmp_path / "missing.json")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli(["report", str(tmp_path / "r.html"), "--out", str(tmp_path / "x.png")]) == 2
    assert "ending in .html" in capsys.readouterr().err


def test_any_json_renders_or_fails_with_a_value_error():
    """Property: whatever JSON object comes in, the result is a report or a ValueError, never a crash."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    leaf = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.text(max_size=8),
                     st.floats(allow_nan=True, allow_infinity=True))
    keys = st.one_of(st.text(max_size=6), st.sampled_from(
        ["scores", "pearson", "paper", "seconds", "timings", "circuit", "faithfulness", "roles", "examples",
         "tokens", "scores", "title", "nodes", "edges", "components", "n_components", "recovered", "target",
         "hooks", "row_shapes", "shards", "config", "meta", "model", "versions", "step", "attn_head", "mlp",
         "patch", "atp", "results", "method"]))
    tree = st.recursive(leaf, lambda kids: st.one_of(st.lists(kids, max_size=5),
                                                     st.dictionaries(keys, kids, max_size=5)),
                        max_leaves=30)
    kinds = st.sampled_from([None, "circuit", "compare", "sinks", "massive", "sae", "store", "other"])

    @settings(max_examples=int(os.environ.get("INTERP_FUZZ_EXAMPLES", 60)), deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.dictionaries(keys, tree, max_size=6), kinds)
    def check(data, kind):
        if kind:
            data = {**data, "kind": kind}
        try:
            r = render_results(data)
        except ValueError as e:
            assert str(e)
            return
        assert "<!DOCTYPE html>" in r.to_html()

    check()
