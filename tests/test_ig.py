"""Integrated gradients: completeness, agreement with captum, component scores."""

import pytest
import torch

from interp.attribution.captum_ig import captum_layer_ig
from interp.attribution.ig import METHODS, integrated_gradients, layer_integrated_gradients, quadrature
from interp.tasks import Task


def _task(model):
    return Task.from_prompts(model, ["abc defg", "xyz wvut"], ["abd degg", "xzz wvat"],
                             answers=[("a", "b"), ("c", "d")])


# captum's LayerIntegratedGradients swaps in a steps*B layer output; at a mid-layer resid_pre hook
# captum_layer_ig attaches to the block's input (attribute_to_layer_input=True), see captum_ig.py.
@pytest.mark.parametrize("hook", ["hook_embed", "blocks.1.hook_resid_pre"])
@pytest.mark.parametrize("method", ["gausslegendre", "riemann_trapezoid"])
def test_ig_matches_captum(tiny_llama, hook, method):
    task = _task(tiny_llama)
    ours = layer_integrated_gradients(tiny_llama, task.clean, task.metric, hook=hook, baseline=task.corrupt,
                                      steps=12, method=method)
    ref = captum_layer_ig(tiny_llama, task.clean, task.metric, hook=hook, baseline_tokens=task.corrupt,
                          steps=12, method=method)
    if method == "riemann_trapezoid":
        # captum weights its trapezoid nodes (1/11 apart) by 1/12 instead of 1/11 (sum 11/12, not 1):
        # same nodes, so its attributions are ours times 11/12; its delta is then off by 1/12 of F's change
        ref.attributions.mul_(12 / 11)
        ref.delta = ref.attributions.sum((1, 2)) - (ref.f_input - ref.f_baseline)
    scale = ref.attributions.abs().max()
    # float32 re-sums: 84 eps32 of max
    assert torch.allclose(ours.attributions, ref.attributions, atol=1e-5 * scale + 1e-8)
    assert torch.allclose(ours.delta, ref.delta, atol=1e-5)  # float32 delta of |F| ~ 1: 84 eps32


def test_ig_completeness(tiny_gpt2):
    task = _task(tiny_gpt2)
    r = layer_integrated_gradients(tiny_gpt2, task.clean, task.metric, baseline=task.corrupt)
    assert r.relative_delta < 0.02
    # completeness up to delta, the quadrature error checked above
    assert torch.allclose(r.attributions.sum((1, 2)), r.f_input - r.f_baseline, atol=1e-4)
    z = layer_integrated_gradients(tiny_gpt2, task.clean, task.metric, hook="blocks.1.hook_mlp_out", baseline="zeros")
    assert z.relative_delta < 0.02 and z.token_scores().shape == task.clean.shape


def test_quadrature_is_exact_on_polynomials():
    a, w = quadrature(4, "gausslegendre")
    # Gauss-Legendre, 4 nodes: exact to degree 7 in float64
    assert float((w * a**5).sum()) == pytest.approx(1 / 6, abs=1e-12)  # exact to degree 7
    a, w = quadrature(3, "riemann_trapezoid")
    assert a.tolist() == [0.0, 0.5, 1.0] and w.tolist() == [1 / 4, 1 / 2, 1 / 4]
    # every rule integrates a constant and a line exactly (the trapezoid, midpoint and Gauss rules also
    # the line's slope; the left/right sums are off by half a step on it): float64 sums of <= 12 terms
    for method in METHODS:
        a, w = quadrature(12, method)
        assert float(w.sum()) == pytest.approx(1.0, abs=1e-12), method
        if method in ("gausslegendre", "riemann_middle", "riemann_trapezoid"):
            assert float((w * a).sum()) == pytest.approx(0.5, abs=1e-12), method


