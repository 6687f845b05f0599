"""interp.steering against definitions: zero vector, linear response, GrAInS norm preservation, a planted token,
file round trip and bad input."""

from __future__ import annotations

import math

import pytest
import torch

from interp.models import HookNotFoundError, load_model
from interp.models.load import weight_hash
from interp.steering import (ModelMismatchError, SteeringVector, contrastive_token_scores, grains, load_vector,
                             mean_difference, steer)


def _vec(model, v, hook="blocks.1.hook_resid_post", mode="add", **kw):
    return SteeringVector(v, hook, 1, "mean_diff" if mode != "renorm" else "grains", weight_hash(model), mode, **kw)


@pytest.mark.parametrize("mode", ["add", "renorm", "clamp"])
def test_zero_vector_changes_no_logit(tiny_llama, mode):
    d = tiny_llama.cfg.d_model
    kw = {"encoder": torch.randn(d), "encoder_bias": -0.1} if mode == "clamp" else {}
    vec = _vec(tiny_llama, torch.zeros(d), mode=mode, **kw)
    toks = tiny_llama.to_tokens("hello world")
    base = tiny_llama(toks)
    with steer(tiny_llama, vec, 3.0):
        out = tiny_llama(toks)
    assert torch.equal(out, base)  # exact: x + 3*0 = x; ||x||/||x|| = 1 exactly in IEEE arithmetic


def test_additive_moves_linear_metric_by_s_times_directional_derivative(tiny_llama):
    # the logits are linear in ln_final.hook_out (unembedding, no bias), so the metric is linear in the hook
    m = tiny_llama
    hook = "ln_final.hook_out"
    toks = m.to_tokens("the cat sat")
    a, b = 5, 7

    def metric(logits):  # summed over positions, so a vector added at only some positions would be caught
        return (logits[0, :, a] - logits[0, :, b]).sum()

    v = torch.randn(m.cfg.d_model, generator=torch.Generator().manual_seed(0))
    vec = SteeringVector(v, hook, -1, "mean_diff", weight_hash(m), "add")
    grab = {}

    def keep(x, hook=None):
        grab["x"] = x.detach().requires_grad_(True)  # a leaf: the model's parameters need no grad
        return grab["x"]

    from interp.models import scoped_hooks

    with torch.enable_grad(), scoped_hooks(m, fwd=[(hook, keep)]):
        f0 = metric(m(toks))
        f0.backward()
    dd = float((grab["x"].grad[0] @ v).sum())  # directional derivative of the metric along v at every position
    for s in (0.5, -2.0):
        with steer(m, vec, s):
            f = float(metric(m(toks)))
        # float32 logits of size ~1 summed over T*d products: a few 1e-6 relative; 1e-4 leaves room
        assert f - float(f0) == pytest.approx(s * dd, rel=1e-4, abs=1e-4)


def test_grains_renormalisation_keeps_each_norm(tiny_llama):
    m = tiny_llama
    hook = "blocks.0.hook_resid_post"
    v = torch.randn(m.cfg.d_model, generator=torch.Generator().manual_seed(1))
    vec = SteeringVector(v, hook, 0, "grains", weight_hash(m), "renorm")
    toks = m.to_tokens("renormalise me")
    seen = []
    from interp.models import scoped_hooks

    with scoped_hooks(m, fwd=[(hook, lambda x, hook: seen.append(x.detach().clone()))]):
        m(toks)
        with steer(m, vec, 5.0):  # steer's hook is added after, so the capture runs first: add a second capture
            with scoped_hooks(m, fwd=[(hook, lambda x, hook: seen.append(x.detach().clone()))]):
                m(toks)
    base, steered = seen[0], seen[2]
    assert torch.equal(seen[1], base)  # the first capture of the steered run sees the unsteered input
    n0, n1 = base.norm(dim=-1), steered.norm(dim=-1)
    # float32: one multiply by a ratio of two norms over d=32 terms: ~ a few eps; 1e-5 relative is ~80 eps
    torch.testing.assert_close(n1, n0, rtol=1e-5, atol=0)
    cos = torch.nn.functional.cosine_similarity(base, steered, dim=-1)
    assert (cos < 0.999).all()  # and the direction did turn


