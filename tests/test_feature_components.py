"""SAE / transcoder features as attribution components, tested against their definitions on tiny models:
the splice leaves the model unchanged, AtP over features equals patching where the model is linear in them,
patching every feature and the error from clean reproduces the clean run, and nothing outlives the splice."""

from dataclasses import replace

import pytest
import torch

from interp.attribution import (COMPONENT_TYPES, activation_patching, attribution_patching, cache_components,
                                component_types, relevance_patching, run_with_masks)
from interp.attribution.ig import integrated_gradients
from interp.dictionaries import SAEConfig, make
from interp.dictionaries.feature_components import feature_labels, splice_features
from interp.dictionaries.transcoder import transcoder_config
from interp.models import load_model
from interp.tasks import Task


def _task(model):
    clean = ["abc defg", "xyz wvut", "hij klmn"]
    corrupt = ["abd degg", "xzz wvat", "hkj kamn"]
    return Task.from_prompts(model, clean, corrupt, answers=[("a", "b"), ("c", "d"), ("e", "f")])


def _sae(layer, d, F=12, hook="hook_resid_post", seed=0):
    torch.manual_seed(seed)
    sae = make(SAEConfig(arch="relu", d_in=d, d_sae=F, hook_in=f"blocks.{layer}.{hook}"))
    with torch.no_grad():
        sae.W_enc.normal_(0, 1.0)
        sae.b_enc.fill_(0.3)  # many features on, so patches are non-trivial
    return sae


def _tc(layer, d, F=12):
    torch.manual_seed(1)
    tc = make(transcoder_config(layer, d_model=d, expansion=1, arch="relu", d_out=d))
    tc = make(replace(tc.cfg, d_sae=F))
    with torch.no_grad():
        tc.W_enc.normal_(0, 1.0)
        tc.b_enc.fill_(0.3)
    return tc


def test_splice_leaves_the_model_unchanged_and_reconstructs(tiny_llama):
    model = tiny_llama
    toks = _task(model).clean
    ref = model(toks)
    sae = _sae(0, model.cfg.d_model)
    with splice_features(model, {0: sae}) as sp:
        acts, _, logits = cache_components(model, toks, component_types(sp.components))
        _, cache = model.run_with_cache(toks, names_filter=lambda n: n == "blocks.0.hook_resid_post")
    # float32, same ops in another order (spliced hook adds decode + error): 1e-5 = 84 eps >= eps x d_mlp (64)
    torch.testing.assert_close(logits, ref, atol=1e-5, rtol=1e-5)
    f, err = acts[sp.feat][0], acts[sp.error][0]
    assert (f > 0).float().mean() > 0.2  # a live dictionary
    # float32 decode (d_sae terms) + error: 1e-5 = 84 eps32
    torch.testing.assert_close(sae.decode(f) + err, cache["blocks.0.hook_resid_post"], atol=1e-5, rtol=1e-5)
    # a layer without a dictionary: zero features, the error is the whole activation
    assert acts[sp.feat][1].abs().max() == 0
    assert acts[sp.error][1].shape == (3, toks.shape[1], model.cfg.d_model)
    # nothing outlives the splice
    assert sp.feat not in COMPONENT_TYPES and "blocks.0.sae.hook_acts" not in model.hook_dict
    torch.testing.assert_close(model(toks), ref)  # defaults (float32: rtol 1.3e-6, atol 1e-5): the splice is gone


