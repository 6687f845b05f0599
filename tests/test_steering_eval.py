"""Steering tasks, KL calibration, the comparison result and the CLI, on tiny models."""

from __future__ import annotations

import json
import math

import pytest
import torch

from interp.cli.main import main
from interp.steering import (GrainsConfig, SteeringComparison, calibrate, compare_methods, load_task, mean_difference,
                             vader_scores)
from interp.steering.evaluate import response_logprob_diff
from interp.steering.runs import last_logprobs, tokenize


def kl_divergence(base_lp, lp):
    """``[N]``: KL(p_base || p) per row by its definition, sum_v p_base (log p_base - log p)."""
    return (base_lp.exp() * (base_lp - lp)).sum(-1)


def test_tasks_are_disjoint_and_shipped():
    for name in ("sentiment", "ioi"):
        t = load_task(name)
        assert t.build and t.eval
        assert not {r["prompt"] for r in t.build} & set(t.eval_prompts)
    with pytest.raises(ValueError, match="unknown steering task"):
        load_task("toxicity")
    from interp.steering.evaluate import DATA

    assert load_task(str(DATA / "ioi.json"), n_eval=3) == load_task("ioi", n_eval=3)  # a task file by its path


def test_vader_scorer_has_its_lexicon():
    pos, neg, neutral = vader_scores(["What a wonderful, lovely day", "This is awful and horrible", "The door"])
    assert pos > 0.5 and neg < -0.5 and neutral == 0.0


@pytest.mark.parametrize("strip", [False, True])
def test_response_logprob_diff_matches_a_direct_computation(tiny_llama, strip):
    """Teacher-forced log p(preferred) - log p(dispreferred), token by token.  ``strip``: the responses
    without their shared leading space, so their first tokens differ (the character tokenizer makes ' '
    the first token of both IOI names, and a sum that skipped it would still match)."""
    import dataclasses

    task = load_task("ioi", n_eval=2)
    if strip:
        rows = [{**r, "preferred": r["preferred"].strip(), "dispreferred": r["dispreferred"].strip()} for r in task.eval]
        task = dataclasses.replace(task, eval=rows)
    got = response_logprob_diff(tiny_llama, task)
    for i, r in enumerate(task.eval):
        lps = []
        for resp in (r["preferred"], r["dispreferred"]):
            n_p = tiny_llama.to_tokens(r["prompt"]).shape[1]
            toks = tiny_llama.to_tokens(r["prompt"] + resp)
            lp = torch.log_softmax(tiny_llama(toks)[0].float(), -1)
            lps.append(sum(float(lp[t - 1, toks[0, t]]) for t in range(n_p, toks.shape[1])))
        # float32 log-softmax over 99 entries, summed over ~6 response tokens: ~1e-5
        assert float(got[i]) == pytest.approx(lps[0] - lps[1], abs=1e-4)


def test_baseline_perplexity_is_that_of_the_greedy_continuations(tiny_llama):
    """The unsteered ``ppl``: exp of the mean over prompts of each greedy continuation's NLL per token,
    recomputed here one prompt and one token at a time."""
    from interp.steering import evaluate_steering

    task = load_task("sentiment", n_build=2, n_eval=1)  # one prompt: per-prompt errors cannot cancel in a mean
    vec = mean_difference(tiny_llama, ["I love it"], ["I hate it"], layer=0)
    res = evaluate_steering(tiny_llama, {"mean_diff": vec}, task, kl_targets=(0.02,), n_new=4)
    nlls = []
    for p in task.eval_prompts:
        toks, nll = tiny_llama.to_tokens(p), []
        for _ in range(4):
            lp = torch.log_softmax(tiny_llama(toks)[0, -1].float(), -1)
            nxt = int(lp.argmax())
            nll.append(-float(lp[nxt]))
            toks = torch.cat([toks, torch.tensor([[nxt]])], 1)
        nlls.append(sum(nll) / len(nll))
    # float32 log-softmax of ~4 nats, batched vs one token at a time: rounding only (~1e-7 relative); the random
    # model's per-token NLLs differ by ~1e-4 relative, so dropping or adding a token must show
    assert res.baseline["ppl"] == pytest.approx(math.exp(sum(nlls) / len(nlls)), rel=1e-5)


def test_calibration_hits_the_kl_target(tiny_llama):
    vec = mean_difference(tiny_llama, ["I love it", "so good"], ["I hate it", "so bad"], layer=0)
    toks = tokenize(tiny_llama, ["the weather is", "my friend said"])
    base = last_logprobs(tiny_llama, toks)
    assert float(kl_divergence(base, last_logprobs(tiny_llama, toks, vec, 0.0)).max()) == 0.0
    cal = calibrate(tiny_llama, vec, toks, base, 0.01, s0=0.1)  # the random model's KL saturates near 0.02
    assert cal.reached
    kl = float(kl_divergence(base, last_logprobs(tiny_llama, toks, vec, cal.strength)).mean())
    assert kl == pytest.approx(0.01, rel=0.1)  # rel_tol of the calibration
    assert kl == pytest.approx(cal.kl, rel=1e-5)  # the same forward again: rounding only
    with pytest.raises(ValueError, match="positive and finite"):
        calibrate(tiny_llama, vec, toks, base, math.nan, s0=0.1)