def test_clamp_sets_the_latent(tiny_llama):
    m = tiny_llama
    d = m.cfg.d_model
    g = torch.Generator().manual_seed(2)
    w = torch.randn(d, generator=g)
    dec = w / w.dot(w)  # w . dec = 1, so the clamped latent is exactly s where the pre-activation is positive
    vec = SteeringVector(dec, "blocks.0.hook_resid_post", 0, "sae", weight_hash(m), "clamp", encoder=w,
                         encoder_bias=100.0)
    seen = []
    from interp.models import scoped_hooks

    with steer(m, vec, 2.5), scoped_hooks(m, fwd=[("blocks.0.hook_resid_post",
                                                   lambda x, hook: seen.append(x.detach().clone()))]):
        m(m.to_tokens("clamp"))
    a = torch.relu(seen[0] @ w + 100.0)
    torch.testing.assert_close(a, torch.full_like(a, 2.5), rtol=0, atol=1e-4)  # 100 + O(10) in float32: ~1e-5


def test_hooks_removed_on_exception(tiny_llama):
    vec = _vec(tiny_llama, torch.ones(tiny_llama.cfg.d_model))
    toks = tiny_llama.to_tokens("abc")
    base = tiny_llama(toks)
    with pytest.raises(RuntimeError, match="boom"):
        with steer(tiny_llama, vec, 1.0):
            raise RuntimeError("boom")
    assert torch.equal(tiny_llama(toks), base)


def test_save_load_round_trip_and_hash_refusal(tiny_llama, tiny_gpt2, tmp_path):
    vec = mean_difference(tiny_llama, ["I love it", "great day"], ["I hate it", "awful day"], layer=1)
    vec.save(tmp_path / "v")
    back = load_vector(tmp_path / "v.json", tiny_llama)
    assert torch.equal(back.vector, vec.vector) and back.hook_name == vec.hook_name
    assert back.model_hash == vec.model_hash and back.mode == "add" and back.method == "mean_diff"
    clamp = SteeringVector(vec.vector, vec.hook_name, 1, "sae", vec.model_hash, "clamp",
                           encoder=torch.ones_like(vec.vector), encoder_bias=0.25, meta={"latent": 3})
    clamp.save(tmp_path / "c")
    back = load_vector(tmp_path / "c.safetensors")  # every field comes back: the encoder row, its bias, meta
    assert torch.equal(back.encoder, clamp.encoder)
    assert (back.encoder_bias, back.meta, back.layer) == (0.25, {"latent": 3}, 1)
    with pytest.raises(ModelMismatchError, match="hash"):
        load_vector(tmp_path / "v", tiny_gpt2)
    with pytest.raises(ModelMismatchError, match="hash"):
        with steer(tiny_gpt2, vec, 1.0):
            pass


