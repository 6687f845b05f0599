"""The fast capture path (interp/models/hf_capture.py) against the bridge's own run_with_cache.

Ground truth is the TransformerBridge: ``run_with_cache`` on the same tokens.  The fast path
runs a shadow of the bridge's Hugging Face model under plain torch hooks; every mapped hook kind
must give the bridge's numbers (bit for bit where the bridge calls the Hugging Face attention:
Llama, Pythia, Gemma 3; to fp32 rounding on GPT-2, whose fused-QKV attention the bridge
reimplements), at fp32 and through a real cache run at the stored dtype.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from interp.models import load_model
from interp.models.hf_capture import CaptureUnavailable, capture, hf_model, plan_capture, verify_plan
from interp.store import ActivationStore, CacheConfig, cache_activations

KINDS = ["hook_embed", "blocks.{L}.hook_resid_pre", "blocks.{L}.hook_resid_mid", "blocks.{L}.hook_resid_post",
         "blocks.{L}.hook_attn_out", "blocks.{L}.hook_mlp_out", "blocks.{L}.attn.hook_z", "blocks.{L}.attn.hook_q",
         "blocks.{L}.attn.hook_k", "blocks.{L}.attn.hook_v", "blocks.{L}.mlp.hook_pre", "blocks.{L}.mlp.hook_post",
         "blocks.{L}.ln1.hook_out", "ln_final.hook_out"]
# hook kinds the fast path must serve on each architecture (others may fall back to the bridge)
MUST_MAP = {
    "tiny-llama": KINDS,
    "tiny-gemma3": KINDS,
    "tiny-pythia": [k for k in KINDS if "hook_q" not in k and "hook_k" not in k and "hook_v" not in k
                    and "resid_mid" not in k],  # parallel attention: no resid_mid; q/k/v are split from one matmul
    "tiny-gpt2": [k for k in KINDS if "hook_q" not in k and "hook_k" not in k and "hook_v" not in k],
}
EXACT = {"tiny-llama": True, "tiny-gemma3": True, "tiny-pythia": True, "tiny-gpt2": False}
TEXT = ("It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of "
        "foolishness, it was the epoch of belief, it was the epoch of incredulity.\n")


@pytest.fixture(scope="module")
def models():
    return {}


def _model(models, name):
    if name not in models:
        models[name] = load_model(name, device="cpu")
    return models[name]


def _hooks(model, kinds):
    names = set(model.hook_dict)
    return [k.format(L=L) for k in kinds for L in range(model.cfg.n_layers)
            if "{L}" in k or L == 0 if k.format(L=L) in names]


def _tokens(B, T, seed=0, vocab=99):
    g = torch.Generator().manual_seed(seed)
    t = torch.randint(4, vocab, (B, T), generator=g)
    t[:, 0] = 0
    return t


def _bridge(model, tokens, hooks):
    with torch.inference_mode():
        _, cache = model.run_with_cache(tokens, names_filter=hooks)
    return {h: cache[h].clone() for h in hooks}


def _fast(model, tokens, hooks, probe):
    """Plan and check the fast path on ``probe`` tokens, then capture ``hooks`` on ``tokens``."""
    plan = plan_capture(model, hooks)
    # GPT-2's bridge re-implements fused-QKV attention: the same float32 math summed in another order (seen ~1e-8);
    # 1e-5 of scale = 84 float32 eps, above eps x the longest reduction here (d_mlp = 64)
    verify_plan(model, plan, probe, _bridge(model, probe, hooks), rtol=1e-5)
    got = {}
    with torch.inference_mode(), capture(plan, {h: (lambda t, h=h: got.__setitem__(h, t.clone()))
                                                for h in plan.sites}) as run:
        run(tokens)
    return plan, got


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2", "tiny-pythia", "tiny-gemma3"])
def test_fast_path_equals_run_with_cache_fp32(models, name):
    model = _model(models, name)
    hooks = _hooks(model, KINDS)
    plan, got = _fast(model, _tokens(3, 24, seed=1), hooks, probe=_tokens(2, 7, seed=2))
    must = _hooks(model, MUST_MAP[name])
    assert not [h for h in must if h in plan.unmapped], {h: plan.unmapped[h] for h in must if h in plan.unmapped}
    ref = _bridge(model, _tokens(3, 24, seed=1), hooks)
    for h in plan.sites:
        assert got[h].shape == ref[h].shape, h
        if EXACT[name]:
            assert torch.equal(got[h], ref[h]), h
        else:
            # tiny-gpt2 only (EXACT): same float32 math in another order, seen ~1e-8; 1e-5 = 84 eps >= eps x d_mlp (64)
            torch.testing.assert_close(got[h], ref[h], rtol=1e-5, atol=1e-6, msg=h)


def test_gqa_and_rotary_shapes_on_smollm2(smollm2):
    """SmolLM2 (9 query heads, 3 KV heads): every mapped kind equals the bridge bit for bit, k/v at 3 heads."""
    hooks = ["hook_embed", "blocks.0.hook_resid_pre", "blocks.0.attn.hook_k", "blocks.3.attn.hook_z",
             "blocks.3.attn.hook_q", "blocks.3.attn.hook_v", "blocks.7.hook_attn_out", "blocks.7.hook_mlp_out",
             "blocks.7.mlp.hook_post", "blocks.12.hook_resid_mid", "blocks.29.hook_resid_post"]
    tokens = smollm2.to_tokens("The quick brown fox jumps over the lazy dog while the cat sleeps.")
    plan, got = _fast(smollm2, tokens, hooks, probe=tokens[:, :7])
    assert plan.complete, plan.unmapped
    ref = _bridge(smollm2, tokens, hooks)
    assert got["blocks.0.attn.hook_k"].shape[-2:] == (3, 64) and got["blocks.3.attn.hook_q"].shape[-2:] == (9, 64)
    for h in hooks:
        assert torch.equal(got[h], ref[h]), h


def test_shadow_shares_the_bridge_weights(models):
    model = _model(models, "tiny-llama")
    shadow = hf_model(model)
    ptrs = {p.data_ptr() for p in model.parameters()}
    assert all(p.data_ptr() in ptrs for p in shadow.parameters())
    assert not any(isinstance(m, type(model.blocks[0])) for m in shadow.modules()), "no bridge component inside"


def test_padding_and_no_mask_handled_like_the_bridge(models):
    """Pad tokens (left, right, mid-sequence BOS) go through both paths unmasked, as ``bridge(tokens)`` does."""
    model = _model(models, "tiny-llama")
    pad = model.tokenizer.pad_token_id
    tokens = _tokens(3, 12, seed=3)
    tokens[0, -4:] = pad  # right padding
    tokens[1, :3] = pad   # left padding
    tokens[2, 6] = 0      # a BOS mid-sequence
    hooks = ["blocks.0.hook_resid_post", "blocks.1.attn.hook_z", "blocks.1.hook_resid_post"]
    _, got = _fast(model, tokens, hooks, probe=_tokens(2, 7))
    ref = _bridge(model, tokens, hooks)
    for h in hooks:
        assert torch.equal(got[h], ref[h]), h


def test_stops_after_the_last_needed_layer(models):
    model = _model(models, "tiny-llama-l3")
    plan = verify_plan(model, plan_capture(model, ["blocks.0.hook_resid_post"]), _tokens(2, 7),
                       _bridge(model, _tokens(2, 7), ["blocks.0.hook_resid_post"]))
    later = []
    handles = [plan.model.model.layers[1].register_forward_hook(lambda *a: later.append("layer1")),
               plan.model.lm_head.register_forward_hook(lambda *a: later.append("lm_head"))]
    try:
        seen = []
        with torch.inference_mode(), capture(plan, {"blocks.0.hook_resid_post": seen.append}) as run:
            run(_tokens(2, 9))
    finally:
        for hd in handles:
            hd.remove()
    assert len(seen) == 1 and later == []


def test_hooks_removed_after_an_exception(models):
    model = _model(models, "tiny-llama")
    plan = verify_plan(model, plan_capture(model, ["blocks.1.hook_resid_post"]), _tokens(2, 7),
                       _bridge(model, _tokens(2, 7), ["blocks.1.hook_resid_post"]))

    def boom(t):
        raise RuntimeError("disk full")

    mods = list(plan.model.modules()) + list(model.modules())
    # Hugging Face keeps hooks of its own on some modules (output capturing): compare with before
    before = [(dict(m._forward_hooks), dict(m._forward_pre_hooks)) for m in mods]
    with pytest.raises(RuntimeError, match="disk full"), torch.inference_mode():
        with capture(plan, {"blocks.1.hook_resid_post": boom}) as run:
            assert [(dict(m._forward_hooks), dict(m._forward_pre_hooks)) for m in mods] != before  # hooks were on
            run(_tokens(2, 9))
    assert [(dict(m._forward_hooks), dict(m._forward_pre_hooks)) for m in mods] == before
    assert all(not hp.has_hooks() for hp in model.hook_dict.values())


def _store(model, tmp_path, name, corpus, **kw):
    args = dict(model=model.interp_name, corpus=str(corpus), n_tokens=600, context_length=40, batch_size=3,
                dtype="float16", shard_rows=240)
    args.update(kw)
    return cache_activations(CacheConfig(**args, out=str(tmp_path / name)), model=model, progress=False)


@pytest.fixture()
def corpus(tmp_path):
    p = tmp_path / "tale.txt"
    p.write_text(TEXT * 20)
    return p


def _reference_rows(model, store, hook):
    C = store.manifest["context_length"]
    sp = store.seq_pos[:]
    tokens = torch.zeros(int(sp[-1, 0]) + 1, C, dtype=torch.long)
    tokens[sp[:, 0], sp[:, 1]] = store.tokens[:]
    act = _bridge(model, tokens, [hook])[hook]
    return act[sp[:, 0], sp[:, 1]].reshape(store.n_rows, -1)


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2", "tiny-pythia", "tiny-gemma3"])
def test_cache_run_fast_equals_bridge_at_stored_dtype(models, tmp_path, corpus, name):
    model = _model(models, name)
    hooks = [h for h in _hooks(model, ["hook_embed", "blocks.{L}.hook_resid_post", "blocks.{L}.attn.hook_z",
                                       "blocks.{L}.hook_mlp_out", "blocks.{L}.hook_attn_out"])]
    fast = _store(model, tmp_path, "hf", corpus, hooks=hooks, capture="hf")
    slow = _store(model, tmp_path, "bridge", corpus, hooks=hooks, capture="bridge")
    assert fast.manifest["capture"]["path"] == "hf" and slow.manifest["capture"]["path"] == "bridge"
    assert fast.manifest["last_run"]["capture"] == "hf"
    for h in fast.hooks:
        a, b = fast.rows(h, np.arange(fast.n_rows)), slow.rows(h, np.arange(slow.n_rows))
        ref = _reference_rows(model, fast, h).half().float()  # what storing the bridge's value at fp16 gives
        if EXACT[name]:
            assert torch.equal(a, b) and torch.equal(a, ref), h
        else:  # fp32 rounding differences can move an fp16 value by one step
            # 2e-3 = 2 fp16 steps (one step is 2^-11..2^-10 relative); atol 1e-5 is above the fp16 subnormal step (6e-8)
            torch.testing.assert_close(a, ref, rtol=2e-3, atol=1e-5, msg=h)
    if EXACT[name]:
        auto = _store(model, tmp_path, "auto", corpus, hooks=hooks)
        assert auto.manifest["capture"]["path"] == "hf"
        assert auto.manifest["shards"] == slow.manifest["shards"]  # same bytes (CRC-32 of every file)


def test_unmapped_hook_falls_back_to_the_bridge(models, tmp_path, corpus):
    model = _model(models, "tiny-llama")
    hooks = ["blocks.0.ln1.hook_scale", "blocks.1.hook_resid_post"]
    store = _store(model, tmp_path, "auto", corpus, hooks=hooks, dtype="float32")
    cap = store.manifest["capture"]
    assert cap["path"] == "bridge" and "blocks.0.ln1.hook_scale" in cap["reason"]
    for h in hooks:
        assert torch.equal(store.rows(h, np.arange(store.n_rows)), _reference_rows(model, store, h)), h
    with pytest.raises(CaptureUnavailable, match=r"blocks\.0\.ln1\.hook_scale"):
        _store(model, tmp_path, "forced", corpus, hooks=hooks, capture="hf")


def test_bridge_with_hooks_of_its_own_stays_on_the_bridge(tmp_path, corpus):
    """A permanent hook on the bridge changes what the bridge path stores: auto uses the bridge, hf refuses."""
    model = load_model("tiny-llama", device="cpu")  # private copy: we add a permanent hook
    model.hook_dict["blocks.0.hook_resid_post"].add_perma_hook(lambda t, hook: t * 2.0)
    h = "blocks.1.hook_resid_post"
    try:
        store = _store(model, tmp_path, "auto", corpus, hooks=[h], dtype="float32")
        assert store.manifest["capture"]["path"] == "bridge" and "hooks of its own" in store.manifest["capture"]["reason"]
        assert torch.equal(store.rows(h, np.arange(store.n_rows)), _reference_rows(model, store, h))
        with pytest.raises(CaptureUnavailable, match="hooks of its own"):
            _store(model, tmp_path, "forced", corpus, hooks=[h], capture="hf")
        # the check on the probe catches a changed value even where the hook scan is bypassed
        plan = plan_capture(model, [h])
        verify_plan(model, plan, _tokens(2, 7), _bridge(model, _tokens(2, 7), [h]))
        assert h in plan.unmapped and "differs" in plan.unmapped[h]
    finally:
        model.reset_hooks(including_permanent=True)


def test_exception_mid_run_on_the_fast_path_resumes_byte_identical(models, tmp_path, corpus, monkeypatch):
    model = _model(models, "tiny-llama")
    args = dict(hooks=["blocks.*.hook_resid_post", "blocks.0.attn.hook_z"], n_tokens=1200)
    ref = _store(model, tmp_path, "ref", corpus, **args)
    assert ref.manifest["capture"]["path"] == "hf"
    layer_cls = type(hf_model(model).model.layers[0])
    orig, calls = layer_cls.forward, {"n": 0}

    def flaky(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 12:
            raise KeyboardInterrupt
        return orig(self, *a, **k)

    monkeypatch.setattr(layer_cls, "forward", flaky)
    with pytest.raises(KeyboardInterrupt):
        _store(model, tmp_path, "s", corpus, **args)
    monkeypatch.setattr(layer_cls, "forward", orig)
    part = ActivationStore.open(tmp_path / "s")
    assert 0 < part.n_rows < 1200
    assert all(not hp.has_hooks() for hp in model.hook_dict.values())
    done = _store(model, tmp_path, "s", corpus, **args)
    assert done.manifest["shards"] == ref.manifest["shards"]
    files = lambda root: {p.name: p.read_bytes() for p in sorted((root / "shards").rglob("*.bin"))}  # noqa: E731
    assert files(tmp_path / "s") == files(tmp_path / "ref")


def test_bad_capture_setting_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match=r"CacheConfig\.capture must be one of"):
        CacheConfig(hooks=["blocks.0.hook_resid_post"], out=str(tmp_path), capture="fast")


def test_cli_capture_flag(tmp_path, corpus, capsys):
    from interp.cli.main import main

    rc = main(["cache", "--model", "tiny-llama", "--hooks", "blocks.1.hook_resid_post", "--corpus", str(corpus),
               "--n-tokens", "200", "--context-length", "40", "--out", str(tmp_path / "s"), "--capture", "bridge",
               "--json"])
    assert rc == 0
    info = json.loads(capsys.readouterr().out)
    assert info["capture"]["path"] == "bridge" and info["last_run"]["capture"] == "bridge"
