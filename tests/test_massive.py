"""Massive-activation detection and ablation on a tiny model with planted massive activations."""

from __future__ import annotations

import pytest
import torch

from interp.phenomena.massive import MassiveConfig, massive_ablation, massive_stats, token_kind

DIM, V_BOS, V_DOT = 5, 2000.0, -3000.0


@pytest.fixture(scope="module")
def planted():
    """tiny-llama whose embedding puts 2000 on dim 5 of <bos> and -3000 on dim 5 of '.'.

    The residual stream carries the embedding to every layer, so every layer holds a massive
    activation at dim 5 on the first token and on each '.' (RMSNorm keeps the blocks' own
    outputs small), and nowhere else."""
    from interp.models import load_model

    model = load_model("tiny-llama", device="cpu")
    emb = model.original_model.model.embed_tokens.weight
    dot = model.tokenizer.convert_tokens_to_ids(".")
    emb[0, DIM] = V_BOS
    emb[dot, DIM] = V_DOT
    return model, dot


def _tokens(model, texts):
    return torch.stack([model.to_tokens(t)[0] for t in texts])


def test_detection_matches_definition(planted):
    model, dot = planted
    tokens = _tokens(model, ["ab. cd ef", "x.y z w q"])
    st = massive_stats(model, tokens, MassiveConfig(batch_size=1))
    _, cache = model.run_with_cache(tokens)
    expected = set()
    for i, h in enumerate(st.hooks):
        a = cache[h].abs()
        med = a.reshape(2, -1).median(1).values
        top = a.reshape(2, -1).max(1).values
        torch.testing.assert_close(st.ratio[i], (top / med).mean())  # defaults for the dtype: the same reduction
        torch.testing.assert_close(st.median[i], med.mean())  # defaults for the dtype
        m = (a > 100) & (a >= 1000 * med[:, None, None])
        expected |= {(h, b, p, d) for b, p, d in m.nonzero().tolist()}
    got = {(e.hook, e.seq, e.pos, e.dim) for e in st.entries}
    assert got == expected and st.n_entries == len(expected)
    # planted positions: <bos> at 0 and '.' at 3 (seq 0) / 2 (seq 1), dim 5, in all layers
    assert {(s, p, d) for _, s, p, d in got} == {(0, 0, DIM), (1, 0, DIM), (0, 3, DIM), (1, 2, DIM)}
    assert st.kinds() == {"first": 2 * len(st.hooks), "delimiter": 2 * len(st.hooks), "other": 0}
    assert st.top_dim == [DIM] * len(st.hooks)
    firsts = [e.value for e in st.entries if e.kind == "first"]
    assert all(abs(v - V_BOS) < 5 for v in firsts)
    rows = st.summary()
    assert {r["kind"] for r in rows} == {"first", "delimiter"} and all(r["dim"] == DIM for r in rows)


def test_thresholds_are_configurable(planted):
    model, _ = planted
    tokens = _tokens(model, ["ab. cd ef"])
    none = massive_stats(model, tokens, MassiveConfig(abs_threshold=1e5))
    assert none.n_entries == 0 and none.entries == []
    capped = massive_stats(model, tokens, MassiveConfig(max_entries=3))
    assert len(capped.entries) == 3 and capped.n_entries == 4
    with pytest.raises(ValueError, match="no massive activations"):
        massive_ablation(model, tokens, none)


