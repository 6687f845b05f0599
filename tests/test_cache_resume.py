"""Resume: `interp cache` killed with SIGKILL mid-run, rerun, equals an uninterrupted run byte for byte."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from interp.store import ActivationStore, CacheConfig, cache_activations


TEXT = ("Happy families are all alike; every unhappy family is unhappy in its own way. Everything was in "
        "confusion in the Oblonskys' house. The wife had discovered that the husband was carrying on an "
        "intrigue with a French girl, who had been a governess in their family.\n\n")


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted((root / "shards").rglob("*.bin"))}


def test_resume_after_kill9_equals_uninterrupted(tiny_llama, tmp_path):
    corpus = tmp_path / "anna.txt"
    corpus.write_text(TEXT * 400)
    args = dict(model="tiny-llama", hooks=["blocks.*.hook_resid_post", "blocks.0.mlp.hook_post"], corpus=str(corpus),
                n_tokens=24_000, context_length=60, batch_size=4, dtype="bfloat16", shard_rows=500)
    ref = cache_activations(CacheConfig(**args, out=str(tmp_path / "ref")), model=tiny_llama, progress=False)

    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "interp.cli.main", "cache", "--model", "tiny-llama", "--hooks",
           "blocks.*.hook_resid_post", "blocks.0.mlp.hook_post", "--corpus", str(corpus), "--n-tokens", "24000",
           "--seq-len", "60", "--batch-size", "4", "--dtype", "bf16", "--shard-rows", "500",
           "--out", str(out), "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # 2 busy threads on 2 shared cores crawl
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    n_done, deadline = 0, time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None:
            try:
                n_done = len(json.loads((out / "manifest.json").read_text())["shards"])
            except (FileNotFoundError, json.JSONDecodeError, KeyError):
                n_done = 0
            if n_done >= 3:
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.005)
    finally:
        if proc.poll() is None and n_done < 3:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the run was not killed mid-way: {proc.stderr.read()[-1000:]}"
    partial = ActivationStore.open(out)
    assert not partial.complete and 1500 <= partial.n_rows < 24_000
    r = subprocess.run(cmd + ["--json"], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    info = json.loads(r.stdout)
    assert info["complete"] and info["n_rows"] == 24_000 and info["last_run"]["rows"] < 24_000

    resumed = ActivationStore.open(out)
    assert resumed.manifest["shards"] == ref.manifest["shards"]  # sizes and CRC-32 of every file
    a, b = _files(tmp_path / "ref"), _files(out)
    assert a.keys() == b.keys() and all(a[k] == b[k] for k in a)
    assert not [p for p in (out / "shards").iterdir() if p.name.startswith(".tmp")]
    resumed.verify()


def test_resume_in_process_after_exception(tiny_llama, tmp_path):
    """An exception in the middle (here: Ctrl-C during the 25th forward pass) leaves a resumable store; one
    whose manifest says an earlier release wrote it on the retired Hugging Face capture path (``capture``
    records) opens, verifies and resumes the same way."""
    corpus = tmp_path / "a.jsonl"
    lines = [json.dumps({"text": TEXT * 3}) for _ in range(30)]
    corpus.write_text("\n".join(lines) + "\n")
    args = dict(model="tiny-llama", hooks=["blocks.1.hook_resid_post"], corpus=str(corpus), n_tokens=8_000,
                context_length=50, batch_size=5, dtype="float16", shard_rows=1500,
)
    ref = cache_activations(CacheConfig(**args, out=str(tmp_path / "ref")), model=tiny_llama, progress=False)
    calls = {"n": 0}
    orig = tiny_llama.forward

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 25:
            raise KeyboardInterrupt
        return orig(*a, **k)

    tiny_llama.forward = flaky
    try:
        with pytest.raises(KeyboardInterrupt):
            cache_activations(CacheConfig(**args, out=str(tmp_path / "s")), model=tiny_llama, progress=False)
    finally:
        del tiny_llama.forward
    manifest = tmp_path / "s" / "manifest.json"
    m = json.loads(manifest.read_text())  # as the hf capture path of an earlier release left it
    m["capture"] = {"path": "hf", "reason": "every hook maps to a Hugging Face module"}
    m["config"]["capture"] = "hf"
    m["last_run"] = {"seconds": 1.0, "rows": 1500, "world_size": 1, "device": "cpu", "capture": "hf"}
    manifest.write_text(json.dumps(m))
    part = ActivationStore.open(tmp_path / "s")
    assert 0 < part.n_rows < 8_000
    part.verify()
    store = cache_activations(CacheConfig(**args, out=str(tmp_path / "s")), model=tiny_llama, progress=False)
    assert store.manifest["shards"] == ref.manifest["shards"]
    assert _files(tmp_path / "s") == _files(tmp_path / "ref")
