"""Massive-activation detection and ablation on a tiny model with planted massive activations."""

from __future__ import annotations

import pytest
import numpy as np
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
    rows = st.table()
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
    held = _tokens(model, ["q. rs tu v", "mn o.p qrs"])
    st = massive_stats(model, tokens)
    ab = massive_ablation(model, tokens, st, heldout=held)
    assert ab.hook == "blocks.0.hook_resid_post" and ab.dims == [DIM]
    assert ab.n_overwritten == 6 and ab.n_by_kind == {"first": 3, "delimiter": 3, "other": 0}
    assert ab.n_heldout == {"first": 2, "delimiter": 2, "other": 0}
    # one mean per kind: +2000 on <bos>, -3000 on '.'; the block-0 output adds < 5 (see test_detection_matches_definition)
    assert abs(ab.mean_values["first"][0] - V_BOS) < 5 and abs(ab.mean_values["delimiter"][0] - V_DOT) < 5
    assert ab.mean_values["other"] == [None]
    assert ab.loss["clean"] == pytest.approx(float(_clean_loss(model, tokens)), abs=1e-4)
    assert ab.kl["clean"] == pytest.approx(0.0, abs=1e-6)  # KL of equal float32 logits: rounding
    assert ab.kl["zero"] > 10 * ab.kl["random_zero"]
    # each kind gets (almost) its own value back, so the mean variant stays close to clean
    assert ab.kl["mean"] < 0.01 * ab.kl["zero"]
    at1 = massive_ablation(model, tokens, st, hook="blocks.1.hook_resid_post", heldout=held)
    assert at1.hook == "blocks.1.hook_resid_post" and at1.n_overwritten == 6
    with pytest.raises(ValueError, match="no massive activations were detected at"):
        massive_ablation(model, tokens, st, hook="blocks.0.hook_mlp_out", heldout=held)


def test_mean_variant_uses_heldout_mean_per_kind():
    """The mean variant writes, into each massive entry, the held-out mean of its own token kind.

    '.' plants -3000 and ',' plants -1000 (both delimiters).  The analysed rows hold only '.', the
    held-out rows '.' and ',' equally often, so the held-out delimiter mean (~-2000) differs from
    the in-sample one (-3000) and from any mean pooled with the first token (+2000)."""
    from interp.models import load_model

    model = load_model("tiny-llama", device="cpu")
    emb = model.original_model.model.embed_tokens.weight
    dot, comma = (model.tokenizer.convert_tokens_to_ids(c) for c in ".,")
    with torch.no_grad():
        emb[0, DIM], emb[dot, DIM], emb[comma, DIM] = V_BOS, V_DOT, -1000.0
    tokens = _tokens(model, ["ab. cd ef", "x.y z w q", "hello. wo"])
    held = _tokens(model, ["q. rs, tu", "m, o.p qr"])
    st = massive_stats(model, tokens)
    hook = "blocks.0.hook_resid_post"
    # expected means, by an explicit loop over the held-out residual
    _, cache = model.run_with_cache(held)
    h = cache[hook]
    first = [float(h[b, 0, DIM]) for b in range(h.shape[0])]
    delim = [float(h[b, p, DIM]) for b in range(h.shape[0]) for p in range(1, h.shape[1])
             if int(held[b, p]) in (dot, comma)]
    exp_first, exp_delim = sum(first) / len(first), sum(delim) / len(delim)
    assert len(delim) == 4 and abs(exp_delim - (V_DOT - 1000.0) / 2) < 5
    # capture what the mean variant (copies 2B..3B of the batched pass) feeds to block 1
    seen = {}

    def grab(x, hook):
        seen["h"] = x.detach().clone()

    with model.hooks(fwd_hooks=[("blocks.1.hook_resid_pre", grab)]):
        ab = massive_ablation(model, tokens, st, hook=hook, heldout=held)
    B = tokens.shape[0]
    got = seen["h"][2 * B:3 * B]
    # float32 means of 2-4 values of size ~3e3: rounding ~ 4 * eps32 * 3e3 = 1.4e-3; 1e-2 leaves room
    assert ab.mean_values["first"][0] == pytest.approx(exp_first, abs=1e-2)
    assert ab.mean_values["delimiter"][0] == pytest.approx(exp_delim, abs=1e-2)
    n_dot = 0
    for b in range(B):
        assert float(got[b, 0, DIM]) == pytest.approx(exp_first, abs=1e-2)  # same rounding as above
        for p in range(1, tokens.shape[1]):
            if int(tokens[b, p]) == dot:
                assert float(got[b, p, DIM]) == pytest.approx(exp_delim, abs=1e-2)
                n_dot += 1
    assert n_dot == 3
    # held-out text without a delimiter: no delimiter mean, so a clear error
    with pytest.raises(ValueError, match="no massive 'delimiter' entry"):
        massive_ablation(model, tokens, st, hook=hook, heldout=_tokens(model, ["ab cd ef", "gh ij kl"]))
    with pytest.raises(ValueError, match="needs heldout="):
        massive_ablation(model, tokens, st, hook=hook)
    with pytest.raises(ValueError, match="equals analysed row"):
        massive_ablation(model, tokens, st, hook=hook, heldout=tokens[1:2])


