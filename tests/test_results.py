"""Typed results: JSON round trip, dispatch on kind, clear errors, the report leads with the finding."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from interp.attribution import AttributionResult, attribution_patching
from interp.reports import render_results
from interp.results import ResultSchemaError, check_fields, decode, encode, load_result, typed
from interp.tasks import Task


@pytest.fixture(scope="module")
def atp_result(tiny_llama):
    task = Task.from_prompts(tiny_llama, ["abc defg", "xyz wvut"], ["abd degg", "xzz wvat"],
                             answers=[("a", "b"), ("c", "d")])
    return attribution_patching(tiny_llama, task, per_position=("resid",))


def test_round_trip_through_json_text(atp_result, tmp_path):
    path = atp_result.save(tmp_path / "results.json")
    back = load_result(path)
    assert isinstance(back, AttributionResult) and back.method == atp_result.method
    for k, v in atp_result.scores.items():  # bit-exact: JSON carries float32 values as exact decimals
        assert back.scores[k].dtype == v.dtype and torch.equal(back.scores[k], v)
    assert back.per_position == ["resid"] and back.metric_clean == atp_result.metric_clean
    assert back.to_json() == atp_result.to_json()


def test_encode_keeps_dtype_shape_and_non_finite_values():
    t = torch.tensor([[1.5, float("nan")], [float("inf"), -2.0]], dtype=torch.float64)
    enc = json.loads(json.dumps(encode({"x": t, "i": torch.arange(3, dtype=torch.int16), "f": float("-inf")})))
    back = decode(enc)
    assert back["x"].dtype == torch.float64 and back["x"].shape == (2, 2)
    assert math.isnan(back["x"][0, 1]) and back["x"][1, 0] == float("inf") and back["x"][1, 1] == -2.0
    assert back["i"].dtype == torch.int16 and back["i"].tolist() == [0, 1, 2]
    assert enc["f"] == "-inf"  # strict JSON: no bare NaN/Infinity tokens


@dataclasses.dataclass
class _Inner:
    x: float
    pair: tuple[int, int]


@dataclasses.dataclass
class _Outer:
    inners: dict[str, list[_Inner]]
    maybe: _Inner | None
    spans: list[tuple[float, float]]
    scores: tuple[float, ...]
    free: dict


def test_typed_rebuilds_annotated_fields_from_json():
    """The one decoder of typed fields (Result.from_json): nested dataclasses, X | None, tuples inside
    lists and dicts, and non-finite floats written as strings come back as the annotated types."""
    import typing

    v = _Outer({"a": [_Inner(math.nan, (1, 2))]}, None, [(0.5, 1.5)], (math.inf, 2.0), {"k": [1, 2]})
    back = typed(json.loads(json.dumps(encode(v))), _Outer)
    assert isinstance(back.inners["a"][0], _Inner) and back.inners["a"][0].pair == (1, 2)
    assert math.isnan(back.inners["a"][0].x) and back.scores == (math.inf, 2.0)
    assert back.maybe is None and back.spans == [(0.5, 1.5)] and isinstance(back.spans[0], tuple)
    assert back.free == {"k": [1, 2]}  # an unparameterised dict is left as it is
    w = typed({"x": 1.0, "pair": [3, 4]}, typing.Optional[_Inner])
    assert w == _Inner(1.0, (3, 4))
    # a file written when _Inner had a field it has since lost still loads, as Result.from_json drops
    # a removed top-level field (results.json files outlive the code that wrote them)
    assert typed({"x": 1.0, "pair": [3, 4], "removed_field": 7}, _Inner) == _Inner(1.0, (3, 4))


def test_check_fields_names_the_bad_field():
    """The one config check: a value outside its choices or below its bound is refused with the field's
    name; the bound itself, choices that match and None (an optional field left unset) pass."""
    ok = _Inner(x=0.0, pair=(1, 2))
    check_fields(ok, {"pair": [(1, 2)]}, {"x": 0.0})
    check_fields(_Outer({}, None, [], (), {}), at_least={"maybe": 1})
    with pytest.raises(ValueError, match=r"unknown pair \(1, 3\) \(_Inner.pair\)"):
        check_fields(_Inner(0.0, (1, 3)), {"pair": [(1, 2)]})
    with pytest.raises(ValueError, match=r"_Inner.x must be >= 0.5, got 0.0"):
        check_fields(ok, at_least={"x": 0.5})


def test_unknown_kind_and_newer_schema_are_clear_errors(atp_result):
    d = atp_result.to_json()
    with pytest.raises(ResultSchemaError, match="unknown results kind 'nope'.*attribution"):
        load_result({**d, "kind": "nope"})
    with pytest.raises(ResultSchemaError, match="schema_version 2, newer than this interp reads \\(1\\)"):
        load_result({**d, "schema_version": 2})
    with pytest.raises(ResultSchemaError, match="lack field"):
        load_result({k: v for k, v in d.items() if k != "scores"})
    with pytest.raises(ResultSchemaError, match="unknown tensor dtype"):
        decode({"__tensor__": "pickle", "shape": [1], "data": [0]})


def test_report_leads_with_the_finding(atp_result):
    """The summary names the largest components, computed here independently from the scores."""
    s = atp_result.scores
    cands = {f"L{l}H{h}": float(s["attn_head"][l, h]) for l in range(s["attn_head"].shape[0])
             for h in range(s["attn_head"].shape[1])}
    cands |= {f"MLP{l}": float(v) for l, v in enumerate(s["mlp"])}
    cands |= {f"resid{l}": float(v) for l, v in enumerate(s["resid"].sum(-1))}  # per position: summed
    best = max(cands, key=lambda k: abs(cands[k]))
    rep = render_results(atp_result.to_json())  # `interp report` dispatches on the kind
    html = rep.to_html()
    assert html.index('id="summary"') < html.index('id="contents"') < html.index('id="run"')
    assert atp_result.top(1)[0][0] == best and f"Largest effects: {best} " in rep.summary
    frag = atp_result._repr_html_()  # notebook display: a fragment, figures drawn by a scoped script
    assert frag.startswith('<div class="interp-report"') and "<html" not in frag and "Plotly.newPlot" in frag
