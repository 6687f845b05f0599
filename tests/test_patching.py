"""Activation patching against hand-written hooks, and its invariants."""

import pytest
import torch

from interp.attribution import activation_patching, complement_metric, component_types
from interp.tasks import Task


def _task(model, same=False):
    clean = ["abc defg", "xyz wvut", "hij klmn"]
    corrupt = clean if same else ["abd degg", "xzz wvat", "hkj kamn"]
    return Task.from_prompts(model, clean, corrupt, answers=[("a", "b"), ("c", "d"), ("e", "f")])


def _hand_patch(model, task, hook, index, base="corrupt", value="clean"):
    """m(base run with act[index] <- value act[index]) - m(base run), by a hand-written hook."""
    src_tokens = task.clean if value == "clean" else task.corrupt
    with torch.no_grad():
        _, c = model.run_with_cache(src_tokens, names_filter=[hook])
    src = c[hook]
    if value == "mean":
        _, c = model.run_with_cache(task.clean, names_filter=[hook])
        src = c[hook].mean(0, keepdim=True).expand_as(c[hook])
    if value == "zero":
        src = torch.zeros_like(src)

    def fn(act, hook):
        act = act.clone()
        act[index] = src[index]
        return act

    tokens = task.corrupt if base == "corrupt" else task.clean
    with torch.no_grad():
        m0 = task.metric(model(tokens)).mean()
        with model.hooks(fwd_hooks=[(hook, fn)]):
            m1 = task.metric(model(tokens)).mean()
    return (m1 - m0).item()


@pytest.fixture(scope="module")
def tiny_gemma3():
    from interp.models import load_model

    return load_model("tiny-gemma3", device="cpu")


@pytest.mark.parametrize("name", ["tiny_llama", "tiny_gpt2", "tiny_gemma3"])
def test_patching_equals_hand_written_hook(name, request):
    model = request.getfixturevalue(name)
    task = _task(model)
    res = activation_patching(model, task, per_position=("resid",), max_tokens=300, progress=False)
    S = slice(None)
    # scores vs hand-patched forwards: the same float32 forward in another batch layout; |metric| < 1 here, so
    # 1e-5 ~ 84 eps32 x |metric| (the same bound for every abs=1e-5 below)
    assert res.scores["attn_head"][1, 2].item() == pytest.approx(
        _hand_patch(model, task, "blocks.1.attn.hook_z", (S, S, 2)), abs=1e-5)
    assert res.scores["mlp"][0].item() == pytest.approx(_hand_patch(model, task, "blocks.0.hook_mlp_out", (S,)), abs=1e-5)
    assert res.scores["resid"][1, 4].item() == pytest.approx(
        _hand_patch(model, task, "blocks.1.hook_resid_pre", (S, 4)), abs=1e-5)
    assert res.scores["attn_head"].shape == (2, 4) and res.scores["resid"].shape == (2, task.clean.shape[1])
    attn = activation_patching(model, task, components=("attn",), per_position=True, progress=False)
    assert attn.scores["attn"].shape == (2, task.clean.shape[1])  # the RelP paper's 'attn': per (layer, position)
    # as above: 1e-5 ~ 84 eps32 x |metric|
    assert attn.scores["attn"][1, 3].item() == pytest.approx(
        _hand_patch(model, task, "blocks.1.hook_attn_out", (S, 3)), abs=1e-5)
    # patching the whole residual stream at layer 0 reproduces the clean run
    full = activation_patching(model, task, components=("resid",), progress=False)
    assert full.scores["resid"][0].item() == pytest.approx(res.metric_clean - res.metric_corrupt, abs=1e-5)


@pytest.mark.parametrize("source,base,value", [("noise", "clean", "corrupt"), ("mean", "clean", "mean"),
                                               ("zero", "clean", "zero")])
def test_noise_mean_zero_ablation_equal_hand_hooks(tiny_llama, source, base, value):
    task = _task(tiny_llama)
    res = activation_patching(tiny_llama, task, components=("attn_head", "mlp"), source=source, progress=False)
    S = slice(None)
    # float32 patched forward vs a hand-patched one: 1e-5 ~ 84 eps32 x |metric| (< 1)
    assert res.scores["attn_head"][0, 3].item() == pytest.approx(
        _hand_patch(tiny_llama, task, "blocks.0.attn.hook_z", (S, S, 3), base=base, value=value), abs=1e-5)
    assert res.scores["mlp"][1].item() == pytest.approx(
        _hand_patch(tiny_llama, task, "blocks.1.hook_mlp_out", (S,), base=base, value=value), abs=1e-5)


