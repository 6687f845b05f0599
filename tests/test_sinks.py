"""Sink statistics, domains and active/dormant ablations against their definitions (tiny models)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from browser import check_result_report, needs_chromium, report_test

from interp.phenomena import Domain, default_domains, domain_tokens, domains_from_dir, sink_stats
from interp.phenomena.dormant import (DormantConfig, ablation_loss_matrix, active_dormant, candidate_heads, label_head,
                                     paired_bootstrap_ci)
from interp.phenomena.sinks import column_entropy


def _tokens(n=3, T=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.randint(4, 99, (n, T), generator=g)
    t[:, 0] = 0  # <bos>
    return t


def _reference(model, tokens):
    """The definitions of docs/methods.md, Attention sinks, computed with explicit loops from run_with_cache."""
    _, cache = model.run_with_cache(tokens)
    L, H = model.cfg.n_layers, model.cfg.n_heads
    n_kv = getattr(model.cfg, "n_key_value_heads", None) or H
    B, T = tokens.shape
    sink = torch.zeros(L, H)
    ent = torch.zeros(L, H)
    vs = torch.zeros(L, H)
    vm = torch.zeros(L, H)
    vx = torch.zeros(L, H)
    rs, rm, rx = torch.zeros(L), torch.zeros(L), torch.zeros(L)
    for layer in range(L):
        A = cache[f"blocks.{layer}.attn.hook_pattern"]
        V = cache[f"blocks.{layer}.attn.hook_v"]
        R = cache[f"blocks.{layer}.hook_resid_post"]
        for b in range(B):
            for h in range(H):
                kv = h // (H // n_kv)
                sink[layer, h] += sum(float(A[b, h, q, 0]) for q in range(1, T)) / (T - 1) / B
                e = 0.0
                for q in range(1, T):
                    row = A[b, h, q, : q + 1]
                    e += float(-(row * row.clamp_min(1e-30).log()).sum()) / math.log(q + 1)
                ent[layer, h] += e / (T - 1) / B
                norms = [float(V[b, i, kv].norm()) for i in range(T)]
                vs[layer, h] += norms[0] / B
                vm[layer, h] += sum(norms[1:]) / (T - 1) / B
                vx[layer, h] += max(norms[1:]) / B
            rn = [float(R[b, i].norm()) for i in range(T)]
            rs[layer] += rn[0] / B
            rm[layer] += sum(rn[1:]) / (T - 1) / B
            rx[layer] += max(rn[1:]) / B
    return dict(sink_score=sink, row_entropy=ent, value_norm_sink=vs, value_norm_rest_mean=vm,
                value_norm_rest_max=vx, resid_norm_sink=rs, resid_norm_rest_mean=rm, resid_norm_rest_max=rx)


def test_sink_stats_match_definitions(tiny_llama):
    tokens = _tokens()
    st = sink_stats(tiny_llama, tokens, batch_size=2)  # two passes: accumulation across batches
    ref = _reference(tiny_llama, tokens)
    for k, v in ref.items():
        # float32 stats via another batch layout: 840 eps32
        torch.testing.assert_close(getattr(st, k), v, atol=1e-5, rtol=1e-4, msg=k)
    # defaults for the dtype: one division
    torch.testing.assert_close(st.value_drain, ref["value_norm_sink"] / ref["value_norm_rest_mean"])
    # defaults for the dtype: one division
    torch.testing.assert_close(st.resid_peak, ref["resid_norm_sink"] / ref["resid_norm_rest_max"])
    assert st.example_sink_attention.shape == (2, 4, 10)


def test_sink_stats_grouped_query_attention():
    from transformer_lens.model_bridge import TransformerBridge

    from interp.models.tiny import TinyConfig, char_tokenizer, tiny_hf_model

    tok = char_tokenizer()
    hf = tiny_hf_model(TinyConfig(arch="llama", n_heads=4, n_kv_heads=2, seed=3), len(tok))
    model = TransformerBridge.boot_transformers("tiny-llama", hf_model=hf, tokenizer=tok)
    model.eval()
    tokens = _tokens(2, 8, seed=1)
    st = sink_stats(model, tokens)
    ref = _reference(model, tokens)
    for k, v in ref.items():
        # float32 stats via another batch layout: 840 eps32
        torch.testing.assert_close(getattr(st, k), v, atol=1e-5, rtol=1e-4, msg=k)
    # heads 0,1 share KV head 0; heads 2,3 share KV head 1
    assert torch.equal(st.value_norm_sink[:, 0], st.value_norm_sink[:, 1])


def test_summary_value_drain_is_over_the_listed_sink_heads(tiny_llama):
    """The summary's value sentence is the median value drain over exactly the heads sink_heads() lists
    (scores >= the threshold; the threshold is set to one head's score, so a strict > drops that head)."""
    st = sink_stats(tiny_llama, _tokens(3, 10, seed=9))
    st.sink_threshold = float(st.sink_score.flatten().sort().values[3])  # 5 of the 8 heads reach it
    heads = st.sink_heads()
    assert len(heads) == 5
    want = float(torch.stack([st.value_drain[a, b] for a, b, _ in heads]).median())
    assert f"Their value at the first token is {want:.2f}x the other tokens' (median)" in st.summary()


def test_sink_stats_rejects_bad_tokens(tiny_llama):
    with pytest.raises(ValueError, match="2-D"):
        sink_stats(tiny_llama, torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        sink_stats(tiny_llama, torch.zeros(2, 5))
    with pytest.raises(ValueError, match="at least 2 tokens"):
        sink_stats(tiny_llama, torch.zeros(2, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="batch_size"):
        sink_stats(tiny_llama, _tokens(), batch_size=0)


def test_domains(tiny_llama, tmp_path):
    doms = default_domains()
    assert [d.name for d in doms] == ["prose", "code", "numbers"]
    for d in doms:
        t = domain_tokens(tiny_llama, d, seq_len=32, n_seqs=4)
        assert t.shape == (4, 32) and (t[:, 0] == 0).all() and (t[:, 1:] != 0).all()
    # the prose windows are the text itself, in order
    t = domain_tokens(tiny_llama, doms[0], seq_len=16, n_seqs=2)
    assert tiny_llama.tokenizer.decode(t[0, 1:].tolist()) == "\n".join(doms[0].texts)[:15]
    (tmp_path / "legal.txt").write_text("Whereas the party of the first part.\n\nHereinafter the lessee.")
    (tmp_path / "poems.txt").write_text("Roses are red.")
    user = domains_from_dir(tmp_path)
    assert [d.name for d in user] == ["legal", "poems"] and len(user[0].texts) == 2
    with pytest.raises(ValueError, match="no non-empty text"):
        Domain("x", ("", " "))
    with pytest.raises(ValueError, match="not one string"):
        Domain("x", "abc")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        domains_from_dir(tmp_path / "nope")
    with pytest.raises(ValueError, match="seq_len"):
        domain_tokens(tiny_llama, doms[0], seq_len=2)


def _manual_loss(model, tokens, fwd, per_seq=False):
    with model.hooks(fwd_hooks=fwd):
        logits = model(tokens)
    lp = logits[:, :-1].log_softmax(-1)
    nll = -lp.gather(-1, tokens[:, 1:, None]).squeeze(-1)
    return nll.mean(-1) if per_seq else float(nll.mean())


@pytest.mark.parametrize("ablation", ["bos", "zero"])
def test_batched_ablation_equals_hand_written_intervention(tiny_llama, ablation):
    tokens = _tokens(3, 12, seed=4)
    heads = [(0, 1), (1, 3), (1, 0)]
    clean_seq, ablated_seq = ablation_loss_matrix(tiny_llama, tokens, heads, ablation, heads_per_pass=2)
    clean, losses = float(clean_seq.mean()), ablated_seq.mean(1).tolist()
    # float32 CE in another batch layout: 84 eps32 x CE
    assert clean == pytest.approx(_manual_loss(tiny_llama, tokens, []), abs=1e-5)
    # float32 per-sequence CE in another batch layout: 84 eps32 x CE (~1)
    torch.testing.assert_close(clean_seq, _manual_loss(tiny_llama, tokens, [], per_seq=True), atol=1e-5, rtol=0)
    for (L, h), got, got_seq in zip(heads, losses, ablated_seq):
        if ablation == "bos":
            def fn(a, hook, h=h):
                a = a.clone()
                a[:, h] = 0
                a[:, h, :, 0] = 1
                return a
            fwd = [(f"blocks.{L}.attn.hook_pattern", fn)]
        else:
            def fn(z, hook, h=h):
                z = z.clone()
                z[:, :, h] = 0
                return z
            fwd = [(f"blocks.{L}.attn.hook_z", fn)]
        want = _manual_loss(tiny_llama, tokens, fwd)
        assert got == pytest.approx(want, abs=1e-5)  # float32 CE in another batch layout: 84 eps32 x CE
        # float32 per-sequence CE in another batch layout: 84 eps32 x CE (~1)
        torch.testing.assert_close(got_seq, _manual_loss(tiny_llama, tokens, fwd, per_seq=True), atol=1e-5, rtol=0)
        assert abs(want - clean) > 1e-6  # the intervention does something on a random model
    with pytest.raises(ValueError, match="does not exist"):
        ablation_loss_matrix(tiny_llama, tokens, [(5, 0)])
    with pytest.raises(ValueError, match="unknown ablation"):
        ablation_loss_matrix(tiny_llama, tokens, heads, "mean")


def test_dormant_labels_follow_definition_on_planted_silent_head():
    """A head whose output projection is zeroed writes nothing: ablating it changes no loss, so it is
    dormant wherever its sink score passes the threshold, and every other head's Δloss is nonzero."""
    from interp.models import load_model

    model = load_model("tiny-llama", device="cpu")
    hf_o = model.original_model.model.layers[1].self_attn.o_proj
    d_head = model.cfg.d_head
    hf_o.weight[:, 2 * d_head:3 * d_head] = 0  # head L1H2 silent
    doms = {"a": _tokens(3, 12, seed=5), "b": _tokens(3, 12, seed=6)}
    cfg = DormantConfig(sink_threshold=0.0, loss_threshold=1e-6, heads="all", heads_per_pass=3)
    res = active_dormant(model, doms, cfg)
    i = res.heads.index((1, 2))
    for d in doms:
        # a dormant head changes nothing: rounding only
        assert abs(res.delta_loss[d][i]) < 1e-6 and res.labels[d][i] == "dormant"
        others = [x for j, x in enumerate(res.delta_loss[d]) if j != i]
        assert all(abs(x) > 1e-6 for x in others)
    for d in doms:  # an exactly silent head has the degenerate interval [0, 0]
        assert res.delta_ci[d][i] == (0.0, 0.0)
    assert res.switching == []  # the only dormant head is dormant on both domains
    assert len(res.table()) == 8 * len(doms)  # one row per ablated head and domain


def test_paired_bootstrap_ci_and_labels():
    """The interval matches the normal-theory interval of a mean on a large sample, is the point
    [c, c] for a constant difference, and the labels call dormant/active only outside the threshold."""
    g = torch.Generator().manual_seed(0)
    d = torch.randn(2, 400, generator=g) * torch.tensor([[0.01], [0.03]]) + torch.tensor([[0.0], [0.02]])
    lo, hi = paired_bootstrap_ci(d, n_boot=4000, level=0.95, seed=1)
    se = d.std(1) / 400 ** 0.5
    # bootstrap quantiles vs the normal interval at n = 400: Monte-Carlo + normal-approximation error, 0.25 se
    torch.testing.assert_close(lo, d.mean(1) - 1.96 * se, atol=float(se.max()) * 0.25, rtol=0)
    torch.testing.assert_close(hi, d.mean(1) + 1.96 * se, atol=float(se.max()) * 0.25, rtol=0)
    lo1, hi1 = paired_bootstrap_ci(torch.full((1, 5), 0.3), n_boot=50)
    assert float(lo1) == pytest.approx(0.3) and float(hi1) == pytest.approx(0.3)  # approx default: a constant sample
    assert torch.equal(paired_bootstrap_ci(d, seed=3)[0], paired_bootstrap_ci(d, seed=3)[0])  # seeded
    with pytest.raises(ValueError, match="heads, sequences"):
        paired_bootstrap_ci(torch.zeros(3))
    tau = 0.005
    assert label_head(0.95, -0.001, 0.004, 0.8, tau) == "dormant"
    assert label_head(0.95, -0.001, 0.006, 0.8, tau) == "undetermined"  # interval straddles +τ
    assert label_head(0.50, -0.001, 0.004, 0.8, tau) == "undetermined"  # no sink, writes little
    assert label_head(0.50, 0.006, 0.03, 0.8, tau) == "active"
    assert label_head(0.95, -0.03, -0.006, 0.8, tau) == "active"  # ablation confidently lowers the loss
    with pytest.raises(ValueError, match="ci_level"):
        DormantConfig(ci_level=1.0)


def test_candidate_heads_and_config_errors(tiny_llama):
    toks = {"a": _tokens(2, 10, seed=7), "b": _tokens(2, 10, seed=8)}
    stats = {k: sink_stats(tiny_llama, v) for k, v in toks.items()}
    s = torch.stack([st.sink_score for st in stats.values()])
    thr = float(s.max(0).values.median())
    cand = candidate_heads(stats, thr, 100)
    assert set(cand) == {tuple(x) for x in (s.max(0).values >= thr).nonzero().tolist()}
    spread = [float(s[:, L, h].max() - s[:, L, h].min()) for L, h in cand]
    assert spread == sorted(spread, reverse=True)
    with pytest.raises(ValueError, match="unknown ablation"):
        DormantConfig(ablation="mean")
    with pytest.raises(ValueError, match="sink_threshold"):
        DormantConfig(sink_threshold=2)


def test_activation_store_path_equals_live(tiny_llama, tmp_path):
    """Residual peak and value norms from a real activation store (interp.store) equal the live computation;
    a store cached without its position-0 rows is refused."""
    from interp.phenomena.sinks import resid_peak_from_store, store_position_stats
    from interp.store import CacheConfig, cache_activations

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(default_domains()[0].texts))
    cfg = CacheConfig(model="tiny-llama", hooks=["blocks.*.hook_resid_post", "blocks.1.attn.hook_v"],
                      corpus=str(corpus), n_tokens=5 * 16, context_length=16, batch_size=2, dtype="float32",
                      out=str(tmp_path / "store"), device="cpu")
    store = cache_activations(cfg, model=tiny_llama, progress=False)
    tokens = torch.as_tensor(store.tokens[:]).long().view(-1, 16)
    assert (tokens[:, 0] == 0).all()
    live = sink_stats(tiny_llama, tokens)
    got = resid_peak_from_store(store)
    # float32 store rows vs the live forward: norms over d, 840 eps32
    torch.testing.assert_close(got["resid_norm_sink"], live.resid_norm_sink, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got["resid_norm_rest_mean"], live.resid_norm_rest_mean, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got["resid_norm_rest_max"], live.resid_norm_rest_max, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got["resid_peak"], live.resid_peak, rtol=1e-4, atol=1e-5)  # as above
    n_kv = int(getattr(tiny_llama.cfg, "n_key_value_heads", None) or tiny_llama.cfg.n_heads)
    group = tiny_llama.cfg.n_heads // n_kv
    v = store_position_stats(store, "blocks.1.attn.hook_v",
                             reduce=lambda x: x.view(len(x), n_kv, -1).norm(dim=-1))
    for got_v, want in zip(v, (live.value_norm_sink, live.value_norm_rest_mean, live.value_norm_rest_max)):
        torch.testing.assert_close(got_v, want[1, ::group], rtol=1e-4, atol=1e-5)  # as above
    with pytest.raises(ValueError, match="no blocks.L.hook_resid_post"):
        resid_peak_from_store(store, layers=[7])
    cfg = dataclasses.replace(cfg, skip_bos=True, out=str(tmp_path / "nobos"))
    with pytest.raises(ValueError, match="position-0 row"):
        resid_peak_from_store(cache_activations(cfg, model=tiny_llama, progress=False))


def _rot_store(tmp_path, n_kv):
    """A real tiny store of post-rotary q/k rows (5 sequences of 16 tokens) and the model it came from."""
    from transformer_lens.model_bridge import TransformerBridge

    from interp.models.tiny import TinyConfig, char_tokenizer, tiny_hf_model
    from interp.store import CacheConfig, cache_activations

    tok = char_tokenizer()
    hf = tiny_hf_model(TinyConfig(arch="llama", n_heads=4, n_kv_heads=n_kv, seed=5), len(tok))
    model = TransformerBridge.boot_transformers("tiny-llama", hf_model=hf, tokenizer=tok)
    model.eval()
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(default_domains()[0].texts))
    cfg = CacheConfig(model="tiny-llama", hooks=["blocks.*.attn.hook_rot_q", "blocks.*.attn.hook_rot_k"],
                      corpus=str(corpus), n_tokens=5 * 16, context_length=16, batch_size=2, dtype="float32",
                      out=str(tmp_path / "store"), device="cpu")
    store = cache_activations(cfg, model=model, progress=False)
    return model, store, torch.as_tensor(store.tokens[:]).long().view(-1, 16)


@pytest.mark.parametrize("n_kv", [4, 2])
def test_sink_score_from_store_equals_live(tmp_path, n_kv):
    """Sink score and row entropy rebuilt from stored post-rotary q/k rows (an independent path:
    softmax(q kᵀ/√d) per stored sequence) equal the live hook_pattern numbers, with and without GQA."""
    from interp.phenomena.sinks import sink_scores_from_store
    from interp.results import load_result

    model, store, tokens = _rot_store(tmp_path, n_kv)
    assert tuple(store.row_shape("blocks.0.attn.hook_rot_k"))[0] in (n_kv, 4)
    live = sink_stats(model, tokens)
    got = sink_scores_from_store(store)
    assert got.n_seqs == 5 and got.layers == list(range(model.cfg.n_layers))
    # float32 attention statistics re-batched from the store: 840 eps32
    torch.testing.assert_close(got.sink_score, live.sink_score, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got.row_entropy, live.row_entropy, rtol=1e-4, atol=1e-5)
    part = sink_scores_from_store(store, layers=[1], max_seqs=2)
    # float32 attention statistics re-batched: 840 eps32
    torch.testing.assert_close(part.sink_score[0], sink_stats(model, tokens[:2]).sink_score[1],
                               rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="hook_rot_q and hook_rot_k"):
        sink_scores_from_store(store, layers=[7])
    if n_kv == 2:  # the CLI face prints the same numbers as the live path
        import json
        import subprocess
        import sys

        out = subprocess.run([sys.executable, "-m", "interp.cli.main", "store", "sinks", str(store.path), "--json",
                              "--threshold", "0"], capture_output=True, text=True, check=True).stdout
        cli = load_result(json.loads(out))
        # CLI JSON of the same float32 stats: 840 eps32
        torch.testing.assert_close(cli.sink_score, live.sink_score, rtol=1e-4, atol=1e-5)
        assert cli.n_seqs == 5 and len(cli.sink_heads()) == live.sink_score.numel()
        bad = subprocess.run([sys.executable, "-m", "interp.cli.main", "store", "sinks", str(store.path), "--layers", "7"],
                             capture_output=True, text=True)
        assert bad.returncode != 0 and "hook_rot_q and hook_rot_k for layers [7]" in bad.stderr


@needs_chromium
@report_test("store_sinks")
def test_store_sinks_result_and_report(tmp_path, capsys):
    """``interp store sinks --out FILE`` saves the typed result (JSON round trip equal); its summary counts
    the heads whose live sink score reaches the threshold; the heatmap rows are the stored layers asked for
    (layer 1 alone is labelled L1, not L0); the report renders in Chromium with every axis declared."""
    import json

    from interp.cli.main import main
    from interp.results import load_result

    model, store, tokens = _rot_store(tmp_path, 2)
    live = sink_stats(model, tokens).sink_score[1]
    thr = float(live.median())
    assert main(["store", "sinks", str(store.path), "--layers", "1", "--threshold", str(thr),
                 "--out", str(tmp_path / "sinks.json")]) == 0
    res = load_result(tmp_path / "sinks.json")
    assert res.kind == "store_sinks" and res.layers == [1] and res.sink_threshold == thr
    assert load_result(res.to_json()).to_json() == res.to_json()
    n = int((live >= thr).sum())
    assert res.summary().startswith(f"**{n} of {live.numel()} heads are attention sinks**")
    assert f"wrote {tmp_path / 'sinks.json'}" in capsys.readouterr().out
    figs = [json.loads(s.body.replace("<\\/", "</")) for s in res.report().sections if s.kind == "figure"]
    assert len(figs) == 2 and all(f["data"][0]["y"] == ["L1"] for f in figs)
    check_result_report(res, tmp_path)


def _column_entropy_loop(A):
    """Guo et al.'s column statistic, written out: max over keys k of H(A[:, k] / sum_q A[q, k]) / log(T - k)."""
    T = len(A)
    best = 0.0
    for k in range(T):
        col = [A[q][k] for q in range(T)]
        total = sum(col)
        H = -sum(x / total * math.log(x / total) for x in col if x > 0) if total > 0 else 0.0
        score = H / math.log(T - k) if T - k > 1 else 0.0
        best = max(best, score)
    return best


def test_column_entropy_matches_definition():
    T = 6
    sink = torch.zeros(T, T)
    sink[:, 0] = 1  # every query on key 0: column 0 is uniform over the T queries
    assert float(column_entropy(sink)[0]) == pytest.approx(1.0, abs=1e-12)  # log T / log T
    assert float(column_entropy(sink).max()) == pytest.approx(1.0, abs=1e-12)
    assert (column_entropy(sink)[1:] == 0).all()  # keys that receive nothing
    diag = torch.eye(T)  # every key attended by exactly one query
    assert float(column_entropy(diag).max()) == 0.0
    uniform = torch.tril(torch.ones(T, T)) / torch.arange(1, T + 1)[:, None]  # row q uniform over keys <= q
    g = torch.Generator().manual_seed(0)
    rand = torch.tril(torch.rand(T, T, generator=g) ** 3)
    rand = rand / rand.sum(-1, keepdim=True)
    for A in (sink, diag, uniform, rand):
        # float64 inside; 1e-6 covers the float32 result (eps32 ~ 1.2e-7 on values <= 1)
        assert float(column_entropy(A).max()) == pytest.approx(_column_entropy_loop(A.tolist()), abs=1e-6)
    # batched over [b, H, T, T]: one score per (sequence, head)
    batch = torch.stack([torch.stack([sink, diag]), torch.stack([uniform, rand])])
    got = column_entropy(batch).max(-1).values  # Guo's per-head score: max over keys
    assert got.shape == (2, 2)
    assert got[1, 1] == pytest.approx(_column_entropy_loop(rand.tolist()), abs=1e-6)  # same float32 bound
    with pytest.raises(ValueError, match="square causal"):
        column_entropy(torch.ones(3, 4))


def test_column_entropy_stats_on_model_and_in_result(tiny_llama):
    toks = _tokens(2, 10, seed=3)
    got = sink_stats(tiny_llama, toks, batch_size=1).column_entropy
    _, cache = tiny_llama.run_with_cache(toks)
    L, H = tiny_llama.cfg.n_layers, tiny_llama.cfg.n_heads
    assert got.shape == (L, H)
    for l in range(L):
        A = cache[f"blocks.{l}.attn.hook_pattern"]
        for h in range(H):
            exp = sum(_column_entropy_loop(A[b, h].tolist()) for b in range(2)) / 2
            assert float(got[l, h]) == pytest.approx(exp, abs=1e-5)  # float32 pattern entries, sums over 10 keys
    res = active_dormant(tiny_llama, {"a": toks}, DormantConfig(heads="all", n_boot=10))
    torch.testing.assert_close(res.stats["a"].column_entropy, got)
    (l0, h0), row = res.heads[0], res.table()[0]
    assert (row["domain"], row["column entropy"]) == ("a", round(float(got[l0, h0]), 4))
    from interp.results import load_result

    # kept through the JSON
    torch.testing.assert_close(load_result(res.to_json()).stats["a"].column_entropy, got)


def test_store_rows_out_of_position_order(tiny_llama, tmp_path):
    """A real on-disk store whose rows lie in no order (a cached store's rows, every stream, written again
    in a seeded random permutation): each stored sequence comes back whole and in position order, checked
    against the permutation written, and the residual peak and sink score from it equal the live ones."""
    import numpy as np

    from interp.phenomena.sinks import resid_peak_from_store, sink_scores_from_store, store_sequences
    from interp.store import ActivationStore, CacheConfig, cache_activations
    from interp.store.writer import ShardWriter, commit_manifest

    T, S = 12, 4
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(default_domains()[0].texts))
    hooks = ["blocks.*.hook_resid_post", "blocks.*.attn.hook_rot_q", "blocks.*.attn.hook_rot_k"]
    cfg = CacheConfig(model="tiny-llama", hooks=hooks, corpus=str(corpus), n_tokens=S * T, context_length=T,
                      batch_size=2, dtype="float32", out=str(tmp_path / "store"), device="cpu")
    store = cache_activations(cfg, model=tiny_llama, progress=False)
    row = torch.arange(S * T)
    assert torch.equal(store.seq_pos[:], torch.stack([row // T, row % T], 1))  # cached in order
    perm = torch.randperm(S * T, generator=torch.Generator().manual_seed(0))
    out = tmp_path / "shuffled"
    manifest = {**store.manifest, "shards": [], "complete": False}
    w = ShardWriter(out, {h: store.d(h) * 4 for h in store.hooks}, store.shard_rows, S * T,
                    set(range(-(-S * T // store.shard_rows))), lambda rec: manifest["shards"].append(rec))
    for h in store.hooks:
        w.write(h, 0, store.rows(h, perm).numpy())
    w.write("tokens", 0, np.asarray(store.tokens, np.int32)[perm.numpy()])
    w.write("seq_pos", 0, np.asarray(store.seq_pos)[perm.numpy()])
    w.publish_complete()
    commit_manifest(out, manifest)
    shuffled = ActivationStore.open(out, verify="full")
    assert torch.equal(shuffled.seq_pos[:], torch.stack([perm // T, perm % T], 1))  # the rows lie in no order

    tokens = store.tokens[:].long().view(S, T)
    hook = "blocks.1.hook_resid_post"
    got = list(store_sequences(shuffled, hook))
    assert [sid for sid, _, _, _ in got] == list(range(S))
    for sid, rows, ids, pos in got:  # ids[p]: the row where position p of sequence sid was written
        assert torch.equal(ids, perm.argsort()[sid * T:(sid + 1) * T])
        assert torch.equal(pos, torch.arange(T))
        assert torch.equal(shuffled.tokens[ids].long(), tokens[sid])
        assert torch.equal(rows, store.rows(hook, row[sid * T:(sid + 1) * T]))
    live = sink_stats(tiny_llama, tokens)
    # float32 store rows vs the live forward: norms over d and attention statistics, 840 eps32
    peak, sink = resid_peak_from_store(shuffled)["resid_peak"], sink_scores_from_store(shuffled).sink_score
    torch.testing.assert_close(peak, live.resid_peak, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(sink, live.sink_score, rtol=1e-4, atol=1e-5)
