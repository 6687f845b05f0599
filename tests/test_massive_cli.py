"""``interp sinks`` / ``interp massive`` / ``interp bigram-backcopy`` end to end on tiny models."""

from __future__ import annotations

import json

from interp.cli.main import main


def test_sinks_cli_writes_results_and_report(tmp_path, capsys):
    out = tmp_path / "s"
    rc = main(["sinks", "--model", "tiny-llama", "--out", str(out), "--seq-len", "12", "--n", "2",
               "--heads", "all", "--heads-per-pass", "8", "--device", "cpu"])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert res["kind"] == "sinks" and res["domains"] == ["prose", "code", "numbers"]
    assert len(res["heads"]) == 8 and len(res["delta_loss"]["code"]) == 8
    for d in res["domains"]:  # every head gets a Δloss interval around its mean and a three-way label
        for (lo, hi), m in zip(res["delta_ci"][d], res["delta_loss"][d]):
            assert lo <= m + 1e-9 and m <= hi + 1e-9
        assert set(res["labels"][d]) <= {"dormant", "active", "undetermined"}
    L, H = len(res["stats"]["prose"]["sink_score"]), len(res["stats"]["prose"]["sink_score"][0])
    for d in res["domains"]:  # Guo's column-entropy score per head, normalised to [0, 1]
        ce = res["column_entropy"][d]
        assert len(ce) == L and len(ce[0]) == H and all(0 <= x <= 1 + 1e-6 for row in ce for x in row)
    assert (out / "report.html").stat().st_size > 10_000
    assert "wrote" in capsys.readouterr().out


def test_massive_cli_on_bb_checkpoints(tmp_path, capsys):
    ck = tmp_path / "bb"
    assert main(["bigram-backcopy", "--out", str(ck), "--train-steps", "40", "--n-layers", "1", "--d-model", "32", "--seq-len", "24",
                 "--weight-decay", "0", "--device", "cpu"]) == 0
    bb = json.loads((ck / "results.json").read_text())
    assert bb["kind"] == "bigram_backcopy" and bb["task"]["seq_len"] == 24 and bb["train"]["weight_decay"] == 0
    out = tmp_path / "m"
    capsys.readouterr()
    assert main(["massive", "--checkpoints", str(ck), "--out", str(out), "--device", "cpu", "--json"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["kind"] == "massive" and res["dynamics"]["steps"] == [0, 10, 20, 30, 40]
    assert len(res["dynamics"]["ratio"]) == 5 and len(res["dynamics"]["ratio"][0]) == 1
    assert len(res["dynamics"]["fits"]) == 1 and res["stats"]["hooks"] == ["blocks.0.hook_resid_post"]
    printed = json.loads(capsys.readouterr().out)
    assert printed["dynamics"]["steps"] == res["dynamics"]["steps"]


def test_cli_errors(tmp_path, capsys):
    assert main(["massive", "--checkpoints", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["sinks", "--model", "tiny-llama", "--domains", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "no *.txt files" in capsys.readouterr().err


def test_massive_cli_heldout_option(tmp_path, capsys):
    assert main(["massive", "--model", "tiny-llama", "--out", str(tmp_path / "o"), "--heldout-seqs", "0"]) == 2
    assert "--heldout-seqs must be >= 1" in capsys.readouterr().err