def _embedding_path_node_score(model, task, hook, direction, steps):
    """EAP-IG node score at ``hook`` by hand: one plain forward + torch.autograd.grad per quadrature
    node, the input embeddings moved along the straight path by a hand-written hook; returns the
    per-position score (batch mean of (a_src - a_base) . sum_k w_k dm/da at the path's points)."""
    alphas, weights = quadrature(steps)
    with torch.no_grad():
        _, cc = model.run_with_cache(task.clean, names_filter=["hook_embed", hook])
        _, ck = model.run_with_cache(task.corrupt, names_filter=["hook_embed", hook])
    (e_src, a_src), (e_base, a_base) = ((cc["hook_embed"], cc[hook]), (ck["hook_embed"], ck[hook]))
    if direction == "noise":
        (e_src, a_src), (e_base, a_base) = (e_base, a_base), (e_src, a_src)
    g = torch.zeros_like(a_src)
    for a, w in zip(alphas.tolist(), weights.tolist()):
        box = {}

        def save(x, hook):
            box["x"] = x
            return x

        emb = (e_base + a * (e_src - e_base)).requires_grad_(True)
        with torch.enable_grad(), model.hooks(fwd_hooks=[("hook_embed", lambda x, hook: emb), (hook, save)]):
            m = task.metric(model(task.clean)).sum()
            g += w * torch.autograd.grad(m, box["x"])[0]
    return ((a_src - a_base) * g).sum(-1).mean(0)  # [T]


@pytest.mark.parametrize("direction", ["denoise", "noise"])
def test_component_ig_node_scores_match_hand_loop(tiny_llama, direction):
    """Embedding-path (EAP-IG node) scores == an independent per-step loop of plain forwards and
    autograd.grad; the noising path gives the noising scores (opposite path, (a_corrupt - a_clean))."""
    task = _task(tiny_llama)
    res = integrated_gradients(tiny_llama, task, per_position=("mlp",), path="embeddings", steps=6,
                               direction=direction)
    assert res.extras["relative_delta"] < 0.02
    assert res.scores["mlp"].shape == (2, 9) and res.scores["attn_head"].shape == (2, 4)
    for layer in range(2):
        want = _embedding_path_node_score(tiny_llama, task, f"blocks.{layer}.hook_mlp_out", direction, 6)
        scale = want.abs().max().item()
        assert scale > 1e-5  # a non-trivial score is compared
        # float32 sums over d_model=64 and 6 steps, batched vs looped: ~1e-6 relative; 1e-4 leaves room
        got = res.scores["mlp"][layer]
        assert torch.allclose(got, want, atol=1e-4 * scale), (layer, got, want)


def test_ig_errors(tiny_llama):
    task = _task(tiny_llama)
    with pytest.raises(ValueError, match="unknown IG method"):
        quadrature(8, "simpson")
    with pytest.raises(ValueError, match="steps >= 2"):
        quadrature(1, "riemann_left")
    with pytest.raises(ValueError, match="must match"):
        layer_integrated_gradients(tiny_llama, task.clean, task.metric, baseline=task.corrupt[:1])


@pytest.mark.parametrize("arch", ["tiny_llama", "tiny_gpt2"])
@pytest.mark.parametrize("hook", ["blocks.1.hook_resid_pre", "blocks.1.attn.hook_z", "blocks.0.hook_mlp_out"])
def test_fast_path_agrees_with_reference(arch, hook, request):
    """Prefix reuse + last-position logits (fastpath.py) change no value: fast == plain reference path."""
    model = request.getfixturevalue(arch)
    task = _task(model)
    kw = dict(hook=hook, baseline=task.corrupt, steps=6)
    fast = layer_integrated_gradients(model, task.clean, task.metric, fast=True, **kw)
    ref = layer_integrated_gradients(model, task.clean, task.metric, fast=False, **kw)
    scale = ref.attributions.abs().max()
    assert scale > 0
    # float32 re-sums: 84 eps32 of max
    assert torch.allclose(fast.attributions, ref.attributions, atol=1e-5 * scale + 1e-8)
    assert torch.allclose(fast.delta, ref.delta, atol=1e-5)  # float32 delta of |F| ~ 1: 84 eps32
    # the blocks' forwards are restored: a plain run is unchanged afterwards
    assert not any("forward" in b.__dict__ for b in model.blocks)


