"""Circuit discovery, head roles, the pipeline / CLI on tiny models; the IOI targets on SmolLM2 (slow)."""

import json

import pytest
import torch

from interp.attribution import AttributionResult, activation_patching, component_types
from interp.circuits import CircuitConfig, classify_heads, discover_circuit, rank_components
from interp.results import pearson
from interp.circuits.discovery import size_grid
from interp.tasks import Task, ioi_task


def _task(model):
    return Task.from_prompts(model, ["abc defg", "xyz wvut", "hij klmn"], ["abd degg", "xzz wvat", "hkj kamn"],
                             answers=[("a", "b"), ("c", "d"), ("e", "f")])


def test_discovery_finds_smallest_prefix_and_is_verified_by_patching(tiny_llama):
    task = _task(tiny_llama)
    res = activation_patching(tiny_llama, task, components=("attn_head", "mlp"), progress=False)
    c = discover_circuit(tiny_llama, task, res, CircuitConfig(share=0.6))
    F = dict(zip(c.curve_sizes, c.curve_faithfulness))
    k = len(c.components)
    assert c.curve_sizes == list(range(c.n_total + 1))  # default: every size measured
    assert F[k] >= 0.6 and all(F[j] < 0.6 for j in range(k))  # the smallest size
    assert F[0] == pytest.approx(0.0) and F[c.n_total] == pytest.approx(1.0)
    # the empty circuit (all heads + MLPs corrupted) is the corrupted run: same last token
    # float32 forward, all components patched: 840 eps32 x |m|
    assert c.metric_empty == pytest.approx(res.metric_corrupt, abs=1e-4)
    # float32 forward in another batch layout: 84 eps32 x |m|
    assert c.metric_full == pytest.approx(res.metric_clean, abs=1e-5)
    ranked = rank_components(res, component_types(("attn_head", "mlp")), "abs")
    assert [abs(r[3]) for r in ranked] == sorted([abs(r[3]) for r in ranked], reverse=True)
    assert c.components[0].startswith("blocks.") and c.to_json()["n_components"] == k


@pytest.mark.parametrize("direction", ["denoise", "noise"])
@pytest.mark.parametrize("arch", ["tiny_llama", "tiny_gpt2"])
def test_every_method_agrees_in_sign_with_patching_in_both_directions(arch, direction, request):
    """run_method(..., direction=d): AtP, RelP and IG estimate activation patching in direction d, so
    each correlates positively with patching (source d) on every component type.  Measured (3 prompts,
    IG 8 steps): lowest r 0.61 (AtP resid, tiny-llama, noise), the others >= 0.74; a method scored in
    the other direction has the opposite sign (r <= -0.6).  MLP has 2 layers, so its r is +-1: a sign."""
    from interp.circuits.pipeline import run_method

    model = request.getfixturevalue(arch)
    task = _task(model)
    res = {m: run_method(model, task, m, per_position=("resid",), direction=direction, steps=8)
           for m in ("patch", "atp", "relp", "ig")}
    truth = res["patch"]
    assert truth.config["source"] == direction
    for m in ("atp", "relp", "ig"):
        for c in ("resid", "attn_head", "mlp"):
            assert truth.scores[c].abs().max() > 1e-4  # a non-trivial effect is compared
            r = pearson(res[m].scores[c], truth.scores[c])
            assert r > 0.5, (m, c, r)  # 0.5: below the measured minimum 0.61, far above a flipped sign's -0.6


# F(k) for k = 0..10 kept components: not monotone, first over 0.8 at k = 3, under it again for k = 4..7
_NON_MONOTONE_F = [0.0, 0.2, 0.5, 0.85, 0.4, 0.3, 0.6, 0.7, 0.9, 0.95, 1.0]


def _fake_complement_metric(model, task, keep_masks, types, source="corrupt", acts=None, max_tokens=4096):
    """m(top-k kept) = _NON_MONOTONE_F[k] (k = number of kept units), so m(empty) = 0, m(all) = 1."""
    return torch.tensor([_NON_MONOTONE_F[sum(int(m.sum()) for m in km.values())] for km in keep_masks])


