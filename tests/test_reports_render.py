"""``render_results`` and ``interp report``: typed kinds through their own report only, and bad files.

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


def test_normalized_is_the_share_of_the_gap():
    """``normalized`` divides by metric_clean - metric_corrupt (3.5 - -0.25 = 3.75 here); with no gap there is
    no share to give, so it is nan -- never the undivided scores presented as shares."""
    r = AttributionResult.from_json(attribution_results())
    assert torch.equal(r.normalized("attn_head"), r.scores["attn_head"] / 3.75)
    assert torch.equal(r.normalized("mlp", summed=True), r.per_component("mlp") / 3.75)
    flat = AttributionResult("atp", r.scores, seconds=0.0, metric_clean=1.0, metric_corrupt=1.0)
    assert flat.normalized("attn_head").isnan().all()


def test_results_path_and_folder(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps(attribution_results()))
    assert render_results(tmp_path).title == render_results(tmp_path / "results.json").title


@pytest.mark.parametrize("text,msg", [
    ('{"kind": "edges", "scores": ', "is not valid JSON: Expecting value at line 1, column 29"),
    ("", "is empty"),
    ("[1, 2, 3]", "expected a JSON object at the top level"),
    ('{"kind": "edges"}', "edges results have no integer schema_version"),
    ('{"kind": "compare", "pearson": {"atp": {"mlp": "high"}}}', "compare results have no integer schema_version"),
    ('{"kind": "lib", "schema_version": 1}', "lib results lack field(s)"),
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
    kinds = st.sampled_from([None, "circuit", "compare", "sae", "store", "edges", "sinks", "other"])

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
