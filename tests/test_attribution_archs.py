"""Every attribution method's definition, on every tiny architecture (Llama, GPT-2, Pythia, Gemma 3).

Gemma 3 normalises each sublayer's output (post-attention / post-feedforward RMSNorm) before adding it
to the residual stream; TransformerBridge aliases ``hook_attn_out`` / ``hook_mlp_out`` to those norms'
outputs, so on every architecture the ``attn`` and ``mlp`` components are what enters the residual
stream.  These tests pin that down and check, per architecture:

* the components are the residual addends (a hand-written hook that changes one changes the residual
  stream by exactly that amount);
* AtP, RelP and IG equal activation patching where the metric is linear in the patched activation;
* IG completeness per hook (its sum is patching of the whole hook);
* LRP conservation through each sublayer (relevance at the sublayer's output equals relevance at its
  normalised input) with the conservative rule set;
* a component that gets no gradient on a bridge is refused with an error naming it, never scored 0.
"""

import pytest
import torch

from interp.attribution import (COMPONENT_TYPES, ComponentType, activation_patching, attribution_patching,
                                cache_components, component_types, register_component_type, relevance_patching)
from interp.attribution.ig import integrated_gradients
from interp.attribution.lrp_rules import resolve_rules, rule_hooks
from interp.models import load_model
from interp.tasks import Task

ARCHS = ["tiny-llama", "tiny-gpt2", "tiny-pythia", "tiny-gemma3"]
EPS32 = torch.finfo(torch.float32).eps


@pytest.fixture(scope="module", params=ARCHS)
def model(request):
    return load_model(request.param, device="cpu")


def _task(model):
    return Task.from_prompts(model, ["abc defg", "xyz wvut", "hij klmn"], ["abd degg", "xzz wvat", "hkj kamn"],
                             answers=[("a", "b"), ("c", "d"), ("e", "f")])


def _run_saving(model, tokens, names, edits=()):
    """Activations at ``names`` (saved after the ``edits`` hooks, i.e. the values the forward goes on with)."""
    saved = {}

    def saver(name):  # keyed by the name asked for (hook.name is the canonical one, not the alias)
        def fn(x, hook):
            saved[name] = x.detach().clone()
            return x

        return fn

    with torch.no_grad(), model.hooks(fwd_hooks=list(edits) + [(n, saver(n)) for n in names]):
        model(tokens)
    return saved


def test_components_are_what_enters_the_residual_stream(model):
    """resid_post_L - resid_pre_L == attn_L + mlp_L, also after a hand-written hook shifts attn_L and mlp_L:
    patching a component changes exactly the residual-stream addition (on Gemma 3 the post-norm outputs,
    not the raw sublayer outputs, which go through the post-norm's non-linear scale)."""
    task = _task(model)
    L = model.cfg.n_layers - 1
    attn, mlp = (component_types(c)[0].hook_name(L) for c in ("attn", "mlp"))
    pre, post = f"blocks.{L}.hook_resid_pre", f"blocks.{L}.hook_resid_post"
    base = _run_saving(model, task.corrupt, [pre, attn, mlp, post])
    g = torch.Generator().manual_seed(0)
    d_attn = torch.randn(base[attn].shape, generator=g) * base[attn].std()
    d_mlp = torch.randn(base[mlp].shape, generator=g) * base[mlp].std()
    edits = [(attn, lambda x, hook: x + d_attn), (mlp, lambda x, hook: x + d_mlp)]
    shifted = _run_saving(model, task.corrupt, [pre, attn, mlp, post], edits)
    for run in (base, shifted):
        scale = max(v.abs().max().item() for v in run.values())
        # three float32 additions, possibly in another order than the model's (Pythia's parallel block adds
        # mlp + attn + resid): at most a few ulps of the largest operand; 8 ulps leave margin
        assert torch.allclose(run[post] - run[pre], run[attn] + run[mlp], rtol=0, atol=8 * EPS32 * scale)
    assert torch.equal(shifted[pre], base[pre])
    assert torch.allclose(shifted[attn], base[attn] + d_attn)  # the shift reached the addend ...
    assert not torch.allclose(shifted[post], base[post])       # ... and the residual stream


