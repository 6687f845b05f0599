"""The fast IG paths (fastpath.py: prefix replay, last-position logits, the Gemma 3 lean forward) against
the plain reference path (``fast=False``: the bridge's whole forward per step, what captum runs)."""

import pytest
import torch

from interp.attribution.fastpath import lean_forward, model_has_hooks
from interp.attribution.ig import layer_integrated_gradients
from interp.models import load_model, scoped_hooks
from interp.tasks import Task


def _task(model, metric="logit_diff"):
    return Task.from_prompts(model, ["abc defg", "xyz wvut"], ["abd degg", "xzz wvat"],
                             answers=[("a", "b"), ("c", "d")], metric=metric)


@pytest.fixture(scope="module")
def models():
    return {}


def _model(models, name):
    if name not in models:
        models[name] = _gqa_llama() if name == "gqa-llama" else load_model(name, device="cpu")
    return models[name]


def _gqa_llama():
    """tiny-llama with 2 key/value heads for 4 query heads (grouped-query attention, as SmolLM2)."""
    from transformer_lens.model_bridge import TransformerBridge

    from interp.models.tiny import TinyConfig, char_tokenizer, tiny_hf_model

    tok = char_tokenizer()
    hf = tiny_hf_model(TinyConfig(arch="llama", n_layers=3, n_kv_heads=2, seed=1), len(tok))
    bridge = TransformerBridge.boot_transformers("tiny-llama", hf_model=hf, tokenizer=tok)
    bridge.eval()
    for p in bridge.parameters():
        p.requires_grad_(False)
    assert hf.config.num_key_value_heads == 2 and hf.config.num_attention_heads == 4
    return bridge


# rel is of the largest |b|: the fast and plain paths are the same float32 math in another order (1e-5 = 84 eps32,
# above eps x d_mlp = 64); +1e-8 absolute for an all-zero b
def _close(a, b, rel=1e-5):
    return torch.allclose(a, b, atol=rel * b.abs().max().item() + 1e-8)


@pytest.mark.parametrize("name,lean", [("tiny-llama", False), ("gqa-llama", False), ("tiny-gpt2", False),
                                       ("tiny-pythia", False), ("tiny-gemma3", True)])
@pytest.mark.parametrize("hook", ["hook_embed", "blocks.1.hook_resid_pre", "blocks.0.hook_resid_post"])
def test_fast_ig_equals_reference(models, name, lean, hook, fast):
    """Attributions (= diff * path-averaged gradient) and completeness agree with the plain path; the
    switch (INTERP_REFERENCE, the ``fast`` fixture) picks the path, the other one is asked for."""
    model = _model(models, name)
    task = _task(model)
    kw = dict(hook=hook, baseline=task.corrupt, steps=6)
    got = layer_integrated_gradients(model, task.clean, task.metric, **kw)
    other = layer_integrated_gradients(model, task.clean, task.metric, fast=not fast, **kw)
    fast, ref = (got, other) if fast else (other, got)
    assert ref.path == "plain" and fast.path == ("lean" if lean else "replay")
    assert ref.attributions.abs().max() > 0
    assert _close(fast.attributions, ref.attributions)
    # delta = F(x) - F(x') - sum(attr): float32 sums of T*d terms, 1e-5 ~ 84 eps32 x |F|
    assert torch.allclose(fast.delta, ref.delta, atol=1e-5)
    # allclose defaults (rtol 1e-5 = 84 eps32): the same forward
    assert torch.allclose(fast.f_input, ref.f_input) and torch.allclose(fast.f_baseline, ref.f_baseline)
    assert not model_has_hooks(model)  # nothing left registered


def test_lean_skips_shared_positions_only_where_equal(models):
    """Input == baseline everywhere: every attribution is exactly 0 and F(x) - F(x') = 0."""
    model = _model(models, "tiny-gemma3")
    task = _task(model)
    r = layer_integrated_gradients(model, task.clean, task.metric, baseline=task.clean, steps=4)
    # F(x) - F(x) computed twice in float32: 1e-6 ~ 8 eps32 x |F|
    assert r.path == "lean" and r.attributions.abs().max() == 0 and r.delta.abs().max() < 1e-6


def test_user_hook_disables_lean_and_is_respected(models):
    """A hook on the model changes its function: the lean pass (which would skip it) is not used."""
    model = _model(models, "tiny-gemma3")
    task = _task(model)

    def scale(x, hook):
        return x * 0.5

    with scoped_hooks(model, fwd=[("blocks.0.hook_mlp_out", scale)]):
        assert model_has_hooks(model) and lean_forward(model, "hook_embed")[0] is None
        fast = layer_integrated_gradients(model, task.clean, task.metric, baseline=task.corrupt, steps=4)
        ref = layer_integrated_gradients(model, task.clean, task.metric, baseline=task.corrupt, steps=4, fast=False)
    assert fast.path != "lean" and _close(fast.attributions, ref.attributions)
    assert not model_has_hooks(model)