def test_clean_equals_corrupt_gives_zero(tiny_gpt2):
    task = _task(tiny_gpt2, same=True)
    res = activation_patching(tiny_gpt2, task, per_position=True, progress=False)
    for v in res.scores.values():
        assert v.abs().max().item() < 1e-6  # a patch of x by x: rounding of equal forwards only, ~8 eps32 x |metric|


def test_complement_metric(tiny_llama):
    task = _task(tiny_llama)
    types = component_types(("attn_head", "mlp"))
    L, H = 2, 4
    full = {"attn_head": torch.ones(L, H, dtype=torch.bool), "mlp": torch.ones(L, dtype=torch.bool)}
    empty = {"attn_head": torch.zeros(L, H, dtype=torch.bool), "mlp": torch.zeros(L, dtype=torch.bool)}
    some = {"attn_head": torch.tensor([[1, 0, 0, 1], [0, 1, 0, 0]], dtype=torch.bool),
            "mlp": torch.tensor([0, 1], dtype=torch.bool)}
    m = complement_metric(tiny_llama, task, [full, empty, some], types)
    with torch.no_grad():
        m_clean = task.metric(tiny_llama(task.clean)).mean().item()
        m_corr = task.metric(tiny_llama(task.corrupt)).mean().item()
    assert m[0].item() == pytest.approx(m_clean, abs=1e-5)  # float32, stacked copies vs plain: 84 eps32 x |metric|
    # every head and MLP corrupted: the last position sees only corrupted information
    # plain vs stacked forward, every component swapped: 840 eps32 x |metric|
    assert m[1].item() == pytest.approx(m_corr, abs=1e-4)
    # hand-written: patch the complement of `some`
    with torch.no_grad():
        _, cc = tiny_llama.run_with_cache(task.corrupt)
    hooks = []
    for l in range(L):
        def hz(act, hook, l=l):
            act = act.clone()
            for h in range(H):
                if not some["attn_head"][l, h]:
                    act[:, :, h] = cc[f"blocks.{l}.attn.hook_z"][:, :, h]
            return act

        hooks.append((f"blocks.{l}.attn.hook_z", hz))
    hooks.append(("blocks.0.hook_mlp_out", lambda act, hook: cc["blocks.0.hook_mlp_out"]))
    with torch.no_grad(), tiny_llama.hooks(fwd_hooks=hooks):
        want = task.metric(tiny_llama(task.clean)).mean().item()
    assert m[2].item() == pytest.approx(want, abs=1e-5)  # float32, stacked copies vs plain: 84 eps32 x |metric|


def test_bad_inputs(tiny_llama):
    task = _task(tiny_llama)
    with pytest.raises(ValueError, match="unknown component type"):
        activation_patching(tiny_llama, task, components=("heads",), progress=False)
    with pytest.raises(ValueError, match="unknown source"):
        activation_patching(tiny_llama, task, source="resample", progress=False)
    with pytest.raises(ValueError, match="complement source"):
        complement_metric(tiny_llama, task, [], component_types(("mlp",)), source="zero")


def _second_position_metric(logits, task):
    """logit(correct) - logit(incorrect) read at position 2: a metric of a position other than the last."""
    ans = task.answers.to(logits.device)
    return logits[:, 2].gather(-1, ans[:, :1]).squeeze(-1) - logits[:, 2].gather(-1, ans[:, 1:2]).squeeze(-1)