def test_last_position_check():
    from interp.attribution.fastpath import reads_last_position_only

    logits = torch.randn(2, 5, 7)
    assert reads_last_position_only(lambda l: l[:, -1, 0] - l[:, -1, 1], logits)
    assert not reads_last_position_only(lambda l: l[:, -2, 0], logits)
    assert not reads_last_position_only(lambda l: l.mean((1, 2)), logits)


def _hook_patch_effect(model, task, hook, direction="denoise"):
    """Denoise: m(corrupt run with the whole hook <- clean value) - m(corrupt); noise: m(clean run
    with the hook <- corrupted value) - m(clean); by a hand-written hook."""
    src, base = (task.clean, task.corrupt) if direction == "denoise" else (task.corrupt, task.clean)
    with torch.no_grad():
        _, c = model.run_with_cache(src, names_filter=[hook])
        m0 = task.metric(model(base))
        value = c[hook]
        with model.hooks(fwd_hooks=[(hook, lambda a, hook: value)]):
            m1 = task.metric(model(base))
    return (m1 - m0).mean().item()


@pytest.mark.parametrize("direction", ["denoise", "noise"])
@pytest.mark.parametrize("arch", ["tiny_llama", "tiny_gpt2"])
def test_hook_ig_completeness_equals_patching_the_hook(arch, direction, request):
    """Per hook, the IG attributions sum to activation patching of that whole hook (its definition),
    in the direction asked for: noising IG is the path inside the clean run."""
    model = request.getfixturevalue(arch)
    task = _task(model)
    res = integrated_gradients(model, task, per_position=("resid", "mlp"), steps=16, direction=direction)
    assert res.config["direction"] == direction
    for ctype, hook in [("mlp", "blocks.0.hook_mlp_out"), ("attn_head", "blocks.1.attn.hook_z"),
                        ("resid", "blocks.1.hook_resid_pre")]:
        layer = int(hook.split(".")[1])
        want = _hook_patch_effect(model, task, hook, direction)
        assert abs(want) > 1e-4
        # IG completeness up to its quadrature error (the method's; max_abs_delta_over_max_effect < 2e-3 below)
        assert res.scores[ctype][layer].sum().item() == pytest.approx(want, rel=2e-3, abs=1e-5)
        # float32 difference of two forwards
        assert res.extras["hook_completeness"][ctype][layer]["patch_effect"] == pytest.approx(want, rel=1e-4, abs=1e-6)
    # the quadrature error, measured relative to the largest effect
    assert res.extras["max_abs_delta_over_max_effect"] < 2e-3
    ref = integrated_gradients(model, task, per_position=("resid", "mlp"), steps=16, fast=False, direction=direction)
    for k in res.scores:
        # float32 re-sums: 84 eps32 of max
        assert torch.allclose(res.scores[k], ref.scores[k], atol=1e-5 * ref.scores[k].abs().max() + 1e-8)


@pytest.mark.parametrize("arch", ["tiny-llama", "tiny-gpt2"])
def test_hook_ig_equals_atp_and_patching_when_linear(arch):
    """ln_final's scale frozen: the metric is linear in the last MLP output, so IG == AtP == patching."""
    from interp.attribution import activation_patching, attribution_patching
    from interp.models import load_model

    model = load_model(arch, device="cpu")
    task = _task(model)
    model.add_hook("ln_final.hook_scale", lambda s, hook: torch.full_like(s, 0.05), is_permanent=True)
    try:
        ig = integrated_gradients(model, task, ("mlp",), per_position=True, steps=3)
        ap = activation_patching(model, task, ("mlp",), per_position=True, progress=False)
        atp = attribution_patching(model, task, ("mlp",), per_position=True)
    finally:
        model.reset_hooks(including_permanent=True)
    last = model.cfg.n_layers - 1
    b = ap.scores["mlp"][last]
    assert b.abs().max() > 1e-4
    tol = 1e-4 * b.abs().max().item()
    assert torch.allclose(ig.scores["mlp"][last], b, atol=tol)  # linear case: float32, 840 eps32 of max
    assert torch.allclose(atp.scores["mlp"][last], b, atol=tol)  # the same tol


