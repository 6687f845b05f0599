"""Real model (slow): a TopK SAE on SmolLM2-135M's residual stream, trained from a freshly cached store.

Small on purpose (CPU): 16k tokens of layer 6, 4x expansion, k=32.  Checks the full path
store -> trainer -> SAELens file -> spliced forward pass; the headline numbers on a bigger run
are produced by `interp sae train/eval` (see the report in bench/ and the README).
"""

import pytest
import torch

pytestmark = pytest.mark.slow
HOOK = "blocks.6.hook_resid_post"


def test_topk_sae_on_smollm2(smollm2, tmp_path):
    from interp.dictionaries import SAEConfig, TrainConfig, load_sae, save_sae, train_sae
    from interp.dictionaries.metrics import evaluate_rows, sequences_from_store, spliced_ce
    from interp.store import CacheConfig, cache_activations

    store = cache_activations(CacheConfig(model="smollm2-135m", hooks=[HOOK], n_tokens=16384, context_length=128,
                                          batch_size=16, dtype="float32", out=str(tmp_path / "store"),
                                          device="cpu"), model=smollm2)
    cfg = SAEConfig(arch="topk", d_in=576, d_sae=2304, k=32, hook_in=HOOK, model_name="smollm2-135m")
    r = train_sae(store, cfg, TrainConfig(n_tokens=8 * 16384, batch_size=1024, lr=1e-3, warmup_steps=10,
                                          progress=False, device="cpu"))
    save_sae(r.sae, tmp_path / "sae")
    sae = load_sae(tmp_path / "sae")
    rows = evaluate_rows(sae, store, n_rows=16384)
    assert rows.l0 <= 32 and rows.fvu < 0.5, rows
    m = spliced_ce(smollm2, sae, sequences_from_store(store, 8))
    assert m.ce_orig < m.ce_dict < m.ce_zero and m.ce_recovered > 0.5, m
    print(rows, m)



def _bench_results():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    return root, sorted((root / "bench" / "results").glob("sae_smollm2_l15_*.json"))


def test_trained_sae_fvu_recomputed_from_store():
    """The bench's big-store SAE/transcoder (bench/run_sae_smollm2.py with --tag), loaded through the SAELens-format
    loader, gives the held-out FVU recorded in its bench/results/sae_smollm2_l15_<tag>.json when recomputed by hand
    from the store's rows (no trainer, no evaluate_rows).  Skipped where the run's store and weights are absent."""
    import json

    from interp.dictionaries import load_sae
    from interp.store import ActivationStore

    root, files = _bench_results()
    checked = 0
    for res_file in files:
        res = json.loads(res_file.read_text())
        if "tag" not in res or not (root / res["store"]).exists():
            continue
        store = ActivationStore.open(root / res["store"])
        T = int(store.manifest["context_length"])
        n_seq = res["store_rows"] // T
        held_from = (n_seq - res["held_sequences"]) * T
        idx = [i for i in range(held_from, n_seq * T) if (i - held_from) % T != 0]  # BOS rows left out
        for name in ("sae", "transcoder"):
            if name not in res:
                continue
            d = root / "runs" / f"smollm2_{name}{res['tag']}" / ("checkpoint" if "checkpoint" in res[name] else "sae")
            if not d.exists():
                continue
            sae = load_sae(d)
            x = store.rows(sae.cfg.hook_in, idx, dtype=torch.float32)
            t = store.rows(sae.cfg.hook_out or sae.cfg.hook_in, idx, dtype=torch.float32)
            with torch.no_grad():
                t_hat = sae(x)
            fvu = float((t - t_hat).pow(2).sum() / (t - t.mean(0)).pow(2).sum())
            assert len(idx) == res[name]["held"]["n_rows"]
            # float32 FVU over held rows x 576 re-batched
            assert fvu == pytest.approx(res[name]["held"]["fvu"], rel=1e-3, abs=1e-4), (res_file.name, name)
            checked += 1
    if not checked:
        pytest.skip("no big-store bench run (results + store + weights) on this machine")