@pytest.mark.parametrize("arch", ["tiny-llama", "tiny-gpt2", "tiny-pythia", "tiny-gemma3"])
def test_fast_forward_equals_reference(arch, fast):
    """The shortcuts (blocks before the first patched layer replayed, last-position logits) give the same
    scores as every copy's full forward, for every component type per position; with max_tokens small
    enough that passes start at different layers.  A metric reading another position turns the
    last-position shortcut off (and still agrees)."""
    from interp.models import load_model

    model = load_model(arch, device="cpu")
    for metric in ("logit_diff", _second_position_metric):
        task = Task.from_prompts(model, ["abc defg", "xyz wvut"], ["abd degg", "xzz wvat"],
                                 answers=[("a", "b"), ("c", "d")], metric=metric)
        kw = dict(components=("resid", "attn", "attn_head", "mlp"), per_position=("resid", "attn", "mlp"),
                  max_tokens=5 * task.clean.numel(), progress=False)
        chosen = activation_patching(model, task, **kw)  # the switch (INTERP_REFERENCE) picks the path
        other = activation_patching(model, task, fast=not fast, **kw)
        fast_r, ref = (chosen, other) if fast else (other, chosen)
        want = "prefix replay + last-position logits" if metric == "logit_diff" else "prefix replay"
        assert fast_r.config["forward"] == want and ref.config["forward"] == "full"
        for k, v in ref.scores.items():
            assert v.abs().max() > 1e-3
            # the replayed blocks gave bit-equal scores here; unembedding 1 position instead of T rounds the
            # matmul differently: measured max |diff| 4.5e-8 over the 4 archs at 1 thread; 1e-6 is a 20x margin
            assert torch.allclose(fast_r.scores[k], v, rtol=0, atol=1e-6), (arch, metric, k)


def _entry_points():
    from interp.attribution import (AtPConfig, IGConfig, LayerIGConfig, PatchingConfig, RelPConfig,
                                    attribution_patching, integrated_gradients, layer_integrated_gradients,
                                    relevance_patching)

    # (entry point, its config class, non-default settings, a settings keyword to clash with a config)
    return [(activation_patching, PatchingConfig, {"source": "noise", "progress": False}, "max_tokens"),
            (attribution_patching, AtPConfig, {"direction": "noise"}, "direction"),
            (relevance_patching, RelPConfig, {"direction": "noise", "rules": "default+cp-lrp"}, "rules"),
            (integrated_gradients, IGConfig, {"steps": 3, "direction": "noise"}, "fast"),
            (layer_integrated_gradients, LayerIGConfig, {"steps": 3, "fast": False}, "steps")]


@pytest.mark.parametrize("i", range(5))
def test_settings_one_way(tiny_llama, i):
    """Each entry point takes its settings as keywords that are exactly its config's fields (same names,
    same defaults, in order) or as ``config=``: both give the same result, and both at once is a TypeError
    naming the clash (a wrapper that let the config or the keywords silently win fails the last checks)."""
    import dataclasses
    import inspect

    fn, cls, settings, clash = _entry_points()[i]
    params = inspect.signature(fn).parameters.values()
    kw_only = [(p.name, p.default) for p in params if p.kind is p.KEYWORD_ONLY and p.name != "config"]
    assert kw_only == [(f.name, f.default) for f in dataclasses.fields(cls)]
    task = _task(tiny_llama)
    args = (tiny_llama, task.clean, task.metric) if cls.__name__ == "LayerIGConfig" else (tiny_llama, task, ("mlp",))
    by_kw, by_cfg = fn(*args, **settings), fn(*args, config=cls(**settings))
    default = fn(*args, **({"progress": False} if "progress" in settings else {}))
    out = (lambda r: r.attributions) if cls.__name__ == "LayerIGConfig" else (lambda r: r.scores["mlp"])
    assert torch.equal(out(by_kw), out(by_cfg))
    assert not torch.allclose(out(by_kw), out(default))  # the settings reached the computation
    with pytest.raises(TypeError, match=f"either config=.*{clash}.*not both"):
        fn(*args, config=cls(**settings), **{clash: getattr(cls(), clash)})
    with pytest.raises(TypeError, match=f"config must be a {cls.__name__}"):
        fn(*args, config=dict(settings))
    for other in {c for _, c, _, _ in _entry_points()} - {cls}:  # a sibling's config (e.g. RelP's rules for AtP)
        with pytest.raises(TypeError, match=f"config must be a {cls.__name__}, not {other.__name__}"):
            fn(*args, config=other())
    with pytest.raises(TypeError, match="unexpected keyword"):
        fn(*args, no_such_setting=1)
