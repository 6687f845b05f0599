"""`interp sae train|eval|dashboard` and `interp transcoder train|eval` end to end on a tiny store."""

import json

import pytest

from interp.cli.main import main
from interp.dictionaries import load_sae
from interp.results import load_result

HOOKS = ["blocks.0.hook_resid_post", "blocks.0.ln2.hook_normalized", "blocks.0.hook_mlp_out"]


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory, tiny_llama):
    from interp.store import CacheConfig, cache_activations

    d = tmp_path_factory.mktemp("cli_store")
    (d / "c.txt").write_text("\n\n".join(f"Line {i}: the {w} ran home at {i % 12} o'clock." for i, w in
                                         enumerate(["fox", "hen", "cow", "pig", "owl"] * 30)))
    cache_activations(CacheConfig(model="tiny-llama", hooks=HOOKS, corpus=str(d / "c.txt"), n_tokens=2048,
                                  context_length=32, batch_size=8, dtype="float32", out=str(d / "store"),
                                  device="cpu"), model=tiny_llama)
    return d / "store"


def _json(capsys):
    return json.loads(capsys.readouterr().out)


def test_sae_train_eval_dashboard(store_dir, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["sae", "train", "--store", str(store_dir), "--hook", HOOKS[0], "--arch", "topk", "--k", "4",
            "--expansion", "2", "--batch-size", "128", "--lr", "3e-3", "--warmup-steps", "2", "--no-progress",
            "--out", str(out), "--json"]
    assert main(args + ["--max-steps", "5"]) == 0
    first = _json(capsys)
    assert first["steps"] == 5 and not first["complete"]
    assert main(args) == 0  # resumes from the checkpoint
    done = _json(capsys)
    assert done["complete"] and done["steps"] == 2048 // 128 and done["tokens"] == 2048
    sae = load_sae(out / "sae")
    assert sae.cfg.hook_in == HOOKS[0] and sae.cfg.k == 4 and sae.cfg.d_sae == 64

    assert load_result(out / "results.json").steps == done["steps"] and (out / "report.html").exists()
    assert main(["sae", "eval", "--sae", str(out / "sae"), "--store", str(store_dir), "--n", "4",
                 "--out", str(tmp_path / "ev"), "--json"]) == 0
    ev = _json(capsys)
    assert ev["kind"] == "sae" and ev == json.loads((tmp_path / "ev" / "results.json").read_text())
    assert ev["rows"]["l0"] <= 4 and 0 <= ev["rows"]["fvu"] and ev["spliced"]["n_tokens"] == 4 * 31
    assert main(["sae", "dashboard", "--sae", str(out / "sae"), "--store", str(store_dir), "--out",
                 str(tmp_path / "d.html"), "--features", "0,1", "--n-tokens", "500", "--json"]) == 0
    assert (tmp_path / "d.html").exists() and len(_json(capsys)["features"]) == 2


def test_transcoder_train_eval(store_dir, tmp_path, capsys):
    out = tmp_path / "tc"
    assert main(["transcoder", "train", "--store", str(store_dir), "--layer", "0", "--expansion", "2",
                 "--l1-coeff", "0.01", "--batch-size", "256", "--no-progress", "--out", str(out), "--json"]) == 0
    r = _json(capsys)
    assert r["complete"] and r["sae_config"]["hook_out"] == "blocks.0.hook_mlp_out"
    assert main(["transcoder", "eval", "--sae", str(out / "sae"), "--store", str(store_dir), "--n", "2",
                 "--out", str(tmp_path / "ev"), "--json"]) == 0
    ev = _json(capsys)
    assert ev["kind"] == "transcoder" and ev["spliced"]["hook_out"] == "blocks.0.hook_mlp_out"


def test_transcoder_train_on_any_stored_hook_pair(store_dir, tmp_path, capsys):
    """--hook/--hook-out: a transcoder between any two stored hooks (here resid_post -> mlp_out of block 0)."""
    base = ["transcoder", "train", "--store", str(store_dir), "--expansion", "2", "--max-steps", "2",
            "--batch-size", "256", "--no-progress", "--out", str(tmp_path / "tc"), "--json"]
    assert main(base + ["--hook", HOOKS[0], "--hook-out", HOOKS[2]]) == 0
    cfg = _json(capsys)["sae_config"]
    assert (cfg["hook_in"], cfg["hook_out"]) == (HOOKS[0], HOOKS[2])
    assert main(base + ["--hook", HOOKS[0]]) == 2
    assert "needs --hook-out" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # --layer and --hook name the input twice: argparse refuses
        main(base + ["--layer", "0", "--hook", HOOKS[0], "--hook-out", HOOKS[2]])


def test_cli_errors(store_dir, tmp_path, capsys):
    assert main(["sae", "train", "--store", str(tmp_path / "nope"), "--hook", HOOKS[0], "--out", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["sae", "train", "--store", str(store_dir), "--hook", "blocks.5.hook_resid_post",
                 "--out", str(tmp_path)]) == 2
    assert "'blocks.5.hook_resid_post' is not in this store" in capsys.readouterr().err
    assert main(["sae", "eval", "--sae", str(tmp_path), "--store", str(store_dir), "--out", str(tmp_path)]) == 2
    assert "cfg.json is missing" in capsys.readouterr().err