def test_mean_restores_when_values_agree():
    """With one planted value on the first token only, the mean equals it: KL(mean) ~ 0, KL(zero) > 0."""
    from interp.models import load_model

    model = load_model("tiny-llama", device="cpu")
    model.original_model.model.embed_tokens.weight[0, DIM] = V_BOS
    tokens = _tokens(model, ["ab cd ef", "xy z w q", "hello wo"])
    held = _tokens(model, ["mn op qr", "st uv wx"])
    ab = massive_ablation(model, tokens, massive_stats(model, tokens), heldout=held)
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
    with pytest.raises(ValueError, match="abs_threshold must be >= 0"):
        MassiveConfig(abs_threshold=-1)
    with pytest.raises(ValueError, match="batch_size"):
        MassiveConfig(batch_size=0)


def test_both_thresholds_are_required():
    """Negative controls: a large entry that misses one threshold is not massive.

    (a) embedding x100 (layer median |h| ~1.5) with 150 planted on <bos>: |a| > 100 but |a| / median
    ~ 100 < 1000; (b) the random embedding (median ~0.016) with 50 planted: ratio ~ 3000 >= 1000 but
    |a| < 100.  Both planted entries are the largest |h| of their sequences, so a detector that flags
    the top activation, or that checks only one threshold, fails here; lowering the missed threshold
    finds exactly the planted entries (the controls are not vacuous)."""
    from interp.models import load_model

    texts = ["some text. more", "other text, mor"]
    for scale, value, missed in ((100.0, 150.0, "ratio"), (1.0, 50.0, "abs")):
        model = load_model("tiny-llama", device="cpu")
        emb = model.original_model.model.embed_tokens.weight
        with torch.no_grad():
            emb.mul_(scale)
            emb[0, DIM] = value
        tokens = _tokens(model, texts)
        st = massive_stats(model, tokens)
        assert st.n_entries == 0 and st.entries == [], missed
        _, cache = model.run_with_cache(tokens)
        for h in st.hooks:  # the planted entry is each sequence's top |h| and misses exactly one threshold
            a = cache[h].abs()
            med = a.reshape(2, -1).median(1).values
            assert (a.reshape(2, -1).argmax(1) == DIM).all()
            ratio = a[:, 0, DIM] / med
            if missed == "ratio":
                assert (a[:, 0, DIM] > 100).all() and (ratio < 1000).all() and (ratio > 50).all()
            else:
                assert (a[:, 0, DIM] < 100).all() and (ratio >= 1000).all() and (a[:, 0, DIM] > 10).all()
        lowered = MassiveConfig(ratio_threshold=50) if missed == "ratio" else MassiveConfig(abs_threshold=10)
        found = massive_stats(model, tokens, lowered)
        assert {(e.seq, e.pos, e.dim) for e in found.entries} == {(0, 0, DIM), (1, 0, DIM)}
        assert found.n_entries == 2 * len(st.hooks)


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
    got = massive_stats_from_store(store, tokenizer=model.tokenizer)
    assert got.hooks == live.hooks
    # float32 store rows re-batched; top/median ratio amplifies rounding
    torch.testing.assert_close(got.ratio, live.ratio, rtol=1e-4, atol=1e-3)
    key = lambda e: (e.hook, e.seq, e.pos, e.dim, e.kind, e.token)  # noqa: E731
    assert sorted(map(key, got.entries)) == sorted(map(key, live.entries)) and got.n_entries > 0
    with pytest.raises(ValueError, match="no hook matching"):
        massive_stats_from_store(store, MassiveConfig(hooks="blocks.*.attn.hook_z"))


def test_a_scanned_layer_subset_is_named_by_its_layer(tiny_llama):
    """A hooks glob that scans layer 1 alone: the summary and the per-layer figures name layer 1, not
    index 0 of the scanned hooks."""
    import json

    from interp.phenomena.massive import MassiveResult

    tokens = torch.randint(4, 99, (2, 10), generator=torch.Generator().manual_seed(0))
    tokens[:, 0] = 0
    st = massive_stats(tiny_llama, tokens, MassiveConfig(hooks="blocks.1.hook_resid_post"))
    res = MassiveResult(stats=st, n_seqs=2, seq_len=10)
    assert st.hooks == ["blocks.1.hook_resid_post"] and not st.n_entries
    assert res.summary().endswith("after layer 1.")
    figs = [json.loads(s.body.replace("<\\/", "</")) for s in res.report().sections if s.kind == "figure"]
    assert len(figs) == 2 and all(f["data"][0]["x"] == [1] for f in figs)

    # the dynamics over checkpoints name the same layer: its curve, its fit and its row of the fit table
    from interp.phenomena.dynamics import CheckpointDynamics, curve, fit_dynamics

    steps = [0.0, *np.geomspace(10, 5000, 12).tolist()]
    y = curve(np.array(steps), A=500.0, lam=0.8, gamma=0.004, t0=0.5, K=40.0)
    res.dynamics = CheckpointDynamics(steps, st.hooks, [[v] for v in y.tolist()], [fit_dynamics(steps, y)], [None])
    assert "(layer 1: R²" in res.summary()
    sections = res.report().sections
    curves = [json.loads(s.body.replace("<\\/", "</")) for s in sections if s.kind == "figure"][-1]["data"]
    assert [c["name"] for c in curves] == ["L1", "L1 fit"]
    assert ">L1<" in [s.body for s in sections if s.kind == "table"][0]