def test_discovery_on_non_monotone_F(tiny_llama, monkeypatch):
    """A constructed non-monotone F(k): the default returns the smallest k with F >= share (3); grid
    mode returns exactly what its definition says: grid {0, 2, 10} (grid=3), first grid size over 0.8
    is 10, bisection on (2, 10]: F(6) = .6 < .8 -> lo 6, F(8) = .9 -> hi 8, F(7) = .7 -> lo 7 -> 8."""
    import interp.circuits.faithfulness as faith
    from interp.models.hooks import head_hook, mlp_hook

    task = _task(tiny_llama)
    scores = {"attn_head": torch.arange(8.0).reshape(2, 4), "mlp": torch.tensor([8.0, 9.0])}
    fake = AttributionResult("planted", scores, 0.0, 0.0, 0.0)
    monkeypatch.setattr(faith, "complement_metric", _fake_complement_metric)
    c = discover_circuit(tiny_llama, task, fake, CircuitConfig(share=0.8))
    assert len(c.components) == 3 and c.faithfulness == pytest.approx(0.85)
    assert c.curve_faithfulness == pytest.approx(_NON_MONOTONE_F)
    g = discover_circuit(tiny_llama, task, fake, CircuitConfig(share=0.8, grid=3))
    assert size_grid(10, 3) == [0, 2, 10]
    assert len(g.components) == 8 and g.curve_sizes == [0, 2, 6, 7, 8, 10]
    assert g.components == c.components + [head_hook(l, i[0]) if t.name == "attn_head" else mlp_hook(l) for t, l, i, _ in
                                           rank_components(fake, component_types(("attn_head", "mlp")), "abs")[3:8]]  # the same ranking, a longer prefix


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
    # approx default: exact collinear data
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
        hr = classify_heads(tiny_llama, task, copy_threshold=0.0)  # the pattern alone (copy tested below)
    finally:
        tiny_llama.reset_hooks(including_permanent=True)
    assert hr.scores["previous_token"][0, 1] == pytest.approx(1.0)  # approx default: a planted attention pattern
    assert hr.roles["L0H1"] == "previous_token"
    # approx default: a planted pattern
    assert hr.scores["name_mover"][1, 2] == pytest.approx(1.0) and hr.roles["L1H2"] == "name_mover"
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
    assert r["kind"] == "circuit" and r["scores"]["method"] == "atp"
    assert set(r["scores"]["scores"]) == {"resid", "attn_head", "mlp"}
    assert main(["circuit", "ioi", "--model", "tiny-llama", "--n", "0", "--out", str(out)]) == 2
    assert "n must be >= 1" in capsys.readouterr().err
    assert main(["compare", "greater-than", "--model", "tiny-llama", "--n", "2", "--methods", "atp,relp",
                 "--out", str(tmp_path / "gt"), "--json"]) == 0
    cmp = json.loads(capsys.readouterr().out)
    assert set(cmp["pearson"]) == {"atp", "relp"}
    assert main(["compare", "ioi", "--model", "tiny-llama", "--methods", "magic"]) == 2
    capsys.readouterr()
    assert main(["compare", "ioi", "--model", "tiny-llama", "--n", "2", "--methods", "atp", "--corruption", "s2",
                 "--out", str(tmp_path / "s2")]) == 0
    r = json.loads((tmp_path / "s2" / "results.json").read_text())
    assert set(r["pearson"]["atp"]) == {"resid", "attn", "attn_head", "mlp"} and r["paper"]["relp"]["attn"] == 0.962
    assert r["corruption"].startswith("S2 -> IO") and "S2 -&gt; IO" in (tmp_path / "s2" / "report.html").read_text()
    assert main(["compare", "greater-than", "--model", "tiny-llama", "--corruption", "s2"]) == 2
    assert "no corruption 's2'" in capsys.readouterr().err


@pytest.mark.slow
def test_ioi_circuit_target_smollm2(smollm2):
    """Target: <= 10% of heads+MLPs recover >= 80% of the clean logit difference (greedy search, RelP prior).

    Measured here (8 prompts, seed 0): 17/300 components, F = 0.857 on the discovery prompts; the same
    circuit on 16 held-out prompts (seed 1) keeps F = 0.740, below the target: the held-out value is
    recorded, not asserted.  With 16 discovery prompts (seed 0) the search gave 20/300, F = 0.854, and
    0.843 on the held-out 16 (seed 1): use --n 16 for a circuit that generalises.  Takes ~15-20 min
    (n=8) on a shared 2-core CPU.
    """
    import math

    from interp.circuits import run_circuit

    r = run_circuit(smollm2, "ioi", method="relp", n=8, examples=False, check_patching=False, edges=False)
    c = r.circuit
    assert c["method"] == "greedy" and c["minimal"]
    assert c["faithfulness"] >= 0.8 + 0.05
    assert c["fraction"] <= 0.10, c["fraction"]
    assert all(f < c["threshold"] for f in c["single_removal_F"].values())
    assert math.isfinite(c["heldout"]["F"]) and c["heldout"]["n"] == 16