def test_embedding_path_ig_still_complete(tiny_llama):
    res = integrated_gradients(tiny_llama, _task(tiny_llama), path="embeddings")
    assert res.extras["relative_delta"] < 0.02
    with pytest.raises(ValueError, match="unknown path"):
        integrated_gradients(tiny_llama, _task(tiny_llama), path="sideways")
    with pytest.raises(ValueError, match="unknown direction"):
        integrated_gradients(tiny_llama, _task(tiny_llama), direction="sideways")


@pytest.mark.parametrize("arch", ["tiny_llama", "tiny_gpt2"])
@pytest.mark.parametrize("max_tokens", [1, 4096])  # one hook per pass (a pass with no live hook); all in one
def test_hook_ig_is_zero_for_a_hook_whose_value_never_reaches_the_metric(arch, max_tokens, fast, request):
    """A user hook holds layer 1's attention output at a fixed value, so layer 1's heads (hook_z) differ
    between clean and corrupt but the metric does not depend on them: by the definition of IG their
    attributions are (a - a~) * 0 = 0 exactly, and completeness asks the same (patching them changes
    nothing, checked by a hand-written patch of random noise).  Their interpolated leaves never reach
    the metric, so autograd returns no gradient for them; layer 0's heads are scored as usual.  The same
    holds on the EAP-IG embeddings path, where the gradient at the saved hook_z is the one missing."""
    model = request.getfixturevalue(arch)
    task = _task(model)
    with torch.no_grad():
        _, c = model.run_with_cache(task.clean[:1], names_filter=["blocks.1.hook_attn_out"])
    held = c["blocks.1.hook_attn_out"]
    model.add_hook("blocks.1.hook_attn_out", lambda x, hook: held.expand_as(x), is_permanent=True)
    try:
        res = integrated_gradients(model, task, ("attn_head",), per_position=True, steps=4,
                                   max_tokens=max_tokens)
        emb = integrated_gradients(model, task, ("attn_head",), steps=4, max_tokens=max_tokens, path="embeddings")
        with torch.no_grad():
            _, cc = model.run_with_cache(task.clean, names_filter=["blocks.1.attn.hook_z"])
            _, ck = model.run_with_cache(task.corrupt, names_filter=["blocks.1.attn.hook_z"])
            m0 = task.metric(model(task.corrupt))
            z = cc["blocks.1.attn.hook_z"]
            with model.hooks(fwd_hooks=[("blocks.1.attn.hook_z", lambda a, hook: torch.randn_like(a) * 10)]):
                m1 = task.metric(model(task.corrupt))
    finally:
        model.reset_hooks(including_permanent=True)
    assert torch.equal(m0, m1)  # the held attention output: layer 1's heads cannot move the metric
    assert (z - ck["blocks.1.attn.hook_z"]).abs().max() > 1e-3  # but they differ, so a wrong gradient shows
    assert res.config["forward"] == ("replay" if fast else "plain")
    assert torch.equal(res.scores["attn_head"][1], torch.zeros_like(res.scores["attn_head"][1]))
    assert res.scores["attn_head"][0].abs().max() > 1e-4  # layer 0 still reaches the metric
    assert torch.equal(emb.scores["attn_head"][1], torch.zeros_like(emb.scores["attn_head"][1]))
    assert emb.scores["attn_head"][0].abs().max() > 1e-4
    # layer 0's attributions sum to its patch (completeness up to the quadrature error of 4 nodes)
    e = res.extras["hook_completeness"]["attn_head"][0]
    assert abs(e["delta"]) < 0.05 * abs(e["patch_effect"])