def test_comparison_round_trip_and_report(tiny_llama, tmp_path):
    task = load_task("sentiment", n_build=2, n_eval=2)
    c = compare_methods(tiny_llama, task, layer=0, kl_targets=(0.02,), n_new=2, grains=GrainsConfig(steps=2))
    d = c.to_json()
    assert d["kind"] == "steering_comparison" and d["schema_version"] == 1
    back = SteeringComparison.from_json(json.loads(json.dumps(d)))
    assert back.to_json() == d
    assert set(c.methods) == {"mean_diff", "grains"}
    for rec in c.methods.values():
        assert rec["cost"]["forward_passes"] > 0
    html = c._repr_html_()
    assert 'class="summary"' in html and "Success at equal KL" in html  # the finding leads
    assert html.index('class="summary"') < html.index("Success at equal KL") < html.index("Method and provenance")
    with pytest.raises(ValueError, match="unknown steering method"):
        compare_methods(tiny_llama, task, layer=0, methods=("magic",))


def test_cli_build_eval_compare(tmp_path, capsys):
    common = ["--model", "tiny-llama", "--n-build", "2", "--n-eval", "2"]
    assert main(["steer", "build", "ioi", "--method", "mean_diff", "--layer", "0", "--out", str(tmp_path / "v"),
                 *common]) == 0
    assert (tmp_path / "v.safetensors").exists() and (tmp_path / "v.json").exists()
    assert main(["steer", "eval", "ioi", "--vector", str(tmp_path / "v"), "--kl", "0.02", "--n-new", "2",
                 "--out", str(tmp_path / "e"), *common]) == 0
    assert json.loads((tmp_path / "e" / "results.json").read_text())["kind"] == "steering_comparison"
    assert main(["steer", "compare", "sentiment", "--kl", "0.02", "--n-new", "2", "--ig-steps", "2", "--layer", "0",
                 "--methods", "mean_diff,grains",
                 "--out", str(tmp_path / "c"), "--json", *common]) == 0
    capsys.readouterr()
    out = json.loads((tmp_path / "c" / "results.json").read_text())
    assert set(out["methods"]) == {"mean_diff", "grains"}
    assert (tmp_path / "c" / "report.html").exists()
    # bad input: a vector for another model, an unknown method, a non-finite KL target
    assert main(["steer", "eval", "ioi", "--vector", str(tmp_path / "v"), "--model", "tiny-gpt2"]) == 2
    assert "hash" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:  # argparse refuses it, listing the methods
        main(["steer", "build", "ioi", "--method", "magic", "--out", str(tmp_path / "w"), *common])
    assert exit_.value.code == 2 and "invalid choice: 'magic'" in capsys.readouterr().err
    assert main(["steer", "eval", "ioi", "--vector", str(tmp_path / "v"), "--kl", "nan", *common]) == 2
    assert "finite" in capsys.readouterr().err


def test_cli_compare_runs_every_method_by_default():
    """`interp steer compare TASK` compares all methods unless --methods narrows them."""
    from interp.cli.main import build_parser
    from interp.steering.compare import BUILDERS

    args = build_parser().parse_args(["steer", "compare", "ioi"])
    assert args.methods.split(",") == list(BUILDERS) == ["mean_diff", "grains", "sae", "snmf"]


def test_report_escapes_the_chosen_text_once():
    """The Vectors table shows what a builder chose as written: the table escapes it, nothing before it does."""
    pt = {"target": 0.1, "strength": 1.0, "kl": 0.1, "reached": True, "success": 0.2, "delta": 0.1, "ppl": 5.0,
          "calibration_passes": 3, "seconds": 0.1}
    rec = {"hook_name": "blocks.0.hook_resid_post", "layer": 0, "mode": "add", "method": "sae",
           "cost": {"forward_passes": 2, "backward_passes": 0, "seconds": 0.1}, "chosen": "latent <3> 'up'",
           "points": [pt]}
    c = SteeringComparison(task="sentiment", task_kind="generation", model="m", model_hash="h", kl_targets=[0.1],
                           baseline={"success": 0.1, "ppl": 5.0}, methods={"sae": rec}, examples=[])
    html = c._repr_html_()
    assert "latent &lt;3&gt; &#x27;up&#x27;" in html and "&amp;lt;" not in html