# ---------------------------------------------------------------------------------------------
# greedy search by real patching (interp/circuits/discovery.py)
# ---------------------------------------------------------------------------------------------
def _hand_metric(model, task, keep_heads, keep_mlps, source):
    """m(S) with plain hooks written here: every head / MLP outside S gets its corrupted (or clean-mean) value."""
    from interp.models import scoped_hooks

    L, H = model.cfg.n_layers, model.cfg.n_heads
    names = [f"blocks.{l}.attn.hook_z" for l in range(L)] + [f"blocks.{l}.hook_mlp_out" for l in range(L)]

    def cache(tokens):
        out = {}

        def save(name):
            def fn(x, hook):
                out[name] = x.detach().clone()
            return fn

        with torch.no_grad(), scoped_hooks(model, fwd=[(n, save(n)) for n in names]):
            model(tokens)
        return out

    src = cache(task.corrupt) if source == "corrupt" else {n: a.mean(0, keepdim=True).expand_as(a).clone()
                                                          for n, a in cache(task.clean).items()}

    def patch(name, l):
        def fn(x, hook):
            x = x.clone()
            if "hook_z" in name:
                for h in range(H):
                    if (l, h) not in keep_heads:
                        x[:, :, h] = src[name][:, :, h]
            elif l not in keep_mlps:
                x = src[name].clone()
            return x
        return fn

    fwd = [(f"blocks.{l}.attn.hook_z", patch(f"blocks.{l}.attn.hook_z", l)) for l in range(L)]
    fwd += [(f"blocks.{l}.hook_mlp_out", patch(f"blocks.{l}.hook_mlp_out", l)) for l in range(L)]
    with torch.no_grad(), scoped_hooks(model, fwd=fwd):
        return task.metric(model(task.clean)).float().mean().item()


def _hand_F(model, task, components, source):
    from interp.models.hooks import parse_component

    units = [parse_component(c) for c in components]
    heads = {(l, i[0]) for t, l, i in units if t == "attn_head"}
    mlps = {l for t, l, i in units if t == "mlp"}
    L, H = model.cfg.n_layers, model.cfg.n_heads
    full = _hand_metric(model, task, {(l, h) for l in range(L) for h in range(H)}, set(range(L)), source)
    empty = _hand_metric(model, task, set(), set(), source)
    return (_hand_metric(model, task, heads, mlps, source) - empty) / (full - empty)


@pytest.mark.parametrize("source", ["corrupt", "mean"])
def test_greedy_search_F_matches_hand_hooks_and_is_minimal(tiny_llama, source):
    from interp.attribution import attribution_patching
    from interp.circuits import SearchConfig, search_circuit

    task = ioi_task(tiny_llama, n=4, seed=0)
    prior = attribution_patching(tiny_llama, task, ("attn_head", "mlp"), direction="noise")
    c = search_circuit(tiny_llama, task, prior, SearchConfig(share=0.8, source=source))
    assert 0 < len(c.components) < c.n_total == 10
    F = _hand_F(tiny_llama, task, c.components, source)
    assert F == pytest.approx(c.faithfulness, abs=1e-4) and F >= 0.8  # 1e-4 of F ~ 14 ulps of m / span
    assert c.minimal
    for drop in c.components:  # 1-minimal: dropping any one member takes F below the threshold
        rest = [x for x in c.components if x != drop]
        f_rest = _hand_F(tiny_llama, task, rest, source) if rest else 0.0
        assert f_rest < 0.8
        if rest:
            assert f_rest == pytest.approx(c.single_removal_F[drop], abs=1e-4)  # 14 ulps of m / span, as above
    # the trajectory is what was measured: every accepted step kept F >= threshold
    assert c.curve_sizes[0] == 10 and c.curve_sizes[-1] == len(c.components)
    assert all(f >= 0.8 for f in c.curve_faithfulness)


