"""Circuit discovery, head roles, the pipeline / CLI on tiny models; the IOI targets on SmolLM2 (slow)."""

import json

import pytest
import torch

from interp.attribution import AttributionResult, activation_patching, component_types
from interp.circuits import CircuitConfig, classify_heads, discover_circuit, rank_components
from interp.circuits.compare import pearson
from interp.circuits.discovery import size_grid
from interp.tasks import Task, ioi_task


def _task(model):
    return Task.from_prompts(model, ["abc defg", "xyz wvut", "hij klmn"], ["abd degg", "xzz wvat", "hkj kamn"],
                             answers=[("a", "b"), ("c", "d"), ("e", "f")])


def test_discovery_finds_smallest_prefix_and_is_verified_by_patching(tiny_llama):
    task = _task(tiny_llama)
    res = activation_patching(tiny_llama, task, components=("attn_head", "mlp"), progress=False)
    c = discover_circuit(tiny_llama, task, res, CircuitConfig(share=0.6, grid=40))
    F = dict(zip(c.curve_sizes, c.curve_faithfulness))
    k = len(c.components)
    assert F[k] >= 0.6 and all(F[j] < 0.6 for j in range(k) if j in F)  # smallest measured size
    assert c.curve_sizes == list(range(c.n_total + 1))  # grid 40 > 10 components: every size measured
    assert F[0] == pytest.approx(0.0) and F[c.n_total] == pytest.approx(1.0)
    # the empty circuit (all heads + MLPs corrupted) is the corrupted run: same last token
    assert c.metric_empty == pytest.approx(res.metric_corrupt, abs=1e-4)
    assert c.metric_full == pytest.approx(res.metric_clean, abs=1e-5)
    ranked = rank_components(res, component_types(("attn_head", "mlp")), "abs")
    assert [abs(r[3]) for r in ranked] == sorted([abs(r[3]) for r in ranked], reverse=True)
    assert c.components[0].startswith("blocks.") and c.to_json()["n_components"] == k


def test_planted_scores_rank_circuit(tiny_llama):
    """Scores planted by hand: discovery must follow them (first components in the given order)."""
    task = _task(tiny_llama)
    scores = {"attn_head": torch.zeros(2, 4), "mlp": torch.zeros(2)}
    scores["mlp"][1], scores["attn_head"][0, 2] = 5.0, 4.0
    fake = AttributionResult("planted", scores, 0.0, 0.0, 0.0)
    c = discover_circuit(tiny_llama, task, fake, CircuitConfig(share=1.0, grid=40))
    assert c.n_total == 10
    if len(c.components) >= 2:
        assert c.components[:2] == ["blocks.1.hook_mlp_out", "blocks.0.attn.hook_z[2]"]


def test_config_errors(tiny_llama):
    with pytest.raises(ValueError, match="share"):
        CircuitConfig(share=1.5)
    with pytest.raises(ValueError, match="order"):
        CircuitConfig(order="random")
    task = _task(tiny_llama)
    fake = AttributionResult("x", {"mlp": torch.zeros(2)}, 0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="no scores for"):
        discover_circuit(tiny_llama, task, fake)
    same = Task.from_prompts(tiny_llama, ["ab"], ["ab"], answers=[("a", "b")])
    res = AttributionResult("x", {"attn_head": torch.zeros(2, 4), "mlp": torch.zeros(2)}, 0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="does not change"):
        discover_circuit(tiny_llama, same, res)


def test_size_grid_and_pearson():
    g = size_grid(300, 10)
    assert g[0] == 0 and g[-1] == 300 and g == sorted(set(g))
    assert pearson(torch.tensor([1.0, 2, 3]), torch.tensor([2.0, 4, 6])) == pytest.approx(1.0)
    assert pearson(torch.tensor([1.0, 2, 3]), torch.tensor([3.0, 2, 1])) == pytest.approx(-1.0)


def test_head_roles_previous_token_planted(tiny_llama):
    """Force head 0.1 to attend to the previous token and head 1.2 to the IO name: the tests must see it."""
    task = ioi_task(tiny_llama, n=4)

    def plant(pat, hook):
        pat = pat.clone()
        T = pat.shape[-1]
        if hook.layer() == 0:
            pat[:, 1] = torch.diag(torch.ones(T - 1), -1)
            pat[:, 1, 0, 0] = 1.0
        else:
            pat[:, 2] = 0.0
            for b in range(pat.shape[0]):
                if pat.shape[0] == task.n:
                    pat[b, 2, :, task.positions["IO"][b]] = 1.0
        return pat

    tiny_llama.add_hook("blocks.0.attn.hook_pattern", plant, is_permanent=True)
    tiny_llama.add_hook("blocks.1.attn.hook_pattern", plant, is_permanent=True)
    try:
        hr = classify_heads(tiny_llama, task)
    finally:
        tiny_llama.reset_hooks(including_permanent=True)
    assert hr.scores["previous_token"][0, 1] == pytest.approx(1.0)
    assert hr.roles["0.1"] == "previous_token"
    assert hr.scores["name_mover"][1, 2] == pytest.approx(1.0) and hr.roles["1.2"] == "name_mover"
    with pytest.raises(ValueError, match="IOI positions"):
        classify_heads(tiny_llama, _task(tiny_llama))


def test_cli_circuit_and_compare(tmp_path, capsys):
    from interp.cli.main import main

    out = tmp_path / "c"
    assert main(["circuit", "ioi", "--model", "tiny-llama", "--method", "atp", "--n", "3", "--out", str(out),
                 "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    r = json.loads((out / "results.json").read_text())
    assert r["circuit"]["n_components"] == summary["n_components"] and (out / "report.html").stat().st_size > 1000
    assert set(r["scores"]["atp"]["scores"]) == {"resid", "attn_head", "mlp"}
    assert main(["circuit", "ioi", "--model", "tiny-llama", "--n", "0", "--out", str(out)]) == 2
    assert "--n must be" in capsys.readouterr().err
    assert main(["compare", "greater-than", "--model", "tiny-llama", "--n", "2", "--methods", "atp,relp",
                 "--json"]) == 0
    cmp = json.loads(capsys.readouterr().out)
    assert set(cmp["pearson"]) == {"atp", "relp"}
    assert main(["compare", "ioi", "--model", "tiny-llama", "--methods", "magic"]) == 2


@pytest.mark.slow
def test_ioi_circuit_target_smollm2(smollm2):
    """Target: <= 10% of heads+MLPs recover >= 80% of the clean logit difference (RelP ranking)."""
    from interp.circuits import run_circuit

    r = run_circuit(smollm2, "ioi", "relp", n=8)
    c = r["circuit"]
    assert c["faithfulness"] >= 0.8
    assert c["fraction"] <= 0.10, c["fraction"]
