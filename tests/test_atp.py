"""AtP against activation patching where the model is linear in the patched activation."""

import pytest
import torch

from interp.attribution import activation_patching, attribution_patching
from interp.models import load_model
from interp.tasks import Task


def _task(model, same=False):
    clean = ["abc defg", "xyz wvut", "hij klmn"]
    corrupt = clean if same else ["abd degg", "xzz wvat", "hkj kamn"]
    return Task.from_prompts(model, clean, corrupt, answers=[("a", "b"), ("c", "d"), ("e", "f")])


@pytest.mark.parametrize("direction", ["denoise", "noise"])
@pytest.mark.parametrize("arch", ["tiny-llama", "tiny-gpt2"])
def test_atp_equals_patching_when_linear(arch, direction):
    """Freeze ln_final's normaliser (a constant scale): the logit difference is then linear in the
    last block's MLP output (per position too), so first-order AtP must equal patching exactly, in
    either direction (noise: corrupted value into the clean run)."""
    model = load_model(arch, device="cpu")  # a private copy: we add a permanent hook to it
    task = _task(model)
    model.add_hook("ln_final.hook_scale", lambda s, hook: torch.full_like(s, 0.05), is_permanent=True)
    try:
        ap = activation_patching(model, task, components=("attn_head", "mlp"), per_position=("mlp",),
                                 progress=False, source=direction)
        atp = attribution_patching(model, task, components=("attn_head", "mlp"), per_position=("mlp",),
                                   direction=direction)
    finally:
        model.reset_hooks(including_permanent=True)
    last = model.cfg.n_layers - 1
    a, b = atp.scores["mlp"][last], ap.scores["mlp"][last]
    assert b.abs().max().item() > 1e-4  # a non-trivial effect was compared
    # linear case: float32 re-sums, 840 eps32 of max
    assert torch.allclose(a, b, rtol=1e-4, atol=1e-4 * b.abs().max().item())
    # heads of the last layer feed its MLP (non-linear): there AtP is only approximate
    h_atp, h_ap = atp.scores["attn_head"][last], ap.scores["attn_head"][last]
    assert torch.corrcoef(torch.stack([h_atp, h_ap]))[0, 1] > 0.9


def test_atp_zero_when_clean_equals_corrupt(tiny_llama):
    res = attribution_patching(tiny_llama, _task(tiny_llama, same=True), per_position=True)
    for v in res.scores.values():
        assert v.abs().max().item() == 0.0


def test_atp_noise_direction_is_gradient_at_clean_times_delta(tiny_gpt2):
    """Noising AtP = (a_corrupt - a_clean) . dm/da at the clean run, written out by hand with
    torch.autograd.grad (per head of every layer and per MLP); metric_clean / metric_corrupt are the
    two runs' metrics."""
    task = _task(tiny_gpt2)
    res = attribution_patching(tiny_gpt2, task, components=("attn_head", "mlp"), direction="noise")
    L = tiny_gpt2.cfg.n_layers
    hooks = [f"blocks.{l}.attn.hook_z" for l in range(L)] + [f"blocks.{l}.hook_mlp_out" for l in range(L)]
    with torch.no_grad():
        _, cache = tiny_gpt2.run_with_cache(task.corrupt, names_filter=hooks)
        m_corrupt = task.metric(tiny_gpt2(task.corrupt)).mean().item()
    box = {}

    def leaf(x, hook):  # parameters do not require grad: start the graph at the residual stream
        return x.detach().requires_grad_(True)

    def saver(name):
        def fn(x, hook):
            box[name] = x
            return x

        return fn

    with torch.enable_grad(), tiny_gpt2.hooks(fwd_hooks=[("blocks.0.hook_resid_pre", leaf)]
                                              + [(h, saver(h)) for h in hooks]):
        m = task.metric(tiny_gpt2(task.clean))
        grads = dict(zip(hooks, torch.autograd.grad(m.sum(), [box[h] for h in hooks])))
    heads = torch.stack([((cache[h] - box[h].detach()) * grads[h]).sum((1, 3)).mean(0) for h in hooks[:L]])
    mlps = torch.stack([((cache[h] - box[h].detach()) * grads[h]).sum((1, 2)).mean(0) for h in hooks[L:]])
    for got, want in ((res.scores["attn_head"], heads), (res.scores["mlp"], mlps)):
        assert want.abs().max() > 1e-4  # a non-trivial score is compared
        # float32 reductions of <= 3*4*16 terms in another order: ~1e-6 of the largest score
        assert torch.allclose(got, want, atol=1e-5 * want.abs().max().item()), (got, want)
    assert res.metric_clean == pytest.approx(m.mean().item(), abs=1e-6)
    assert res.metric_corrupt == pytest.approx(m_corrupt, abs=1e-6)
    with pytest.raises(ValueError, match="unknown direction"):
        attribution_patching(tiny_gpt2, task, direction="sideways")