def test_denoise_is_the_corrupted_run_with_the_circuit_restored(tiny_llama):
    """ComponentPatcher.denoise(units) = (m(corrupted run, units from clean) - m(corrupt))
    / (m(clean) - m(corrupt)), against a hand-hooked corrupted run (the fraction fails if clean and corrupted
    swap, or the patch goes the other way)."""
    from interp.circuits import ComponentPatcher
    from interp.models import scoped_hooks

    task = ioi_task(tiny_llama, n=4, seed=0)
    clean = {}
    with torch.no_grad():
        with scoped_hooks(tiny_llama, fwd=[(f"blocks.{l}.{n}", lambda x, hook: clean.setdefault(hook.name, x))
                                           for l in (0, 1) for n in ("attn.hook_z", "hook_mlp_out")]):
            m_clean = task.metric(tiny_llama(task.clean)).float().mean().item()
        m_corr = task.metric(tiny_llama(task.corrupt)).float().mean().item()

    def restore(x, hook):
        x = x.clone()
        x[:, :, 3] = clean[hook.name][:, :, 3]
        return x

    fwd = [("blocks.1.attn.hook_z", restore), ("blocks.0.hook_mlp_out", lambda x, hook: clean[hook.name])]
    with torch.no_grad(), scoped_hooks(tiny_llama, fwd=fwd):
        m_den = task.metric(tiny_llama(task.corrupt)).float().mean().item()
    ev = ComponentPatcher(tiny_llama, task)
    # float32 forwards in another batch layout, ~10 ulps of m over a span of ~1: 1e-5
    want = (m_den - m_corr) / (m_clean - m_corr)
    assert ev.denoise([("attn_head", 1, (3,)), ("mlp", 0, ())]) == pytest.approx(want, abs=1e-5)
    assert ev.denoise([]) == pytest.approx(0.0, abs=1e-6)


def test_greedy_search_stays_inside_planted_circuit(tiny_llama):
    """Zero every head and MLP except a planted set: the others carry nothing, so none may enter the circuit,
    whatever order the prior suggests (here the prior ranks the silenced components as most important)."""
    from interp.circuits import ComponentPatcher, SearchConfig, circuit_faithfulness, search_circuit
    from interp.models import scoped_hooks
    from interp.models.hooks import parse_component

    task = _task(tiny_llama)
    planted_heads, planted_mlps = {(0, 1), (1, 2), (1, 3)}, {1}

    def silence(l):
        def z(x, hook):
            x = x.clone()
            for h in range(x.shape[2]):
                if (l, h) not in planted_heads:
                    x[:, :, h] = 0
            return x

        def mlp(x, hook):
            return x if l in planted_mlps else torch.zeros_like(x)
        return z, mlp

    fwd = []
    for l in range(2):
        z, mlp = silence(l)
        fwd += [(f"blocks.{l}.attn.hook_z", z), (f"blocks.{l}.hook_mlp_out", mlp)]
    adversarial = {"attn_head": torch.ones(2, 4), "mlp": torch.ones(2)}
    for l, h in planted_heads:
        adversarial["attn_head"][l, h] = 0.0
    adversarial["mlp"][1] = 0.0
    prior = AttributionResult("planted", adversarial, 0.0, 0.0, 0.0)
    planted = {f"blocks.{l}.attn.hook_z[{h}]" for l, h in planted_heads} | {"blocks.1.hook_mlp_out"}
    with scoped_hooks(tiny_llama, fwd=fwd):
        for p in (prior, None):
            c = search_circuit(tiny_llama, task, p, SearchConfig(share=0.9, max_group=2))
            assert set(c.components) <= planted, c.components
            assert c.faithfulness >= 0.9
            # 1e-5 of F = 1e-5 x span of m: with the unhooked span (5.1e-4) ~1.4 float32 ulps of m (0.037): tight
            assert circuit_faithfulness(tiny_llama, task, c.components)["F"] == pytest.approx(c.faithfulness, abs=1e-5)
            # the circuit's denoising check is that of its own members (same runs again: as tight as above)
            units = [parse_component(x) for x in c.components]
            assert c.denoise_recovered == pytest.approx(ComponentPatcher(tiny_llama, task).denoise(units), abs=1e-5)
        # as above
        assert circuit_faithfulness(tiny_llama, task, sorted(planted))["F"] == pytest.approx(1.0, abs=1e-5)


