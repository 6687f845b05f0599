"""Typed results of dictionaries, decompositions and the store, from real small runs on a tiny model and a
tiny store: the numbers against their definitions, the JSON round trip, `interp report results.json`
giving the same report, and each report rendered in headless Chromium with its axes checked."""

import json
import re

import pytest
import torch

from browser import check_result_report, needs_chromium, report_test
from interp.cli.main import main
from interp.results import load_result

HOOKS = ["blocks.0.hook_resid_post", "blocks.0.ln2.hook_normalized", "blocks.0.hook_mlp_out",
         "blocks.1.mlp.hook_post"]


@pytest.fixture(scope="module")
def store(tmp_path_factory, tiny_llama):
    from interp.store import ActivationStore, CacheConfig, cache_activations

    d = tmp_path_factory.mktemp("res_store")
    (d / "c.txt").write_text("\n\n".join(f"Line {i}: the {w} ran home at {i % 12} o'clock." for i, w in
                                         enumerate(["fox", "hen", "cow", "pig", "owl"] * 20)))
    cache_activations(CacheConfig(model="tiny-llama", hooks=HOOKS, corpus=str(d / "c.txt"), n_tokens=1024,
                                  context_length=32, batch_size=8, dtype="float32", out=str(d / "store"),
                                  shard_rows=384, device="cpu"), model=tiny_llama)
    return ActivationStore.open(d / "store")


def round_trip_and_cli(res, tmp_path):
    """JSON round trip equal; `interp report results.json` writes the report res.report() writes."""
    data = res.to_json()
    back = load_result(json.loads(json.dumps(data)))
    assert type(back) is type(res) and back.to_json() == data
    path = res.save(tmp_path / "results.json")
    assert main(["report", str(path), "--out", str(tmp_path / "cli.html")]) == 0
    stamp = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC")  # the page's written-at time (minutes)
    cli, direct = ((tmp_path / "cli.html").read_text(), res.report().write(tmp_path / "direct.html").read_text())
    assert stamp.sub("", cli) == stamp.sub("", direct)


def _train(store, hook_in, hook_out=None, steps=6):
    from interp.dictionaries import SAEConfig, TrainConfig, train_sae

    cfg = SAEConfig(arch="topk" if hook_out is None else "relu", d_in=store.d(hook_in), d_sae=64, k=4,
                    d_out=store.d(hook_out) if hook_out else None, hook_in=hook_in, hook_out=hook_out, l1_coeff=0.01)
    tcfg = TrainConfig(n_tokens=store.n_rows, batch_size=128, lr=3e-3, warmup_steps=2, max_steps=steps, log_every=2,
                       progress=False, device="cpu")
    return train_sae(store, cfg, tcfg), tcfg


@needs_chromium
@report_test("dictionary_training", "sae")
def test_sae_evaluation_and_training(store, tiny_llama, tmp_path):
    from interp.dictionaries.metrics import evaluate_dictionary

    run, tcfg = _train(store, HOOKS[0])
    tr = run
    assert tr.total_steps == tcfg.total_steps and tr.steps == 6 and not tr.complete and [h["step"] for h in tr.history] == [2, 4, 6]
    check_result_report(tr, tmp_path)
    round_trip_and_cli(tr, tmp_path / "train")

    res = evaluate_dictionary(run.sae, store, tiny_llama, n_tokens=700, n=2)
    r = res.rows
    assert res.kind == "sae" and r.n_rows == 700 and res.spliced.n_tokens == 2 * 31
    # L0 is the mean count of active latents per row = the sum of the latents' firing densities
    # (float32 counts / n, summed over 64 latents: 1e-5 relative)
    assert float(r.density.sum()) == pytest.approx(r.l0, rel=1e-5)
    assert r.dead_fraction == pytest.approx(float((r.density == 0).float().mean()))
    x = store.rows(HOOKS[0], slice(0, 700))
    with torch.no_grad():
        code = run.sae.encode(x)
    assert torch.equal(r.density, (code.acts > 0).float().mean(0)) or \
        torch.allclose(r.density, (code.acts > 0).float().mean(0), atol=1 / 700)  # one row's flip at most
    assert "explains" in res.summary() and f"{r.l0:.1f}" in res.summary()
    check_result_report(res, tmp_path)
    round_trip_and_cli(res, tmp_path / "sae")


@needs_chromium
@report_test("transcoder")
def test_transcoder_evaluation(store, tiny_llama, tmp_path):
    from interp.dictionaries.metrics import evaluate_dictionary

    run, _ = _train(store, HOOKS[1], HOOKS[2])
    res = evaluate_dictionary(run.sae, store, tiny_llama, n_tokens=500, n=2, sae_path="mem")
    assert res.kind == "transcoder" and res.spliced.hook_out == HOOKS[2]
    assert res.summary().startswith(f"The relu transcoder {HOOKS[1]} -> {HOOKS[2]}")
    dom = check_result_report(res, tmp_path)
    assert dom.find("Replacing the MLP") < dom.find("Latent firing density")  # its own layout: the splice first
    round_trip_and_cli(res, tmp_path / "tc")


