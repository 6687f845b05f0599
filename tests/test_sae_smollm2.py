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
