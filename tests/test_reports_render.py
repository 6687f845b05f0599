"""``render_results`` and ``interp report``: typed kinds through their own report, the legacy kinds
not yet typed, and bad files.

Ground truth is the results data itself: the figures embedded in the HTML must carry its numbers,
and bad files must fail with a message that names the problem.
"""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
import torch

from interp.attribution import AttributionResult
from interp.cli.main import main as cli
from interp.reports import render_results
from test_reports import figures_in  # pytest puts tests/ (no __init__.py) on sys.path


def attribution_results() -> dict:
    """A typed result's JSON (hand-made scores: the renderer is under test, not the method)."""
    g = torch.Generator().manual_seed(0)
    return AttributionResult("atp", {"attn_head": torch.randn(3, 4, generator=g), "mlp": torch.randn(3, generator=g)},
                             seconds=0.125, metric_clean=3.5, metric_corrupt=-0.25).to_json()


def test_typed_kinds_use_their_own_report_only():
    """A typed kind renders with its result's report(); a file of that kind the type cannot read is an
    error naming why, never a guess from key names and shapes."""
    d = attribution_results()
    html = render_results(d).to_html()
    want = (AttributionResult.from_json(d).scores["attn_head"] / 3.75).tolist()        # share of the gap
    assert np.allclose(figures_in(html)["fig-attention-heads-atp"]["data"][0]["z"], want, rtol=1e-6)  # float32
    for bad, msg in (({k: v for k, v in d.items() if k != "schema_version"}, "no integer schema_version"),
                     ({**d, "schema_version": 9}, "newer than this interp reads"),
                     ({"kind": "compare", "schema_version": 1, "scores": {}}, "compare results lack field(s)"),
                     ({"kind": "circuit", "scores": {"patch": {"mlp": [1.0]}}}, "no integer schema_version")):
        with pytest.raises(ValueError, match=re.escape(msg)):
            render_results(bad)


def test_generic_fallback_maps_shapes_to_figures():
    res = {"kind": "lib", "lr": 0.001, "name": "run-7",
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
    assert "blocks.0.hook_resid_post" in html and "ragged array" in html and "0.001" in html and "run-7" in html
    assert by_id["curves-l0"]["data"][0]["y"] == [50, 30, 20]
    assert by_id["other-v"]["data"][0]["type"] == "bar"
    assert len(specs) == 7            # matrix, 2 cube slices, loss, l0, per_layer, other.v


def test_examples_with_scores_per_method_and_nan_literals(tmp_path):
    p = tmp_path / "results.json"
    p.write_text('{"kind": "lib", "examples": [{"title": "p0", "tokens": ["a", "b"], '
                 '"scores": {"atp": [1.0, -1.0], "ig": [NaN, 2.0]}}], "ratio": [1, Infinity]}')
    r = render_results(p)
    assert [s.title for s in r.sections if s.kind == "tokens"] == ["examples: p0 (atp)", "examples: p0 (ig)"]
    assert any(n.startswith("examples: p0 (ig): 1 NaN/inf") for n in r.notes)
    assert any(n.startswith("ratio: 1 NaN/inf") for n in r.notes)


def test_deep_nesting_and_many_examples_stay_bounded(tmp_path):
    deep: dict = {"leaf": [1.0, 2.0]}
    for i in range(3000):                   # deeper than Python's recursion limit
        deep = {f"d{i}": deep}
    r = render_results({"kind": "lib", "tree": deep, "n": 1})
    assert any("nested more than 6 levels" in s.caption for s in r.sections)
    p = tmp_path / "deep.json"
    p.write_text('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(ValueError, match="nested too deeply"):
        render_results(p)
    many = [{"tokens": ["a"], "scores": [float(i)]} for i in range(50)]
    r = render_results({"kind": "lib", "examples": many})
    assert sum(s.kind == "tokens" for s in r.sections) == 20 and "holds 50 examples" in r.to_html()


def test_training_log_records_become_curves():
    """The SAE trainer's history: a list of {"step", "tokens", "lr", "fvu", "l0"} records."""
    hist = [{"step": s, "tokens": 64 * s, "lr": 1e-3, "fvu": 1.0 / (1 + s), "l0": 40 - s} for s in range(1, 6)]
    specs = figures_in(render_results({"kind": "sae", "history": hist}).to_html())
    fvu = specs["fig-history-fvu"]["data"][0]
    assert fvu["x"] == [1, 2, 3, 4, 5] and fvu["y"] == [0.5, 1 / 3, 0.25, 0.2, 1 / 6]
    assert specs["fig-history-l0"]["data"][0]["y"] == [39, 38, 37, 36, 35]
    assert "fig-history-step" not in specs


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
    (tmp_path / "results.json").write_text(json.dumps(attribution_results()))
    assert render_results(tmp_path).title == render_results(tmp_path / "results.json").title


@pytest.mark.parametrize("text,msg", [
    ('{"kind": "edges", "scores": ', "is not valid JSON: Expecting value at line 1, column 29"),
    ("", "is empty"),
    ("[1, 2, 3]", "expected a JSON object at the top level"),
    ('{"kind": "edges"}', "edges results have no integer schema_version"),
    ('{"kind": "compare", "pearson": {"atp": {"mlp": "high"}}}', "compare results have no integer schema_version"),
    ('{"kind": "lib", "config": 5, "x": [1]}', '"config" must be an object'),
    ('{"kind": "mystery", "x": [1]}', "unknown results kind 'mystery'; known kinds: attribution, bigram_backcopy"),
    ('{"x": [1]}', "unknown results kind None"),
    ('{"kind": 3, "x": [1]}', "unknown results kind 3"),
    ('{"kind": [1], "x": [1]}', "unknown results kind [1]"),
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
    src.write_text(json.dumps(attribution_results()))
    out = tmp_path / "out" / "r.html"
    assert cli(["report", str(src), "--out", str(out), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["out"] == str(out) and out.exists() and payload["bytes"] == out.stat().st_size
    assert payload["figures"] == len(figures_in(out.read_text(encoding="utf-8"))) == 2    # heads, MLP bars
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
    kinds = st.sampled_from([None, "circuit", "compare", "sae", "store", "other"])

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