def _freeze_final_scale(model, task):
    """Freeze ln_final's normaliser at the corrupted run's own value (per prompt and position, repeated for
    patching's stacked copies): the forward of the corrupted run is unchanged, and the logits -- hence the
    logit difference -- become linear in the last block's output."""
    scale = _run_saving(model, task.corrupt, ["ln_final.hook_scale"])["ln_final.hook_scale"]
    B = scale.shape[0]
    model.add_hook("ln_final.hook_scale", lambda s, hook: scale.repeat(s.shape[0] // B, 1, 1).to(s.dtype),
                   is_permanent=True)


def test_every_method_equals_patching_where_the_metric_is_linear():
    """ln_final's scale frozen at the corrupted run's value: the metric is linear in the last MLP's output
    (per position), so AtP, RelP (its LN-rule at ln_final detaches that same normaliser) and IG must equal
    patching there, on every architecture."""
    for arch in ARCHS:
        model = load_model(arch, device="cpu")  # a private copy: it gets a permanent hook
        task = _task(model)
        _freeze_final_scale(model, task)
        try:
            res = {"patch": activation_patching(model, task, ("mlp",), per_position=True, progress=False),
                   "atp": attribution_patching(model, task, ("mlp",), per_position=True),
                   "relp-default": relevance_patching(model, task, ("mlp",), per_position=True, rules="default"),
                   "relp-cp-lrp": relevance_patching(model, task, ("mlp",), per_position=True, rules="default+cp-lrp"),
                   "ig": integrated_gradients(model, task, ("mlp",), per_position=True, steps=3)}
        finally:
            model.reset_hooks(including_permanent=True)
        last = model.cfg.n_layers - 1
        truth = res["patch"].scores["mlp"][last]
        assert truth.abs().max() > 1e-4, arch  # a non-trivial effect is compared (smallest: 4e-4, tiny-gpt2)
        # patching is a difference of two float32 metrics, the others float32 dot products: rounding of a few
        # eps32 x |metric|; measured max |diff| / max |metric| = 2e-7 over the 4 archs at 1 thread (tiny-gpt2,
        # 4.7e-9 / 2.3e-2); 4e-6 is a 20x margin, still 10x below the smallest effect
        tol = 4e-6 * max(abs(res["patch"].metric_clean), abs(res["patch"].metric_corrupt))
        for name, r in res.items():
            assert torch.allclose(r.scores["mlp"][last], truth, rtol=0, atol=tol), (arch, name)


@pytest.mark.parametrize("arch", ["tiny-pythia", "tiny-gemma3"])  # tiny-llama / tiny-gpt2: tests/test_ig.py
def test_ig_completeness_equals_patching_each_hook(arch):
    """Per hook, the IG attributions sum to patching of that whole hook (IG's completeness axiom)."""
    model = load_model(arch, device="cpu")
    task = _task(model)
    res = integrated_gradients(model, task, ("resid", "attn", "mlp"), per_position=True, steps=16)
    for ctype, layer in [("mlp", 1), ("attn", 0), ("resid", 1)]:
        hook = component_types(ctype)[0].hook_name(layer)
        clean = _run_saving(model, task.clean, [hook])[hook]
        with torch.no_grad():
            m0 = task.metric(model(task.corrupt)).mean()
            with model.hooks(fwd_hooks=[(hook, lambda x, hook: clean)]):
                m1 = task.metric(model(task.corrupt)).mean()
        want = (m1 - m0).item()
        assert abs(want) > 1e-3
        # measured |IG sum - patching| / |patching| on these cells: <= 4.1e-6 at 16 Gauss-Legendre points and the
        # same at 64 (float32 rounding, not quadrature error); rel 1e-4 is a 25x margin
        assert res.scores[ctype][layer].sum().item() == pytest.approx(want, rel=1e-4), (ctype, layer)


def test_lrp_conservation_through_each_sublayer(model):
    """With the conservative rules (LN, Identity, Half, AH) and bias-free sublayers, the relevance a*g~ at a
    sublayer's output (the ``attn`` / ``mlp`` component) equals the relevance at its normalised input
    (ln1 / ln2 output): per position for the position-wise MLP, summed over positions for attention.  On
    Gemma 3 the path runs through the pre- and the post-norm."""
    task = _task(model)
    extra = [ComponentType(f"ln{i}_out", f"blocks.{{layer}}.ln{i}.hook_out", 0) for i in (1, 2)]
    types = component_types(("attn", "mlp")) + extra
    acts, grads, m = cache_components(model, task.clean, types, metric=task.metric,
                                      extra_fwd=rule_hooks(model, resolve_rules("default+cp-lrp")))
    rel = {t.name: torch.stack([(acts[t.name][l] * grads[t.name][l]).sum(-1) for l in range(model.cfg.n_layers)])
           for t in types}  # [L, B, T]
    scale = m.abs().max().item()
    assert rel["mlp"].abs().max() > 1e-3 * scale and rel["attn"].abs().max() > 1e-3 * scale
    # the Identity-rule's stabiliser (1e-6 added to each pre-activation) breaks the MLP's conservation by about
    # 1e-6 / |pre| per unit: measured max |diff| / max |metric| over the 4 archs at 1 thread 6.1e-6 for the MLP
    # (tiny-gemma3), 3.6e-7 for attention (tiny-llama); 1e-4 is a 16x margin
    tol = 1e-4 * scale
    assert torch.allclose(rel["mlp"], rel["ln2_out"], rtol=0, atol=tol)
    assert torch.allclose(rel["attn"].sum(-1), rel["ln1_out"].sum(-1), rtol=0, atol=tol)


@pytest.mark.parametrize("method", [attribution_patching, relevance_patching])
def test_a_component_without_gradient_is_refused_not_zero(method):
    """On these bridges the saved ``ln2.hook_normalized`` feeds nothing downstream (a hook that *changes* it is
    honoured, so patching it moves the metric), so a gradient method cannot score it: it must say so,
    naming the method, the hook and the architecture, instead of returning zeros."""
    model = load_model("tiny-gemma3", device="cpu")
    task = _task(model)
    ct = register_component_type(ComponentType("ln2_normalized", "blocks.{layer}.ln2.hook_normalized", 0))
    try:
        truth = activation_patching(model, task, (ct.name,), progress=False)
        assert truth.scores[ct.name].abs().max() > 1e-3  # patching it does have an effect
        with pytest.raises(RuntimeError, match=r"cannot score \['ln2_normalized'\] on Gemma3ForCausalLM.*"
                                               r"blocks\.0\.ln2\.hook_normalized"):
            method(model, task, (ct.name,))
    finally:
        COMPONENT_TYPES.pop(ct.name)


def test_pearson_over_a_constant_vector_is_reported_not_nan():
    from interp.results import pearson_or_reason

    a, b = torch.tensor([1.0, 2.0, 4.0]), torch.tensor([1.0, 3.0, 2.0])
    r, why = pearson_or_reason(a, b)
    want = torch.corrcoef(torch.stack([a, b]).double())[0, 1].item()
    assert why is None and r == pytest.approx(want, abs=1e-12)  # both in float64: equal to ~1e-15
    assert pearson_or_reason(torch.zeros(3), b, "relp") == (None, "constant: all 3 relp scores equal 0")
    assert pearson_or_reason(a, torch.full((3,), 2.0)) == (None, "constant: all 3 patching scores equal 2")
    assert pearson_or_reason(torch.tensor([1.0, float("nan"), 2.0]), b)[1].startswith("non-finite: 1 of 3")


def test_compare_reports_a_constant_method_as_undefined(tmp_path, monkeypatch, capsys):
    """A method whose scores for one component type are all equal (RelP's zeros on Gemma 3 before the fix):
    compare gives r = None with the reason, warns, writes strict JSON (no NaN) and prints the reason."""
    import json

    import interp.attribution as A
    from interp.circuits.compare import compare_methods
    from interp.cli.main import main

    real = A.attribution_patching

    def zero_mlp(*a, **kw):
        r = real(*a, **kw)
        r.scores["mlp"] = torch.zeros_like(r.scores["mlp"])
        return r

    monkeypatch.setattr(A, "attribution_patching", zero_mlp)
    model = load_model("tiny-llama", device="cpu")
    with pytest.warns(UserWarning, match=r"atp vs patching on 'mlp' is undefined \(constant: all \d+ atp scores equal 0"):
        out = compare_methods(model, "ioi", n=2, methods=("atp",), components=("resid", "mlp"))
    assert out.pearson["atp"]["mlp"] is None and out.pearson["atp"]["resid"] is not None
    L, T = out.scores["atp"].scores["mlp"].shape  # [L, T] per position
    n_mlp = L * T
    assert out.pearson_undefined == {"atp": {"mlp": f"constant: all {n_mlp} atp scores equal 0"}}
    json.dumps({"pearson": out.pearson, "pearson_undefined": out.pearson_undefined}, allow_nan=False)
    assert "r is undefined for atp on MLP outputs (constant: all" in out.summary()
    assert main(["compare", "ioi", "--model", "tiny-llama", "--n", "2", "--methods", "atp",
                 "--components", "resid,mlp", "--out", str(tmp_path / "cli")]) == 0
    saved = json.loads((tmp_path / "cli" / "results.json").read_text())
    assert saved["pearson"]["atp"]["mlp"] is None and (tmp_path / "cli" / "report.html").stat().st_size > 1000
    assert f"WARNING: r of atp on mlp is undefined: constant: all {n_mlp} atp scores equal 0" in capsys.readouterr().out


def test_relp_refuses_a_block_norm_it_does_not_cover(monkeypatch):
    """Were Gemma 3's post-feedforward norm unknown to the LN-rule, RelP would silently run another method
    (plain gradient through that norm): it must refuse, naming the norm and the architecture."""
    import importlib

    R = importlib.import_module("interp.attribution.lrp_rules")  # the package re-exports a function of that name
    model = load_model("tiny-gemma3", device="cpu")
    monkeypatch.setattr(R, "_NORM_CHILDREN", ("ln1", "ln2", "ln1_post"))
    with pytest.raises(ValueError, match=r"LN-rule cannot serve Gemma3ForCausalLM: blocks\.0\.ln2_post"):
        relevance_patching(model, _task(model), ("mlp",))