def test_search_errors(tiny_llama):
    from interp.circuits import SearchConfig, search_circuit
    from interp.models.hooks import parse_component

    with pytest.raises(ValueError, match="margin"):
        SearchConfig(margin=-0.1)
    with pytest.raises(ValueError, match="source"):
        SearchConfig(source="zero")
    with pytest.raises(ValueError, match="cannot parse"):
        parse_component("blocks.1.hook_resid_pre")
    same = Task.from_prompts(tiny_llama, ["ab"], ["ab"], answers=[("a", "b")])
    with pytest.raises(ValueError, match="does not change"):
        search_circuit(tiny_llama, same)
    with pytest.raises(ValueError, match="no scores for"):
        search_circuit(tiny_llama, _task(tiny_llama), AttributionResult("x", {"mlp": torch.zeros(2)}, 0.0, 0.0, 0.0))


def test_cli_circuit_greedy_heldout(tmp_path, capsys):
    from interp.cli.main import main

    out = tmp_path / "g"
    assert main(["circuit", "ioi", "--model", "tiny-llama", "--method", "atp", "--n", "4", "--heldout-n", "4",
                 "--source", "mean", "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    r = json.loads((out / "results.json").read_text())
    c = r["circuit"]
    assert summary["search"] == "greedy" and c["method"] == "greedy" and c["config"]["source"] == "mean"
    assert c["faithfulness"] >= 0.8 + 0.05 - 1e-9 and c["n_components"] == len(c["components"])
    assert c["heldout"]["seed"] == 1 and c["heldout"]["n"] == 4
    assert summary["heldout_faithfulness"] == c["heldout"]["F"]
    assert r["curve"]["chosen"] == c["n_components"] and r["curve"]["n_components"][-1] == 10
    assert "greedy_search" in r["timings"] and (out / "report.html").stat().st_size > 1000


def _planted_copier(l: int = 1, h: int = 2, n: int = 4, seed: int = 0):
    """A tiny grouped-query Llama (4 query heads, 2 KV heads) whose head ``l.h`` copies ``n`` planted
    names: its value rows (KV head ``h // 2``) map ``ln1`` of each name's residual vector to a one-hot
    in head space, its ``W_O`` columns map that one-hot to a direction whose unembedding favours the name."""
    from transformer_lens.model_bridge import TransformerBridge

    from interp.models.tiny import TinyConfig, char_tokenizer, tiny_hf_model

    tok = char_tokenizer()
    hf = tiny_hf_model(TinyConfig(arch="llama", n_heads=4, n_kv_heads=2, seed=seed), len(tok)).double()
    m = TransformerBridge.boot_transformers("tiny-llama", hf_model=hf, tokenizer=tok)
    m.eval()
    g = torch.Generator().manual_seed(seed)
    d, dh = m.cfg.d_model, m.cfg.d_head
    names = torch.tensor([10, 20, 30, 40][:n])
    resid = torch.randn(n, d, generator=g, dtype=torch.float64)
    attn = hf.model.layers[l].self_attn
    with torch.no_grad():
        X = m.blocks[l].ln1(resid).T  # [d, n]
        E = torch.eye(dh, n, dtype=torch.float64)
        kv = h // (m.cfg.n_heads // m.cfg.n_key_value_heads)
        attn.v_proj.weight[kv * dh:(kv + 1) * dh] = E @ torch.linalg.pinv(X)
        U = hf.lm_head.weight[names].T  # [d, n] unembedding directions of the names
        w = hf.model.norm.weight
        attn.o_proj.weight[:, h * dh:(h + 1) * dh] = 10 * (U / w[:, None]) @ E.T
    return m, names, resid, attn


def test_copy_scores_planted_head_and_sign():
    """A head built to copy the names scores copy 1 / negative copy 0 (at its GQA value head); with W_O
    negated the two swap -- the definition of the two scores (Wang et al. 2022)."""
    from interp.circuits.roles import copy_scores

    m, names, resid, attn = _planted_copier(l=1, h=2)
    pos, neg = copy_scores(m, names, resid, k=1)
    assert pos.shape == (2, 4) and pos[1, 2] == 1.0 and neg[1, 2] == 0.0
    with torch.no_grad():
        attn.o_proj.weight[:, 2 * 8:3 * 8] *= -1
    pos2, neg2 = copy_scores(m, names, resid, k=1)
    assert pos2[1, 2] == 0.0 and neg2[1, 2] == 1.0
    others = [(l, h) for l in range(2) for h in range(4) if (l, h) != (1, 2)]
    for l, h in others:  # untouched heads do not move
        assert pos2[l, h] == pos[l, h] and neg2[l, h] == neg[l, h]


def test_head_roles_copy_decides_name_mover(tiny_llama):
    """END -> IO attention is a name mover only with a copy score: the same planted pattern makes a
    name mover of a copying head, a negative name mover of an anti-copying one, and no name mover of
    a head whose OV does neither (copy threshold above its scores)."""
    task = ioi_task(tiny_llama, n=4)

    def plant(pat, hook):
        pat = pat.clone()
        if pat.shape[0] == task.n:
            pat[:, 2] = 0.0
            for b in range(task.n):
                pat[b, 2, :, task.positions["IO"][b]] = 1.0
        return pat

    tiny_llama.add_hook("blocks.1.attn.hook_pattern", plant, is_permanent=True)
    try:
        hr = classify_heads(tiny_llama, task, copy_threshold=0.0)
        c, nc = float(hr.scores["copy"][1, 2]), float(hr.scores["negative_copy"][1, 2])
        assert hr.roles["L1H2"] == "name_mover"  # threshold 0: every head copies "enough"; name_mover listed first
        hr_strict = classify_heads(tiny_llama, task, copy_threshold=max(c, nc) + 0.01)
        assert hr_strict.roles.get("L1H2") not in ("name_mover", "negative_name_mover")
        # approx default: the planted pattern
        assert hr_strict.scores["name_mover"][1, 2] == pytest.approx(1.0)  # the pattern score itself is kept
        assert not hr_strict.notes
    finally:
        tiny_llama.reset_hooks(including_permanent=True)


def test_head_roles_without_copy_scores_fall_back_with_a_note(tiny_llama, monkeypatch):
    """Where a bridge's v/o modules cannot be read, roles come from the patterns alone and ``notes`` says so."""
    import interp.circuits.roles as roles_mod

    def unreadable(*a, **k):
        raise AttributeError("'Block' has no attribute 'v'")

    monkeypatch.setattr(roles_mod, "copy_scores", unreadable)
    hr = classify_heads(tiny_llama, ioi_task(tiny_llama, n=4), threshold=0.0)
    assert "copy" not in hr.scores and len(hr.notes) == 1 and "copy scores skipped" in hr.notes[0]
    assert set(hr.roles.values()) <= set(roles_mod.ROLES) - {"negative_name_mover", "copy_suppression"}
    assert len(hr.roles) == tiny_llama.cfg.n_layers * tiny_llama.cfg.n_heads  # threshold 0: every head has a role


def test_config_or_keywords_never_both(tiny_llama):
    """Every circuit entry point takes its config dataclass or the fields as keywords; both is a TypeError
    before any work (the old `config or Config(**kw)` silently dropped the keywords and fails here)."""
    from interp.circuits import CircuitRunConfig, run_circuit
    from interp.circuits.edge_circuits import EdgeRunConfig, run_edges
    from interp.circuits.feature_circuits import PathSearch, greedy_paths
    from interp.circuits.sae_circuits import SAECircuitConfig, sae_circuit

    task = _task(tiny_llama)
    for call in (lambda: run_circuit(tiny_llama, "ioi", CircuitRunConfig(), method="atp"),
                 lambda: run_edges(tiny_llama, "ioi", EdgeRunConfig(), method="eap"),
                 lambda: sae_circuit(tiny_llama, task, SAECircuitConfig(), epochs=3),
                 lambda: greedy_paths(tiny_llama, {}, None, None, 0, config=PathSearch(), beam=3)):
        with pytest.raises(TypeError, match="not both"):
            call()
    assert CircuitRunConfig(method="atp", n=3) == CircuitRunConfig(**{"method": "atp", "n": 3})
    with pytest.raises(ValueError, match="unknown method"):
        run_circuit(tiny_llama, "ioi", method="magic")
    for bad, what in (({"share": 1.5}, "share"), ({"source": "zero"}, "source")):  # the searches' checks
        with pytest.raises(ValueError, match=what):
            CircuitRunConfig(**bad)
