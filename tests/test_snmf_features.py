"""SNMF feature reading and steering against direct interventions on tiny models."""

from __future__ import annotations

import pytest
import torch

from interp.decompositions.snmf import SNMFConfig, collect_activations, fit_snmf
from interp.decompositions.snmf_features import (
    MAX_DOUBLINGS, calibrate_steering, feature_cards, kl_search, residual_directions, steered_generations,
    top_contexts, vocab_projection,
)
from interp.models import scoped_hooks

TEXTS = ["the cat sat on the mat.", "a dog ran in the park!", "1 2 3 4 5 6", "hello, world; hello again"]


def test_residual_direction_is_the_mlp_output_change(tiny_llama):
    """Adding z to mlp.hook_post changes hook_mlp_out by exactly W_out^T z."""
    z = torch.randn(64, 1)
    tokens = tiny_llama.to_tokens("abc def")
    _, base = tiny_llama.run_with_cache(tokens, names_filter=["blocks.1.hook_mlp_out"])
    with scoped_hooks(tiny_llama, fwd=[("blocks.1.mlp.hook_post", lambda x, hook=None: x + z[:, 0])]):
        _, steered = tiny_llama.run_with_cache(tokens, names_filter=["blocks.1.hook_mlp_out"])
    diff = steered["blocks.1.hook_mlp_out"] - base["blocks.1.hook_mlp_out"]
    f = residual_directions(tiny_llama, 1, z)[0]
    # float32 difference of two forwards: ~84 eps32 x |mlp_out|
    assert torch.allclose(diff, f.expand_as(diff), atol=1e-5)
    with pytest.raises(ValueError, match="MLP width"):
        residual_directions(tiny_llama, 1, torch.randn(10, 2))


@pytest.mark.parametrize("fixture", ["tiny_llama", "tiny_gpt2"])
def test_vocab_projection_ranks_tokens_like_the_model(fixture, request):
    """Placing d alone in the final residual, the model's logits rank tokens like the projection."""
    model = request.getfixturevalue(fixture)
    L = model.cfg.n_layers - 1
    d = torch.randn(model.cfg.d_model)
    tokens = model.to_tokens("xy")

    def put(v):
        return lambda x, hook=None: v.expand_as(x).clone()

    with scoped_hooks(model, fwd=[(f"blocks.{L}.hook_resid_post", put(d))]):
        logits = model(tokens)[0, -1]
    with scoped_hooks(model, fwd=[(f"blocks.{L}.hook_resid_post", put(torch.zeros_like(d)))]):
        logits0 = model(tokens)[0, -1]  # the norm's bias alone (zero for RMSNorm)
    proj = vocab_projection(model, d[None], k=10)[0]
    effect = logits - logits0
    want = [model.tokenizer.decode([int(i)]) for i in effect.topk(10).indices]
    assert [t for t, _ in proj["top"]] == want
    assert [t for t, _ in proj["bottom"]] == [model.tokenizer.decode([int(i)]) for i in (-effect).topk(10).indices]


def test_kl_search_finds_the_known_strength():
    """``kl(s) = c s^2`` per row: the answer is ``sqrt(t / c)``, from ~700 (ten doublings of the start 1)
    down to 0.45 (the start overshoots); the last row saturates at KL 1 below its target 2: not reached."""
    c = torch.tensor([1e-6, 1e-2, 1.0, 1.0])
    t = torch.tensor([0.5, 0.3, 0.2, 2.0])
    cap = torch.tensor([9.0, 9.0, 9.0, 1.0])
    s, kl, reached, passes = kl_search(lambda a: torch.minimum(c * a ** 2, cap), t, torch.ones(4), 1e-3, 40)
    assert reached.tolist() == [True, True, True, False]
    # |kl - t| <= 1e-3 t (the tolerance asked for), so s is within ~5e-4 of sqrt(t / c) relative
    assert torch.allclose(kl[:3], t[:3], rtol=1e-3)
    assert torch.allclose(s[:3], (t[:3] / c[:3]).sqrt(), rtol=1e-3)
    assert float(kl[3]) == 1.0 and float(s[3]) == 2.0 ** MAX_DOUBLINGS  # gave up after every doubling
    assert passes < 1 + MAX_DOUBLINGS + 40  # rows stop bisecting once within tolerance
    with pytest.raises(ValueError, match="positive and finite"):
        kl_search(lambda a: a, torch.tensor([float("nan")]), torch.ones(1), 0.1, 5)


