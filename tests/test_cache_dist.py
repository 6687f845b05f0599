"""Multi-process caching: two torch.distributed (gloo) ranks write one store, equal to one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from interp.store import ActivationStore, CacheConfig, cache_activations

TEXT = ("In the beginning God created the heaven and the earth. And the earth was without form, and void; "
        "and darkness was upon the face of the deep.\n\n") * 60


WORKER = textwrap.dedent("""
    import json, os, sys, torch, torch.distributed as dist
    torch.set_num_threads(1)
    from interp.models import load_model
    from interp.store import CacheConfig, cache_activations
    dist.init_process_group("gloo", init_method="file://" + sys.argv[2], rank=int(sys.argv[3]), world_size=2)
    try:
        store = cache_activations(CacheConfig(**json.loads(sys.argv[1])), model=load_model("tiny-llama", device="cpu"),
                                  progress=False)
        print(json.dumps({"rank": dist.get_rank(), "n_rows": store.n_rows, "complete": store.complete}))
    finally:
        dist.destroy_process_group()
""")


def test_two_gloo_ranks_equal_single_process(tiny_llama, tmp_path):
    corpus = tmp_path / "gen.txt"
    corpus.write_text(TEXT)
    args = dict(model="tiny-llama", hooks=["blocks.*.hook_resid_post"], corpus=str(corpus), n_tokens=5000,
                context_length=64, batch_size=3, dtype="float16", shard_rows=700)
    ref = cache_activations(CacheConfig(**args, out=str(tmp_path / "ref")), model=tiny_llama, progress=False)
    cfg = json.dumps({**args, "out": str(tmp_path / "dist")})
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, cfg, str(tmp_path / "pg"), str(r)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (o, e) in zip(procs, outs):
        assert p.returncode == 0, e[-2000:]
    results = [json.loads(o.strip().splitlines()[-1]) for o, _ in outs]
    assert all(r["n_rows"] == 5000 and r["complete"] for r in results)

    store = ActivationStore.open(tmp_path / "dist")
    assert store.manifest["shards"] == ref.manifest["shards"]  # every file's size and CRC-32
    assert store.manifest["last_run"]["world_size"] == 2
    assert not list((tmp_path / "dist").glob("progress-rank*.json"))
    for s in ref.manifest["shards"]:
        for fname in s["files"]:
            a = (tmp_path / "ref" / "shards" / f"{s['index']:06d}" / fname).read_bytes()
            b = (tmp_path / "dist" / "shards" / f"{s['index']:06d}" / fname).read_bytes()
            assert a == b, (s["index"], fname)
    store.verify()
