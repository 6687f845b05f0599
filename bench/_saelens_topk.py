"""Helper for bench_sae_train.py: train a SAELens TopK SAE with SAELens's own SAETrainer on saved rows.

Run with a Python that has sae-lens installed (a separate venv; see bench_sae_train.py):
    python bench/_saelens_topk.py ROWS.safetensors D_SAE K BATCH STEPS THREADS SPARSE(0|1) OUT.json
Prints nothing but writes {"tokens_per_s", "seconds", "fvu", "versions"} to OUT.json.
"""

import json
import sys
import time

import torch
from safetensors.torch import load_file

rows_path, d_sae, k, batch, steps, threads, sparse, out = sys.argv[1:9]
d_sae, k, batch, steps, threads = int(d_sae), int(k), int(batch), int(steps), int(threads)
torch.set_num_threads(threads)
import sae_lens  # noqa: E402
from sae_lens import TopKTrainingSAE, TopKTrainingSAEConfig  # noqa: E402
from sae_lens.config import SAETrainerConfig  # noqa: E402
from sae_lens.training.sae_trainer import SAETrainer  # noqa: E402

data = load_file(rows_path)
train, held = data["train"], data["held"]
torch.manual_seed(0)
sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=train.shape[1], d_sae=d_sae, k=k, use_sparse_activations=sparse == "1"))


def provider():
    g = torch.Generator().manual_seed(0)
    while True:
        perm = torch.randperm(train.shape[0], generator=g)
        for s in range(0, train.shape[0] - batch + 1, batch):
            yield train[perm[s:s + batch]]


cfg = SAETrainerConfig(total_training_samples=steps * batch, train_batch_size_samples=batch, lr=4e-4, lr_end=0.0,
                       lr_warm_up_steps=min(100, steps // 10), lr_decay_steps=steps // 5, device="cpu")
import os  # noqa: E402

os.environ.setdefault("TQDM_DISABLE", "1")
trainer = SAETrainer(cfg=cfg, sae=sae, data_provider=provider())
t0 = time.perf_counter()
trainer.fit()
secs = time.perf_counter() - t0
with torch.no_grad():
    xh = sae(held)
    fvu = float(((held - xh) ** 2).sum() / ((held - held.mean(0)) ** 2).sum())
    l0 = float((sae.encode(held) > 0).float().sum(-1).mean())
json.dump({"tokens_per_s": steps * batch / secs, "seconds": secs, "fvu": fvu, "l0": l0,
           "versions": {"sae_lens": sae_lens.__version__, "torch": torch.__version__}}, open(out, "w"))