def test_zero_breaks_mean_preserves(planted):
    model, _ = planted
    tokens = _tokens(model, ["ab. cd ef", "x.y z w q", "hello. wo"])
    st = massive_stats(model, tokens)
    ab = massive_ablation(model, tokens, st)
    assert ab.hook == "blocks.0.hook_resid_post" and ab.dims == [DIM]
    assert ab.n_overwritten == 6  # 3 first tokens + 3 dots
    # the planted mean mixes +2000 (bos) and -3000 (dot): report the mean value actually used
    # planted -500 plus the model's own O(1) residual
    assert ab.mean_values[0] == pytest.approx((3 * V_BOS + 3 * V_DOT) / 6, rel=0.01)
    # float32 CE, another batch layout: 84 eps32 x CE (~1)
    assert ab.loss["clean"] == pytest.approx(float(_clean_loss(model, tokens)), abs=1e-4)
    assert ab.kl["clean"] == pytest.approx(0.0, abs=1e-6)  # KL of equal float32 logits: rounding
    assert ab.kl["zero"] > 10 * ab.kl["random_zero"]
    at1 = massive_ablation(model, tokens, st, hook="blocks.1.hook_resid_post")
    assert at1.hook == "blocks.1.hook_resid_post" and at1.n_overwritten == 6
    with pytest.raises(ValueError, match="no massive activations were detected at"):
        massive_ablation(model, tokens, st, hook="blocks.0.hook_mlp_out")


def test_mean_restores_when_values_agree():
    """With one planted value on the first token only, the mean equals it: KL(mean) ~ 0, KL(zero) > 0."""
    from interp.models import load_model

    model = load_model("tiny-llama", device="cpu")
    model.original_model.model.embed_tokens.weight[0, DIM] = V_BOS
    tokens = _tokens(model, ["ab cd ef", "xy z w q", "hello wo"])
    ab = massive_ablation(model, tokens, massive_stats(model, tokens))
    assert ab.n_overwritten == 3
    assert ab.kl["mean"] < 1e-4 < ab.kl["zero"]  # mean ablation moves little; KL > 1e-4 for zero
    # zero ablation: loss moves by far more than 1e-4
    assert ab.loss["zero"] != pytest.approx(ab.loss["clean"], abs=1e-4)


def _clean_loss(model, tokens):
    lp = model(tokens)[:, :-1].log_softmax(-1)
    return -lp.gather(-1, tokens[:, 1:, None]).mean()


def test_token_kind_and_config_errors():
    assert token_kind(0, "x") == "first"
    assert token_kind(3, ".") == "delimiter" and token_kind(3, "\n") == "delimiter"
    assert token_kind(3, " the") == "other"
    with pytest.raises(ValueError, match="thresholds"):
        MassiveConfig(abs_threshold=-1)
    with pytest.raises(ValueError, match="batch_size"):
        MassiveConfig(batch_size=0)


def test_no_massive_activations_in_random_model(tiny_llama):
    tokens = torch.stack([tiny_llama.to_tokens("some text. more")[0]] * 2)
    st = massive_stats(tiny_llama, tokens)
    assert st.n_entries == 0
    assert (st.ratio < 1000).all()


def test_store_path_equals_live(planted, tmp_path):
    """Detection from a real activation store (rows + seq_pos) equals the live detection."""
    from interp.phenomena.massive import massive_stats_from_store
    from interp.store import CacheConfig, cache_activations

    model, _ = planted
    corpus = tmp_path / "c.txt"
    corpus.write_text("One. Two three. Four five six. Seven.\nEight nine, ten. " * 3)
    cfg = CacheConfig(model="tiny-llama", hooks=["blocks.*.hook_resid_post"], corpus=str(corpus), n_tokens=4 * 12,
                      context_length=12, batch_size=3, dtype="float32", out=str(tmp_path / "s"), device="cpu")
    store = cache_activations(cfg, model=model, progress=False)
    tokens = torch.as_tensor(store.tokens[:]).long().view(-1, 12)
    live = massive_stats(model, tokens)
    got = massive_stats_from_store(store, tokenizer=model.tokenizer, batch_size=5)
    assert got.hooks == live.hooks
    # float32 store rows re-batched; top/median ratio amplifies rounding
    torch.testing.assert_close(got.ratio, live.ratio, rtol=1e-4, atol=1e-3)
    key = lambda e: (e.hook, e.seq, e.pos, e.dim, e.kind, e.token)  # noqa: E731
    assert sorted(map(key, got.entries)) == sorted(map(key, live.entries)) and got.n_entries > 0
    with pytest.raises(ValueError, match="no hook matching"):
        massive_stats_from_store(store, MassiveConfig(hooks="blocks.*.attn.hook_z"))