@pytest.mark.parametrize("kind", ["sae", "transcoder"])
def test_atp_over_features_equals_patching_when_linear(kind):
    """ln_final's scale frozen: the logit difference is linear in the last block's residual / MLP output, hence
    in its dictionary features and error; AtP must equal patching, and so must RelP with the rules that act
    upstream of the spliced hook (the LN-rule would re-detach ln_final's real scale, which this test replaces)."""
    model = load_model("tiny-llama", device="cpu")  # a private copy: a permanent hook is added
    task = _task(model)
    last, d = model.cfg.n_layers - 1, model.cfg.d_model
    dic = _sae(last, d) if kind == "sae" else _tc(last, d)
    model.add_hook("ln_final.hook_scale", lambda s, hook: torch.full_like(s, 0.05), is_permanent=True)
    try:
        with splice_features(model, [dic], name=kind) as sp:
            ap = activation_patching(model, task, components=sp.components, progress=False)
            atp = attribution_patching(model, task, components=sp.components)
            relp = relevance_patching(model, task, components=sp.components,
                                      rules=("Identity-rule", "Half-rule", "AH-rule"))
    finally:
        model.reset_hooks(including_permanent=True)
    a, b = atp.scores[sp.feat][last], ap.scores[sp.feat][last]
    assert b.abs().max() > 1e-3 and (b.abs() > 1e-6).sum() >= 3  # several non-trivial feature effects
    # patching (a difference of two float32 forwards) vs AtP (a gradient): equal in exact arithmetic; the patched
    # difference cancels to ~eps32 x |logit| / |effect| relative, so 1e-4 of the largest effect
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * float(b.abs().max()))
    torch.testing.assert_close(atp.scores[sp.error][last], ap.scores[sp.error][last], rtol=1e-4, atol=1e-5)
    # same as AtP above
    torch.testing.assert_close(relp.scores[sp.feat][last], b, rtol=1e-4, atol=1e-4 * float(b.abs().max()))
    # layers without a dictionary have no features: patching their (zero) slot changes nothing; what remains is
    # the rounding between the base run and patching's shortcut forward (last-position logits): measured 9e-9
    # on logits ~1, bounded by float32 eps (1.2e-7) times |logit| -- 1e-6 leaves a 10x margin
    assert ap.scores[sp.feat][:last].abs().max() <= 1e-6 * max(1.0, abs(ap.metric_clean))


def test_patching_all_features_and_error_from_clean_is_the_clean_run(tiny_llama):
    model = tiny_llama
    task = _task(model)
    sae = _sae(0, model.cfg.d_model)
    clean_logits = model(task.clean)
    with splice_features(model, {0: sae}) as sp:
        types = component_types(sp.components)
        acts, _, _ = cache_components(model, task.clean, types)
        L, F = model.cfg.n_layers, sp.d_sae
        masks = {sp.feat: torch.zeros(2, L, F, dtype=torch.bool), sp.error: torch.zeros(2, L, dtype=torch.bool)}
        masks[sp.feat][0, 0] = True  # copy 0: every feature and the error of layer 0
        masks[sp.error][0, 0] = True
        masks[sp.feat][1, 0] = True  # copy 1: features only (the corrupted error stays)
        logits = run_with_masks(model, task.corrupt, acts, masks, types)
    B = task.clean.shape[0]
    # float32 forward of stacked masked copies vs the plain clean forward: 1e-4 = 840 eps32 for a 2-layer re-sum
    torch.testing.assert_close(logits[:B], clean_logits, atol=1e-4, rtol=1e-4)
    assert (logits[B:] - clean_logits).abs().max() > 1e-3  # the error term carries part of the difference


def test_ig_runs_over_features_and_labels(tiny_llama):
    model = tiny_llama
    task = _task(model)
    with splice_features(model, [_sae(1, model.cfg.d_model)]) as sp:
        ig = integrated_gradients(model, task, components=sp.components, steps=8)
        atp = attribution_patching(model, task, components=sp.components)
    F = sp.d_sae
    assert ig.scores[sp.feat].shape == (2, F) and ig.scores[sp.error].shape == (2,)
    assert ig.scores[sp.feat][0].abs().max() == 0 and ig.scores[sp.feat][1].abs().max() > 0
    # IG and AtP agree on which features matter (same quantity, different path weights)
    assert torch.corrcoef(torch.stack([ig.scores[sp.feat][1], atp.scores[sp.feat][1]]))[0, 1] > 0.5
    top = feature_labels(sp, atp.scores[sp.feat], top=3)
    assert top[0][0].startswith("L1.f") and abs(top[0][1]) >= abs(top[1][1]) >= abs(top[2][1])


def test_splice_errors(tiny_llama):
    model = tiny_llama
    d = model.cfg.d_model
    with pytest.raises(ValueError, match="same d_sae"):
        with splice_features(model, {0: _sae(0, d, F=8), 1: _sae(1, d, F=12)}):
            pass
    with pytest.raises(ValueError, match="share their hooks"):
        with splice_features(model, {0: _sae(0, d), 1: _sae(1, d, hook="hook_resid_pre")}):
            pass
    with pytest.raises(ValueError, match="layers must agree"):
        with splice_features(model, {1: _sae(0, d)}):
            pass
    with pytest.raises(ValueError, match="already registered"):
        with splice_features(model, [_sae(0, d)]):
            with splice_features(model, [_sae(1, d)]):
                pass
    with pytest.raises(RuntimeError, match="boom"):  # an exception inside leaves nothing behind
        with splice_features(model, [_sae(0, d)], name="tmp"):
            raise RuntimeError("boom")
    assert "tmp_feat" not in COMPONENT_TYPES and not any(".tmp." in n for n in model.hook_dict)