@needs_chromium
@report_test("store")
def test_store_summary(store, tmp_path):
    from interp.store.summary import summarize_store

    res = summarize_store(store, verify=True, n_norm_rows=100)
    assert res.kind == "store" and res.verify["ok"] and res.verify["files"] == 3 * (len(HOOKS) + 2)
    assert res.shards == [384, 384, 256] and res.complete
    idx = torch.linspace(0, store.n_rows - 1, 100).round().long()
    want = store.rows(HOOKS[0], idx).double().norm(dim=-1)
    # float64 norms of the same float32 rows, averaged in another order: 1e-12 relative
    assert res.norms[HOOKS[0]]["mean"] == pytest.approx(float(want.mean()), rel=1e-12)
    assert res.norms[HOOKS[0]]["max"] == pytest.approx(float(want.max()), rel=1e-12)
    assert "the CRC-32 of all 18 files matches" in res.summary()
    check_result_report(res, tmp_path)
    round_trip_and_cli(res, tmp_path / "store")


@needs_chromium
@report_test("snmf")
def test_snmf_features(store, tiny_llama, tmp_path):
    from interp.decompositions.snmf import SNMFConfig
    from interp.decompositions.snmf_features import describe_snmf

    res = describe_snmf(tiny_llama, 1, SNMFConfig(k=4, sparsity=0.25, max_iter=20), store=store, n_tokens=400,
                        n_features=2)
    assert res.kind == "snmf" and res.fit["k"] == 4 and res.fit["n"] == 400 and len(res.features) == 2
    means = [c["mean_coef"] for c in res.features]
    assert means == sorted(means, reverse=True)  # the strongest first
    check_result_report(res, tmp_path)
    round_trip_and_cli(res, tmp_path / "snmf")


@needs_chromium
@report_test("lib")
def test_lib_comparison(tiny_llama, tmp_path):
    from interp.decompositions.lib_transformer import ModelLIBSettings, compare_lib_pca

    res = compare_lib_pca(tiny_llama, ModelLIBSettings(layers=(0, 1), n_texts=3, seq_len=8, probes=2, edge_nodes=3))
    assert res.kind == "lib" and res.names == ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
    for b in ("lib", "pca"):
        imp = getattr(res, b)["importance"]
        # n_for_frac by definition: the fewest leading directions holding 90% of the (top-16) importance
        for n, v in zip(res.spectra[b]["dirs_for_90pct_importance"], imp):
            if len(v) == res.spectra[b]["kept"][imp.index(v)]:
                s = sorted(v, reverse=True)
                assert sum(s[:n]) >= 0.9 * sum(s) - 1e-9 and sum(s[:n - 1]) < 0.9 * sum(s)
    check_result_report(res, tmp_path)
    round_trip_and_cli(res, tmp_path / "lib")


def test_spliced_sentence_refuses_a_ratio_over_a_vanishing_gap():
    """CE recovered = (CE_zero - CE_dict) / (CE_zero - CE_orig): with zero-ablation costing < 1e-3 nats/token the
    ratio is noise (the tiny-llama transcoder read '-13006.7% recovered'), so the summary says so instead."""
    from interp.dictionaries.metrics import RowMetrics, SplicedMetrics
    from interp.dictionaries.results import DictionaryEvaluation

    rows = RowMetrics(n_rows=10, l0=2.0, fvu=0.5, explained_variance=0.5, dead_fraction=0.0, cosine=0.9, mse=0.1,
                      density=torch.full((4,), 0.5))

    def ev(ce_orig, ce_dict, ce_zero):
        rec = (ce_zero - ce_dict) / (ce_zero - ce_orig)
        sp = SplicedMetrics(n_tokens=8, ce_orig=ce_orig, ce_dict=ce_dict, ce_zero=ce_zero, ce_recovered=rec,
                            kl_dict=0.01, kl_zero=0.5, kl_score=0.98, hook_in="h", hook_out="h")
        return DictionaryEvaluation(sae_path="", sae_config={"arch": "topk", "hook_in": "h", "d_sae": 4}, store="",
                                    model="m", rows=rows, spliced=sp).summary()

    small = ev(4.6133, 4.6162, 4.6135)  # gap 2e-4 nats: the ratio would be -1350%
    assert "means nothing here" in small and "recovers" not in small
    big = ev(3.0, 3.1, 5.0)  # gap 2 nats: 95% recovered, (5 - 3.1) / (5 - 3)
    assert "recovers 95.0% of the cross-entropy" in big
