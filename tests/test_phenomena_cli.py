"""``interp sinks`` / ``interp massive`` / ``interp bigram-backcopy`` end to end on tiny models: the typed
results they write (round trip through ``load_result``), the CLI equal to the public function, and each
report kind rendered in headless Chromium (tests/browser.py) and by ``interp report``."""

from __future__ import annotations

import json
import re
from html import unescape

import pytest
import torch
from browser import check_result_report, needs_chromium, report_test

from interp.cli.main import main
from interp.results import load_result

SINKS = ["--seq-len", "12", "--n", "2", "--heads", "all", "--heads-per-pass", "8", "--n-boot", "200"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One real run of each command (about 30 s on one thread, most of it the dynamics fit)."""
    d = tmp_path_factory.mktemp("phen")
    assert main(["sinks", "--model", "tiny-llama", "--out", str(d / "s"), "--device", "cpu", *SINKS]) == 0
    assert main(["bigram-backcopy", "--out", str(d / "bb"), "--train-steps", "40", "--n-layers", "1", "--d-model", "32",
                 "--seq-len", "24", "--weight-decay", "0", "--device", "cpu"]) == 0
    assert main(["massive", "--checkpoints", str(d / "bb"), "--out", str(d / "m"), "--device", "cpu"]) == 0
    return d


def test_sinks_cli_writes_the_public_functions_result(runs, capsys):
    from interp.models import load_model
    from interp.phenomena import default_domains
    from interp.phenomena.dormant import DormantConfig, DormantResult, active_dormant

    res = load_result(runs / "s" / "results.json")
    assert isinstance(res, DormantResult) and res.domains == ["prose", "code", "numbers"] and len(res.heads) == 8
    for d in res.domains:  # every head gets a Δloss interval around its mean and a three-way label
        for (lo, hi), m in zip(res.delta_ci[d], res.delta_loss[d]):
            assert lo <= m + 1e-9 and m <= hi + 1e-9
        assert set(res.labels[d]) <= {"dormant", "active", "undetermined"}
        ce = res.stats[d].column_entropy  # Guo's column-entropy score per head, normalised to [0, 1]
        assert ce.shape == res.stats[d].sink_score.shape and bool(((ce >= 0) & (ce <= 1 + 1e-6)).all())
    # no science in cli/: the command's result is the public function's, field for field (provenance aside)
    cfg = DormantConfig(seq_len=12, n_seqs=2, heads="all", heads_per_pass=8, n_boot=200)
    ref = active_dormant(load_model("tiny-llama", device="cpu"), default_domains(), cfg).to_json()
    got = res.to_json()
    assert got.pop("meta")["device"] == "cpu" and {k: v for k, v in ref.items() if k != "meta"} == got
    # the summary's count is the number of heads whose sink score reaches the threshold on some domain
    n = int((torch.stack([res.stats[d].sink_score for d in res.domains]).amax(0) >= cfg.sink_threshold).sum())
    assert res.summary().startswith(f"**{n} of 8 heads are attention sinks**")


def test_sinks_attention_view_is_the_sink_pattern(runs):
    """The viewer's patterns are the model's attention: its column 0 is the attention to ⟨s⟩ that
    sink_stats recorded for the same sequence (a separate hooked pass)."""
    res = load_result(runs / "s" / "results.json")
    st, view = res.stats[res.domains[0]], res.attention
    assert view.tokens == st.example_tokens[:len(view.tokens)]
    top = st.sink_heads(0.0)[0]
    assert top[0] in view.layers
    for layer in view.layers:
        for h in range(view.patterns.shape[1]):
            torch.testing.assert_close(view.head(layer, h)[:, 0], st.example_sink_attention[layer, h, :len(view.tokens)])


def test_bigram_backcopy_and_massive_dynamics_results(runs, capsys):
    bb = json.loads((runs / "bb" / "results.json").read_text())
    assert bb["kind"] == "bigram_backcopy" and bb["task"]["seq_len"] == 24 and bb["train"]["weight_decay"] == 0
    res = load_result(runs / "m" / "results.json")
    assert res.dynamics.steps == [0, 10, 20, 30, 40] and torch.tensor(res.dynamics.ratio).shape == (5, 1)
    assert len(res.dynamics.fits) == 1 and res.stats.hooks == ["blocks.0.hook_resid_post"]
    # the dynamics' last point is the final checkpoint's own detection (the same tokens, another code path)
    assert res.dynamics.ratio[-1][0] == pytest.approx(float(res.stats.ratio[0]), rel=1e-6)
    assert main(["massive", "--checkpoints", str(runs / "bb"), "--out", str(runs / "m2"), "--device", "cpu",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["dynamics"]["steps"] == res.dynamics.steps


def _planted_massive():
    """massive_run on tiny-llama with a planted massive activation: 2000 on dim 5 of <bos>."""
    from interp.models import load_model
    from interp.phenomena.massive import massive_run

    model = load_model("tiny-llama", device="cpu")
    model.original_model.model.embed_tokens.weight.data[0, 5] = 2000.0
    return massive_run(model, n_seqs=2, seq_len=16, heldout_seqs=2)


def test_massive_result_on_planted_activation():
    res = _planted_massive()
    assert res.stats.kinds()["first"] == res.stats.n_entries == 6 * len(res.stats.hooks)  # 3 domains x 2 seqs
    assert {e.dim for e in res.stats.entries} == {5} and res.ablation.dims == [5]
    s = res.summary()
    assert s.startswith(f"**{res.stats.n_entries} massive activations**") and f"{res.ablation.loss['zero']:.3f}" in s
    assert load_result(res.to_json()).to_json() == res.to_json()


@needs_chromium
@report_test("sinks", "bigram_backcopy", "massive", "sink_stats")
def test_each_report_kind_renders(runs, tmp_path):
    from interp.phenomena import sink_stats
    from interp.models import load_model

    tokens = torch.randint(4, 99, (2, 10), generator=torch.Generator().manual_seed(0))
    tokens[:, 0] = 0
    results = {"sinks": runs / "s", "bigram_backcopy": runs / "bb", "massive": runs / "m"}
    for kind, folder in results.items():
        res = load_result(folder / "results.json")
        assert res.kind == kind and load_result(res.to_json()).to_json() == res.to_json()
        dom = check_result_report(res, tmp_path)
        if kind == "sinks":
            assert 'class="attn-view"' in dom and "data-ready" in dom  # the attention viewer ran
        # `interp report results.json` renders the same kind with the result's own layout
        html = tmp_path / f"{kind}-cli.html"
        assert main(["report", str(folder / "results.json"), "--out", str(html)]) == 0
        title = unescape(re.search(r"<title>(.*?)</title>", html.read_text(encoding="utf-8")).group(1))
        assert title == res.report().title
    st = sink_stats(load_model("tiny-llama", device="cpu"), tokens)
    assert load_result(st.to_json()).to_json() == st.to_json()
    check_result_report(st, tmp_path)
    check_result_report(_planted_massive(), tmp_path, "massive-planted")


def test_cli_errors(tmp_path, capsys):
    assert main(["massive", "--checkpoints", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["sinks", "--model", "tiny-llama", "--domains", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "no *.txt files" in capsys.readouterr().err
    assert main(["massive", "--model", "tiny-llama", "--out", str(tmp_path / "o"), "--heldout-seqs", "0"]) == 2
    assert "heldout_seqs must be >= 1" in capsys.readouterr().err