def test_calibrated_alpha_reaches_kl_targets(tiny_llama):
    torch.manual_seed(0)
    dirs = torch.randn(3, 64)
    targets = (0.002, 0.006)  # a random tiny model saturates near KL 0.02
    cal = calibrate_steering(tiny_llama, 1, dirs, prompt="hi there", targets=targets, n_steps=20)
    assert cal.reached.all()
    # calibration stops within 2% of each KL target (bisection tolerance)
    assert torch.allclose(cal.kl, torch.tensor(targets).expand(3, 2, 2), rtol=0.02, atol=1e-4)
    assert (cal.alpha[..., 1] > cal.alpha[..., 0]).all()
    # independent check of one row: the hand-written intervention gives the same KL
    u = dirs[2] / dirs[2].norm()
    a = float(cal.alpha[2, 1, 0])
    toks = tiny_llama.to_tokens("hi there")
    base = torch.log_softmax(tiny_llama(toks)[0, -1], -1)
    with scoped_hooks(tiny_llama, fwd=[("blocks.1.mlp.hook_post", lambda x, hook=None: x - a * u)]):
        lp = torch.log_softmax(tiny_llama(toks)[0, -1], -1)
    kl = float((base.exp() * (base - lp)).sum())
    # KL ~ 5e-3 from float32 log-softmaxes: 1e-4 relative = ~eps32 x |logp| / KL
    assert kl == pytest.approx(float(cal.kl[2, 1, 0]), rel=1e-4)
    with pytest.raises(ValueError, match="targets"):
        calibrate_steering(tiny_llama, 1, dirs, targets=(0.0,))


def test_feature_cards_and_contexts(tiny_llama):
    acts = collect_activations(tiny_llama, TEXTS, "blocks.1.mlp.hook_post")
    res = fit_snmf(acts.X, SNMFConfig(k=4, sparsity=0.25, max_iter=50, patience=50, init="svd"))
    ctx = top_contexts(res.Y, acts, tiny_llama.tokenizer, 0, k=3, window=4)
    assert ctx[0]["coef"] == pytest.approx(float(res.Y[0].max()))  # approx default: the same float copied
    i = int(res.Y[0].argmax())
    s, p = acts.seq_pos[i].tolist()
    assert ctx[0]["token"] == TEXTS[s][p - 1]  # char tokenizer: position p is character p-1 (BOS first)
    assert ctx[0]["context"] == TEXTS[s][max(0, p - 5):p - 1]
    cards, cal = feature_cards(tiny_llama, 1, res, acts, features=[0, 1], targets=(0.001, 0.002, 0.004),
                               prompt="hi", n_tokens=3)
    assert [c.index for c in cards] == [0, 1] and len(cards[0].alpha["+"]) == 3
    assert all(isinstance(c.steered["+"], str) for c in cards)
    texts = steered_generations(tiny_llama, 1, res.Z[:, :1].T, torch.zeros(1), prompt="hi", n_tokens=3)
    greedy = tiny_llama.to_tokens("hi")
    for _ in range(3):
        greedy = torch.cat([greedy, tiny_llama(greedy)[:, -1].argmax(-1, keepdim=True)], 1)
    n0 = tiny_llama.to_tokens("hi").shape[1]
    assert texts[0] == tiny_llama.tokenizer.decode(greedy[0, n0:].tolist())  # alpha = 0: the plain model


@pytest.mark.slow  # two model loads and fits: ~15 s idle, minutes on a busy machine
def test_cli_snmf_and_lib_write_results(tmp_path):
    import json

    from interp.cli.main import main

    assert main(["snmf", "--model", "tiny-llama", "--layer", "1", "--k", "4", "--sparsity", "0.25",
                 "--max-iter", "30", "--n-features", "1", "--out", str(tmp_path / "s")]) == 0
    res = json.loads((tmp_path / "s" / "results.json").read_text())
    assert res["kind"] == "snmf" and res["fit"]["k"] == 4 and len(res["features"]) == 1
    assert (tmp_path / "s" / "report.html").stat().st_size > 1000
    assert main(["lib", "--model", "tiny-llama", "--layers", "0-1", "--n", "3", "--seq-len", "8",
                 "--probes", "2", "--edge-nodes", "3", "--out", str(tmp_path / "l")]) == 0
    res = json.loads((tmp_path / "l" / "results.json").read_text())
    assert res["kind"] == "lib" and res["lib"]["names"] == ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
    assert main(["snmf", "--model", "tiny-llama", "--layer", "7", "--k", "4", "--out", str(tmp_path / "x")]) == 2
    assert main(["lib", "--model", "tiny-llama", "--layers", "3,x", "--out", str(tmp_path / "x")]) == 2


@pytest.mark.slow
def test_compare_on_concepts_smollm2(smollm2):
    from interp.decompositions.snmf_compare import compare_on_concepts

    out = compare_on_concepts(smollm2, 12)
    assert set(out["summary"]) >= {"snmf", "diffmeans"}
    assert all(abs(r["kl"] - 0.25) < 0.02 for r in out["rows"])
