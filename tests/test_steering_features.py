"""Feature steering (SAE latent, SNMF feature) on a tiny model: the chosen latent, its direction, and agreement
with the existing SNMF steering helper."""

from __future__ import annotations

import pytest
import torch

from interp.decompositions.snmf import store_activations
from interp.decompositions.snmf_features import steered_logits
from interp.steering import load_task, steer
from interp.steering.features import feature_vector
from interp.store import ActivationStore


@pytest.fixture(scope="module")
def task():
    return load_task("sentiment", n_build=4)


def test_sae_latent_vector(tiny_llama, task, tmp_path):
    v = feature_vector(tiny_llama, "sae", task, 0, corpus_tokens=1500, store_dir=str(tmp_path / "s"))
    assert v.method == "sae" and v.mode == "add" and v.hook_name == "blocks.0.hook_resid_post"
    assert float(v.vector.norm()) == pytest.approx(1.0, abs=1e-6)  # unit decoder row; float32 normalise
    assert "SAE latent" in v.meta["chosen"] and v.meta["mean_pos"] >= v.meta["mean_neg"]
    c = feature_vector(tiny_llama, "sae", task, 0, corpus_tokens=1500, mode="clamp", store_dir=str(tmp_path / "c"))
    assert c.mode == "clamp" and c.encoder is not None and c.encoder.shape == c.vector.shape
    # the clamp's latent a(h) = relu(encoder . h + encoder_bias) is the SAE latent (b_dec folded into the bias):
    # its mean over the build texts' last positions is the mean the latent was chosen by
    for key, y in (("mean_pos", "preferred"), ("mean_neg", "dispreferred")):
        h = torch.stack([tiny_llama.run_with_cache(tiny_llama.to_tokens(r["prompt"] + r[y]),
                                                   names_filter=c.hook_name)[1][c.hook_name][0, -1]
                         for r in task.build])
        # float32 dot products over d=32 and a mean of 4, batched vs one text at a time: ~1e-6
        assert float(torch.relu(h @ c.encoder + c.encoder_bias).mean()) == pytest.approx(c.meta[key], abs=1e-5)
    # its firing rate is the share of the corpus store's rows on which that latent is positive
    X = store_activations(ActivationStore.open(tmp_path / "c"), c.hook_name).X
    assert c.meta["fire_rate"] == pytest.approx(float((X @ c.encoder + c.encoder_bias > 0).float().mean()),
                                                abs=1 / len(X))  # float32 rounding may flip one row at 0
    with pytest.raises(ValueError, match="mode"):
        feature_vector(tiny_llama, "snmf", task, 0, mode="clamp")


def test_snmf_feature_steers_like_the_snmf_helper(tiny_llama, task, tmp_path):
    v = feature_vector(tiny_llama, "snmf", task, 1, corpus_tokens=1500, snmf_k=8, store_dir=str(tmp_path / "s"))
    assert v.hook_name == "blocks.1.mlp.hook_post" and v.mode == "add"
    assert float(v.vector.norm()) == pytest.approx(1.0, abs=1e-6)  # the unit feature z / ||z||; float32 normalise
    # the chosen feature's projection, averaged over the build texts' last positions, is the mean it was chosen by
    for key, y in (("mean_pos", "preferred"), ("mean_neg", "dispreferred")):
        h = torch.stack([tiny_llama.run_with_cache(tiny_llama.to_tokens(r["prompt"] + r[y]),
                                                   names_filter=v.hook_name)[1][v.hook_name][0, -1]
                         for r in task.build])
        # float32 dot products over d_mlp and a mean of 4, batched vs one text at a time: ~1e-6
        assert float((h @ v.vector).mean()) == pytest.approx(v.meta[key], abs=1e-5)
    toks = tiny_llama.to_tokens("I think that")
    with steer(tiny_llama, v, 2.0):
        ours = tiny_llama(toks)
    theirs = steered_logits(tiny_llama, v.hook_name, v.vector[None], torch.tensor([2.0]), toks[0])
    torch.testing.assert_close(ours, theirs)  # the same sum x + 2 z/||z|| at every position