def test_load_refuses_other_files(tmp_path):
    """A JSON of another kind or schema version next to valid tensors is refused, not read as a vector."""
    import json

    path = SteeringVector(torch.ones(4), "blocks.0.hook_resid_post", 0, "mean_diff", "h").save(tmp_path / "v")
    info = json.loads(path.read_text())
    for change, message in (({"kind": "sae"}, "not a steering vector"), ({"schema_version": 2}, "schema_version")):
        path.write_text(json.dumps({**info, **change}))
        with pytest.raises(ValueError, match=message):
            load_vector(path)
    (tmp_path / "v.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_vector(tmp_path / "v")


def test_mean_difference_is_the_mean_difference(tiny_llama):
    pos, neg = ["I love it", "so good"], ["I hate it", "bad"]
    vec = mean_difference(tiny_llama, pos, neg, layer=0)
    hook = "blocks.0.hook_resid_post"

    def act(t):  # one text at a time through run_with_cache (the builder groups texts by length)
        return tiny_llama.run_with_cache(tiny_llama.to_tokens(t), names_filter=hook)[1][hook][0, -1]

    want = torch.stack([act(t) for t in pos]).mean(0) - torch.stack([act(t) for t in neg]).mean(0)
    torch.testing.assert_close(vec.vector, want)  # default float32 tolerances: batching changes only rounding


def test_bad_input(tiny_llama):
    d = tiny_llama.cfg.d_model
    with pytest.raises(ValueError, match="unknown method 'magic'"):
        SteeringVector(torch.ones(d), "blocks.0.hook_resid_post", 0, "magic", weight_hash(tiny_llama))
    with pytest.raises(ValueError, match="unknown mode 'twist'"):
        SteeringVector(torch.ones(d), "blocks.0.hook_resid_post", 0, "grains", weight_hash(tiny_llama), "twist")
    vec = _vec(tiny_llama, torch.ones(d))
    for s in (math.nan, math.inf, "strong"):
        with pytest.raises(ValueError, match="finite"):
            with steer(tiny_llama, vec, s):
                pass
    missing = SteeringVector(torch.ones(d), "blocks.9.hook_resid_post", 9, "mean_diff", weight_hash(tiny_llama))
    with pytest.raises(HookNotFoundError):
        with steer(tiny_llama, missing, 1.0):
            pass
    with pytest.raises(ValueError, match="out of range"):
        mean_difference(tiny_llama, ["a"], ["b"], layer=5)
    wrong_width = _vec(tiny_llama, torch.ones(d + 1))
    with pytest.raises(ValueError, match="width"):
        with steer(tiny_llama, wrong_width, 1.0):
            tiny_llama(tiny_llama.to_tokens("x"))


# ---------------------------------------------------------------------------------------------------------------
# GrAInS on a tiny model trained so that one planted token ("Z") drives the preferred output ("A" rather than "B")

def _planted_model(out, steps=150, seed=0):
    from interp.models.tiny import TinyConfig, char_tokenizer, tiny_hf_model

    tok = char_tokenizer()
    hf = tiny_hf_model(TinyConfig(arch="llama", n_layers=2, seed=seed), len(tok))
    letters = torch.tensor([tok.convert_tokens_to_ids(c) for c in "abcdefghij"])
    Z, A, B = (tok.convert_tokens_to_ids(c) for c in "ZAB")
    g = torch.Generator().manual_seed(seed)
    hf.train()
    opt = torch.optim.Adam(hf.parameters(), lr=1e-2)
    for _ in range(steps):
        x = letters[torch.randint(0, 10, (32, 7), generator=g)]
        has = torch.rand(32, generator=g) < 0.5
        pos = torch.randint(0, 7, (32,), generator=g)
        x[has, pos[has]] = Z
        x = torch.cat([torch.zeros(32, 1, dtype=torch.long), x], 1)
        loss = torch.nn.functional.cross_entropy(hf(x).logits[:, -1], torch.where(has, A, B))
        opt.zero_grad()
        loss.backward()
        opt.step()
    hf.eval()
    hf.save_pretrained(out)
    tok.save_pretrained(out)
    return load_model(str(out), device="cpu"), float(loss.detach())


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    model, loss = _planted_model(tmp_path_factory.mktemp("planted"))
    assert loss < 0.05  # the task is learnt (measured: 7e-4 after 150 steps)
    return model


def test_grains_ranks_the_planted_token_first(planted):
    for prompt in ("bcZdefg", "Zabcdei", "abcdeZf"):
        sp, sn, n_p, s_pos, s_neg, _ = contrastive_token_scores(planted, prompt, "A", "B")
        z = 1 + prompt.index("Z")  # BOS first
        assert int(s_pos[:n_p].argmax()) == z
        assert int(s_neg[:n_p].argmax()) == z  # -log p(B) is raised by Z too


def test_grains_vector_raises_the_preferred_output(planted):
    m = planted
    vec = grains(m, ["bcZdefg", "Zabcdei", "abcdeZf", "jihZgfe"], ["A"] * 4, ["B"] * 4, layer=1, k=1)
    assert all(e["masked_pos_p"] == [1 + e["prompt"].index("Z")] for e in vec.meta["examples"])
    A, B = (m.tokenizer.convert_tokens_to_ids(c) for c in "AB")
    toks = torch.cat([m.to_tokens(p) for p in ("bcadefg", "jjihgfe", "aaaaaaa")])
    base = m(toks)[:, -1].log_softmax(-1)
    with steer(m, vec, 100.0):
        lp = m(toks)[:, -1].log_softmax(-1)
    gain = (lp[:, A] - lp[:, B]) - (base[:, A] - base[:, B])
    # measured on "bcadefg": -8.3 -> +9.9 at strength 100; 5 nats is far above float noise and below that
    assert (gain > 5).all(), gain