def test_metric_reading_other_positions_uses_full_logits(models):
    """A metric of every position: no last-position shortcut, no lean pass; equal to the reference."""
    model = _model(models, "tiny-gemma3")

    def mean_logit(logits, task):
        return logits[..., 5].mean(-1)

    task = _task(model, metric=mean_logit)
    fast = layer_integrated_gradients(model, task.clean, task.metric, baseline=task.corrupt, steps=4)
    ref = layer_integrated_gradients(model, task.clean, task.metric, baseline=task.corrupt, steps=4, fast=False)
    assert fast.path != "lean" and _close(fast.attributions, ref.attributions)


def test_lean_not_offered_where_it_cannot_run(models):
    lean, why = lean_forward(_model(models, "tiny-llama"), "hook_embed")
    assert lean is None and "no lean forward for model_type 'llama'" in why  # measured not to pay (lean.py)
    model = _model(models, "tiny-gemma3")
    lean, why = lean_forward(model, "blocks.1.attn.hook_z")
    assert lean is None and "not hook_embed" in why  # not a residual-stream hook
    with pytest.raises(ValueError, match="shared positions"):
        lean = lean_forward(model, "hook_embed")[0]
        lean.logits(torch.zeros(2, 4, model.cfg.d_model), 0, 6, None, last_only=False)


def test_uncovered_architecture_option_falls_back_with_reason(models):
    """An option the lean transcription does not implement (Gemma 2-style attention-logit
    softcapping on a Gemma 3 config) -> the bridge path, the reason recorded, values unchanged."""
    model = _model(models, "tiny-gemma3")
    task = _task(model)
    cfg = model.original_model.config
    try:
        cfg.attn_logit_softcapping = 50.0  # the bridge's attention reads it too: the reference changes alike
        lean, why = lean_forward(model, "hook_embed")
        assert lean is None and "softcapping" in why
        fast = layer_integrated_gradients(model, task.clean, task.metric, baseline=task.corrupt, steps=4)
        ref = layer_integrated_gradients(model, task.clean, task.metric, baseline=task.corrupt, steps=4, fast=False)
    finally:
        cfg.attn_logit_softcapping = None
    assert fast.path == "replay" and "softcapping" in fast.lean_skipped
    assert _close(fast.attributions, ref.attributions)
    assert ref.lean_skipped.startswith("reference path")


@pytest.mark.parametrize("name,forward", [("tiny-llama", "replay"), ("gqa-llama", "replay"), ("tiny-gpt2", "replay"),
                                          ("tiny-pythia", "replay"), ("tiny-gemma3", "lean")])
def test_hook_ig_fast_equals_reference(models, name, forward):
    """Per-hook IG (path='hooks'): every component score, per position, fast == plain reference."""
    from interp.attribution.ig import integrated_gradients

    model = _model(models, name)
    task = _task(model)
    kw = dict(per_position=True, steps=4)
    fast = integrated_gradients(model, task, **kw)
    ref = integrated_gradients(model, task, fast=False, **kw)
    assert fast.config["forward"] == forward and ref.config["forward"] == "plain"
    if forward == "lean":
        assert fast.config["shared_prefix"] == 2  # "<bos>" and the first character: "xyz" vs "xzz"
    for k in ref.scores:
        assert ref.scores[k].abs().max() > 0
        # per-position scores sum T positions (<= 20) more: 2x the 1e-5 above
        assert _close(fast.scores[k], ref.scores[k], rel=2e-5), k
    for k, rows in ref.extras["hook_completeness"].items():
        for a, b in zip(fast.extras["hook_completeness"][k], rows):
            # patch effect: difference of two float32 forwards, 1e-5 ~ 84 eps32 x |logit|
            assert a["patch_effect"] == pytest.approx(b["patch_effect"], abs=1e-5)


def test_prefix_cache_records_block_outputs_and_removes_its_hooks(tiny_llama):
    """PrefixCache.capture records each block's output (== blocks.L.hook_resid_post of the same run, batch
    ``rows``) and leaves no module hook behind, also when the forward raises."""
    from interp.attribution.fastpath import PrefixCache

    model = tiny_llama
    tokens = _task(model).clean
    before = [len(b._forward_hooks) for b in model.blocks]
    cache = PrefixCache(model)
    with cache.capture(slice(0, 1)):
        _, ref = model.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_resid_post"))
    for l in range(model.cfg.n_layers):
        out = cache.outs[l][0] if isinstance(cache.outs[l], tuple) else cache.outs[l]
        torch.testing.assert_close(out, ref[f"blocks.{l}.hook_resid_post"][:1], rtol=0, atol=0)  # exact
    assert [len(b._forward_hooks) for b in model.blocks] == before
    with pytest.raises(RuntimeError, match="boom"), cache.capture():
        raise RuntimeError("boom")
    assert [len(b._forward_hooks) for b in model.blocks] == before
