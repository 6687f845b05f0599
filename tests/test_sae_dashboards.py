"""Feature dashboards on a tiny store: top examples are the true arg-max rows, contexts are the store's tokens."""

from pathlib import Path

import pytest
from browser import report_test
import torch

from interp.dictionaries import SAEConfig, make
from interp.dictionaries.dashboards import DashboardConfig, _context, feature_dashboard, scan_features

HOOK = "blocks.0.hook_resid_post"


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory, tiny_llama):
    from interp.store import CacheConfig, cache_activations

    d = tmp_path_factory.mktemp("sae_store")
    corpus = d / "c.txt"
    corpus.write_text("\n\n".join(f"The {w} sat on the mat number {i}. A quick brown fox {i % 7} jumps."
                                  for i, w in enumerate(["cat", "dog", "bird", "fish"] * 20)))
    cfg = CacheConfig(model="tiny-llama", hooks=[HOOK], corpus=str(corpus), n_tokens=1024, context_length=32,
                      batch_size=8, dtype="float32", out=str(d / "store"), device="cpu")
    return cache_activations(cfg, model=tiny_llama)


def test_dashboard_matches_brute_force(tiny_store, tiny_llama, tmp_path):
    torch.manual_seed(0)
    sae = make(SAEConfig(arch="relu", d_in=tiny_llama.cfg.d_model, d_sae=48, hook_in=HOOK))
    with torch.no_grad():
        sae.b_enc.fill_(-0.5)
    res = feature_dashboard(sae, tiny_store, tmp_path / "dash.html", features=[3, 7, 11], model=tiny_llama,
                            n_rows=800, n_examples=4, window=6, after=2)
    html = Path(res.path).read_text()
    assert "Feature 7" in html and "plotly" in html.lower()
    X = tiny_store.rows(HOOK, list(range(800)))
    with torch.no_grad():
        A = sae.encode(X).acts
    for s in res.features:
        want = A[:, s.feature].topk(4)
        pos = want.values > 0
        assert s.top_rows == want.indices[pos].tolist()
        # defaults (float32 rtol 1.3e-6): the same activations read back
        torch.testing.assert_close(torch.tensor(s.top_values), want.values[pos])
        # approx default rel 1e-6: a mean of 0/1 values
        assert s.frequency == pytest.approx(float((A[:, s.feature] > 0).float().mean()))
        lw = sae.W_dec[s.feature].detach() @ tiny_llama.W_U
        # one float32 d_model-term matmul, reordered: 84 eps32
        assert s.top_logits[0][1] == pytest.approx(float(lw.max()), rel=1e-5)
        # one float32 d_model-term matmul, reordered: 84 eps32
        assert s.bottom_logits[0][1] == pytest.approx(float(lw.min()), rel=1e-5)
        if s.top_rows:
            r = s.top_rows[0]
            toks, acts, at = _context(sae, tiny_store, r, s.feature, 6, 2)
            # float32 encode of one row vs of a batch: rel 1e-5 = 84 eps32 >= eps x d_model
            assert toks[at] == int(tiny_store.tokens[r]) and acts[at] == pytest.approx(s.top_values[0], rel=1e-5)
            seq = int(tiny_store.seq_pos[r][0])
            assert all(int(tiny_store.seq_pos[r - at + i][0]) == seq for i in range(len(toks)))


def test_streamed_top_rows_and_histogram_match_brute_force(tiny_store, tiny_llama):
    """13 batches of 64 rows: the streamed top-k equals a stable top-k over all 800 rows (so a top-k of the
    last batch, or per batch unmerged, fails), and the re-binned histogram equals torch.histogram of every
    non-zero value at the returned edges (so bins that are not merged when the max grows fail)."""
    torch.manual_seed(1)
    sae = make(SAEConfig(arch="relu", d_in=tiny_llama.cfg.d_model, d_sae=24, hook_in=HOOK))
    feats, vals, rows, hists, counts, seen = scan_features(sae, tiny_store, None, 800, 5, batch_size=64)
    with torch.no_grad():
        A = sae.encode(tiny_store.rows(HOOK, list(range(800)))).acts[:, feats].T.double()
    assert seen == 800 and len(feats) == 10
    want, order = A.sort(dim=1, descending=True, stable=True)
    # the batch encode and the full encode are the same rows through the same product: float32 rtol
    torch.testing.assert_close(vals, want[:, :5])
    assert rows.tolist() == order[:, :5].tolist()
    grew = 0
    for j, (edges, hc) in enumerate(hists):
        nz = A[j][A[j] > 0]
        assert sum(hc) == nz.numel() == int(counts[feats[j]])
        if nz.numel():
            assert 17 <= len(hc) <= 32 and hc[-1] > 0 and edges[0] == 0 and edges[-1] > float(nz.max())
            assert hc == torch.histogram(nz, torch.tensor(edges, dtype=torch.float64)).hist.long().tolist()
            first = A[j, :64].max()  # the bins widened after a first batch that fired
            grew += 0 < first and torch.frexp(first).exponent < torch.frexp(nz.max()).exponent
    assert grew  # the re-binning ran


def test_dashboard_errors(tiny_store, tmp_path):
    sae = make(SAEConfig(arch="relu", d_in=32, d_sae=8, hook_in="blocks.1.hook_resid_post"))
    with pytest.raises(KeyError, match=r"'blocks\.1\.hook_resid_post' is not in this store"):  # store's check
        feature_dashboard(sae, tiny_store, tmp_path / "x.html")
    sae = make(SAEConfig(arch="relu", d_in=32, d_sae=8, hook_in=HOOK))
    with pytest.raises(ValueError, match="outside 0..7"):
        feature_dashboard(sae, tiny_store, tmp_path / "x.html", features=[8])
    with pytest.raises(TypeError, match="not both"):  # a config and keywords: no silent winner
        feature_dashboard(sae, tiny_store, tmp_path / "x.html", config=DashboardConfig(), n_rows=10)


@report_test("sae_dashboard")
def test_dashboard_is_a_typed_result(tiny_store, tiny_llama, tmp_path):
    """The histogram counts every non-zero activation streamed (its rows sum to frequency x rows when the
    cap is not reached), the JSON round trip, `interp report` on it, and the page in Chromium."""
    import json

    from browser import CHROMIUM, check_result_report
    from interp.cli.main import main
    from interp.results import load_result

    torch.manual_seed(1)
    sae = make(SAEConfig(arch="relu", d_in=tiny_llama.cfg.d_model, d_sae=16, hook_in=HOOK))
    res = feature_dashboard(sae, tiny_store, tmp_path / "d.html", model=tiny_llama, n_rows=600, n_examples=2)
    assert res.kind == "sae_dashboard" and len(res.features) == 10 and res.n_rows == 600
    for f in res.features:
        assert sum(f.hist_counts) == round(f.frequency * 600) and len(f.hist_edges) == len(f.hist_counts) + 1
        assert [x["row"] for x in f.contexts] == f.top_rows
    data = json.loads(json.dumps(res.to_json()))
    assert load_result(data).to_json() == res.to_json()
    res.save(tmp_path / "results.json")
    assert main(["report", str(tmp_path / "results.json"), "--out", str(tmp_path / "r.html")]) == 0
    if CHROMIUM:
        check_result_report(res, tmp_path)
