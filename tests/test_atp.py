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


@pytest.mark.parametrize("arch", ["tiny-llama", "tiny-gpt2"])
def test_atp_equals_patching_when_linear(arch):
    """Freeze ln_final's normaliser (a constant scale): the logit difference is then linear in the
    last block's MLP output (per position too), so first-order AtP must equal patching exactly."""
    model = load_model(arch, device="cpu")  # a private copy: we add a permanent hook to it
    task = _task(model)
    model.add_hook("ln_final.hook_scale", lambda s, hook: torch.full_like(s, 0.05), is_permanent=True)
    try:
        ap = activation_patching(model, task, components=("attn_head", "mlp"), per_position=("mlp",),
                                 progress=False)
        atp = attribution_patching(model, task, components=("attn_head", "mlp"), per_position=("mlp",))
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


def test_atp_noise_direction_and_errors(tiny_gpt2):
    task = _task(tiny_gpt2)
    res = attribution_patching(tiny_gpt2, task, direction="noise")
    assert res.metric_clean > -1e9 and res.scores["attn_head"].shape == (2, 4)
    with pytest.raises(ValueError, match="unknown direction"):
        attribution_patching(tiny_gpt2, task, direction="sideways")
