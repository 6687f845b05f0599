"""Hardening: kill -9 during SAE training, reading a store while it is written, crafted pickles
refused, NaN/inf activations rejected with a clear error.

Everything is real: subprocesses killed with SIGKILL, stores on disk, pickles whose payload
would create a marker file if anything ever unpickled them.  References are independent runs
(an uninterrupted training run; the finished store; the source rows themselves).
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path

import pytest
import torch

from interp.dictionaries import SAEConfig, TensorSource, TrainConfig, load_sae, save_sae, train_sae
from interp.store import ActivationStore, CacheConfig, StoreError, cache_activations, write_store

ROOT = Path(__file__).resolve().parents[1]
TEXT = ("The quick brown fox jumps over the lazy dog while the five boxing wizards jump quickly; "
        "pack my box with five dozen liquor jugs.\n\n") * 80


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="module")
def store(tmp_path_factory, tiny_llama):
    d = tmp_path_factory.mktemp("hard")
    (d / "fox.txt").write_text(TEXT)
    cfg = CacheConfig(model="tiny-llama", hooks=["blocks.1.hook_resid_post"], corpus=str(d / "fox.txt"),
                      n_tokens=800, context_length=40, batch_size=5, shard_rows=200, dtype="float32",
                      out=str(d / "store"))
    return cache_activations(cfg, model=tiny_llama, progress=False)


# -- kill -9 during SAE training, then resume ---------------------------------------------------
SAE_KW = dict(arch="topk", d_in=32, d_sae=64, k=4, hook_in="blocks.1.hook_resid_post")
TRAIN_KW = dict(n_tokens=32 * 1500, batch_size=32, lr=1e-3, warmup_steps=10, dead_after_tokens=2000,
                b_dec_init="mean", init_rows=800, seed=1, progress=False, checkpoint_every=25)

TRAIN_SCRIPT = textwrap.dedent("""
    import sys, torch
    torch.set_num_threads(1)
    from interp.dictionaries import SAEConfig, TrainConfig, train_sae
    from interp.store import ActivationStore
    store = ActivationStore.open(sys.argv[1])
    train_sae(store, SAEConfig(**{sae}), TrainConfig(**{train}, checkpoint_dir=sys.argv[2]))
""").format(sae=SAE_KW, train=TRAIN_KW)


def _checkpoint_step(ckpt: Path) -> int:
    try:
        return json.loads((ckpt / "checkpoint" / "trainer_state.json").read_text())["step"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return -1


def test_sae_training_killed_then_resumed_equals_uninterrupted(store, tmp_path):
    ckpt = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", TRAIN_SCRIPT, str(store.path), str(ckpt)], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while _checkpoint_step(ckpt) < 50 and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, f"training ended before it could be killed:\n{proc.stderr.read().decode()[-2000:]}"
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    killed_at = _checkpoint_step(ckpt)
    total = TRAIN_KW["n_tokens"] // TRAIN_KW["batch_size"]
    assert 50 <= killed_at < total, f"the kill did not land mid-run (checkpoint step {killed_at} of {total})"

    resumed = train_sae(store, SAEConfig(**SAE_KW), TrainConfig(**TRAIN_KW, checkpoint_dir=str(ckpt)))
    full = train_sae(store, SAEConfig(**SAE_KW), TrainConfig(**TRAIN_KW))
    assert resumed.steps == full.steps == total and resumed.tokens == full.tokens
    for (name, a), (_, b) in zip(full.sae.state_dict().items(), resumed.sae.state_dict().items()):
        assert torch.equal(a, b), f"{name} differs after kill -9 at step {killed_at} and resume"


def test_crash_between_checkpoint_renames_resumes_from_previous(store, tmp_path):
    """save_checkpoint moves checkpoint -> checkpoint.old, then checkpoint.tmp -> checkpoint.  A kill
    between the two leaves exactly this on disk: the previous checkpoint as .old and the new one
    (whole or not) as .tmp.  Resuming must use .old, not start over, and still end equal."""
    import shutil

    kw = {**TRAIN_KW, "n_tokens": 32 * 60, "checkpoint_every": 10}
    run = tmp_path / "run"
    train_sae(store, SAEConfig(**SAE_KW), TrainConfig(**kw, checkpoint_dir=str(run), max_steps=30))
    # the state a kill leaves after the first rename of the step-40 save: step 30 as .old, a partial .tmp
    os.replace(run / "checkpoint", run / "checkpoint.old")
    partial = run / "checkpoint.tmp"
    partial.mkdir()
    shutil.copy(run / "checkpoint.old" / "cfg.json", partial / "cfg.json")
    resumed = train_sae(store, SAEConfig(**SAE_KW), TrainConfig(**kw, checkpoint_dir=str(run)))
    # history holds only the steps this call trained (every log_every=10): it went on from step 30
    assert [h["step"] for h in resumed.history] == [40, 50, 60], "resume must use .old, not start over"
    full = train_sae(store, SAEConfig(**SAE_KW), TrainConfig(**kw))
    for (name, a), (_, b) in zip(full.sae.state_dict().items(), resumed.sae.state_dict().items()):
        assert torch.equal(a, b), name
    assert (run / "checkpoint").is_dir() and not (run / "checkpoint.old").exists()


def _mount_tmpfs(mnt: Path, size: str) -> bool:
    mnt.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], capture_output=True)
    return r.returncode == 0


def test_full_disk_during_sae_checkpoint(tmp_path):
    """A real full disk (a 300 KiB tmpfs): the first checkpoint (~200 KB) fits, the second cannot
    (the new one is written beside the old).  Clear OSError, previous checkpoint intact, no temp
    left; after the disk grows, resuming ends equal to an uninterrupted run."""
    mnt = tmp_path / "mnt"
    if not _mount_tmpfs(mnt, "300k"):
        pytest.skip("cannot mount a tmpfs here (needs root); the store's full-disk test covers RLIMIT_FSIZE")
    try:
        x = torch.randn(2000, 32, generator=torch.Generator().manual_seed(0))
        cfg = SAEConfig(arch="relu", d_in=32, d_sae=256, hook_in="h")
        kw = dict(n_tokens=64 * 20, batch_size=64, warmup_steps=1, progress=False, b_dec_init="zeros",
                  checkpoint_every=5, log_every=1)
        with pytest.raises(OSError, match=r"could not write the step-10 checkpoint .*No space left on device.*"
                                          r"previous checkpoint .* is intact"):
            train_sae(TensorSource({"h": x}), cfg, TrainConfig(**kw, checkpoint_dir=str(mnt / "run")))
        assert sorted(p.name for p in (mnt / "run").iterdir()) == ["checkpoint"]
        assert json.loads((mnt / "run" / "checkpoint" / "trainer_state.json").read_text())["step"] == 5
        subprocess.run(["mount", "-o", "remount,size=4m", str(mnt)], check=True)
        resumed = train_sae(TensorSource({"h": x}), cfg, TrainConfig(**kw, checkpoint_dir=str(mnt / "run")))
        full = train_sae(TensorSource({"h": x}), cfg, TrainConfig(**kw))
        assert resumed.history[0]["step"] == 6  # it went on from the kept step-5 checkpoint
        for (name, a), (_, b) in zip(full.sae.state_dict().items(), resumed.sae.state_dict().items()):
            assert torch.equal(a, b), name
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


# -- a store read while it is being written ----------------------------------------------------
def test_store_read_while_written_sees_only_complete_shards(tmp_path):
    corpus = tmp_path / "fox.txt"
    corpus.write_text(TEXT * 3)
    out = tmp_path / "live"
    cmd = [sys.executable, "-m", "interp.cli.main", "cache", "--model", "tiny-llama", "--hooks",
           "blocks.*.hook_resid_post", "--corpus", str(corpus), "--n-tokens", "6000", "--seq-len", "40",
           "--batch-size", "2", "--shard-rows", "80", "--dtype", "fp16", "--out", str(out), "--no-progress"]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen = []  # (n_rows, {hook: rows}, tokens) of every successful mid-run open
    try:
        deadline = time.time() + 240
        while proc.poll() is None and time.time() < deadline:
            try:
                s = ActivationStore.open(out, verify="full")  # every listed file's CRC checked: no garbage
            except FileNotFoundError:
                time.sleep(0.05)  # the writer has not written its first manifest yet
                continue
            if s.n_rows and not s.complete:
                seen.append((s.n_rows, {h: s.rows(h, slice(None), dtype=None) for h in s.hooks}, s.tokens[:]))
            time.sleep(0.05)
        assert proc.wait(240) == 0, proc.stderr.read().decode()[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    final = ActivationStore.open(out, verify="full")
    assert final.complete and final.n_rows == 6000
    assert len(seen) >= 2, "the reader never caught the store mid-write; the test proved nothing"
    counts = [n for n, _, _ in seen]
    assert counts == sorted(counts) and counts[-1] > counts[0], "reopening later must see more rows"
    for n, rows, tokens in seen:
        assert n % 80 == 0, f"a reader saw {n} rows: not a whole number of shards"
        assert torch.equal(tokens, final.tokens[:n])
        for h, r in rows.items():
            assert torch.equal(r.view(torch.int16), final.rows(h, slice(0, n), dtype=None).view(torch.int16)), h


# -- crafted pickles are never unpickled --------------------------------------------------------
class _Payload:
    """Unpickling this calls ``Path(marker).touch()``: the marker's existence proves execution."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def _pickle_bytes(marker: Path) -> bytes:
    blob = pickle.dumps({"W_enc": _Payload(marker)})
    assert not marker.exists()
    return blob


def test_pickle_in_a_store_shard_is_data_not_code(store, tmp_path):
    """Even with a manifest forged to accept it, a pickled shard file is only ever read as numbers."""
    import shutil

    d = tmp_path / "forged"
    shutil.copytree(store.path, d)
    marker = tmp_path / "PWNED"
    m = json.loads((d / "manifest.json").read_text())
    shard = m["shards"][0]
    fname = "blocks.1.hook_resid_post.bin"
    size = shard["files"][fname]["bytes"]
    blob = _pickle_bytes(marker)
    data = (blob * (size // len(blob) + 1))[:size]
    (d / "shards" / "000000" / fname).write_bytes(data)

    with pytest.raises(StoreError, match=r"000000/blocks\.1\.hook_resid_post\.bin is corrupt"):
        ActivationStore.open(d, verify="full")  # the honest manifest's checksum catches the swap
    shard["files"][fname]["crc32"] = zlib.crc32(data)  # now forge the manifest too
    (d / "manifest.json").write_text(json.dumps(m))
    s = ActivationStore.open(d, verify="full")
    rows = s.rows("blocks.1.hook_resid_post", slice(0, 200), dtype=None)
    assert rows.numpy().tobytes() == data  # the bytes come back as raw float32, nothing else happens
    # the other access paths read the same bytes the same way
    list(s.stream("blocks.1.hook_resid_post", 64))
    list(s.batches("blocks.1.hook_resid_post", 64))
    # a pickle dropped beside the shards is never looked at either
    (d / "shards" / "000000" / "extra.pkl").write_bytes(blob)
    (d / "activations.pt").write_bytes(blob)
    ActivationStore.open(d, verify="full").rows("blocks.1.hook_resid_post", [0, 1, 2])
    assert not marker.exists(), "a pickle in the store was executed"


def test_pickle_in_a_checkpoint_is_refused(store, tmp_path):
    cfg = SAEConfig(arch="relu", d_in=32, d_sae=16, hook_in="blocks.1.hook_resid_post")
    tcfg = dict(n_tokens=64 * 4, batch_size=64, warmup_steps=1, b_dec_init="zeros", progress=False)
    marker = tmp_path / "PWNED"
    blob = _pickle_bytes(marker)

    # the SAE weights swapped for a pickle (what torch.save would have written)
    run = tmp_path / "a"
    train_sae(store, cfg, TrainConfig(**tcfg, checkpoint_dir=str(run)))
    weights = run / "checkpoint" / "sae_weights.safetensors"
    weights.write_bytes(blob)
    with pytest.raises(ValueError, match=r"sae_weights\.safetensors is not a valid safetensors file"):
        load_sae(run / "checkpoint")
    with pytest.raises(ValueError, match=r"sae_weights\.safetensors is not a valid safetensors file"):
        train_sae(store, cfg, TrainConfig(**tcfg, checkpoint_dir=str(run)))

    # the trainer state swapped for a pickle
    run = tmp_path / "b"
    train_sae(store, cfg, TrainConfig(**tcfg, checkpoint_dir=str(run)))
    (run / "checkpoint" / "trainer_state.safetensors").write_bytes(blob)
    with pytest.raises(ValueError, match=r"trainer_state\.safetensors is not a valid safetensors file"):
        train_sae(store, cfg, TrainConfig(**tcfg, checkpoint_dir=str(run)))

    # a pickle saved under the safetensors name of a saved SAE folder
    folder = save_sae(train_sae(store, cfg, TrainConfig(**tcfg)).sae, tmp_path / "sae")
    torch.save({"W_enc": _Payload(marker)}, folder / "sae_weights.safetensors")
    with pytest.raises(ValueError, match="never pickles"):
        load_sae(folder)
    assert not marker.exists(), "a pickle in a checkpoint was executed"


# -- NaN / inf activations -----------------------------------------------------------------------
def test_nan_activations_during_caching_are_an_error(tmp_path):
    from interp.models import load_model

    model = load_model("tiny-llama", device="cpu")  # a private copy: we break its weights
    corpus = tmp_path / "fox.txt"
    corpus.write_text(TEXT)
    args = dict(model="tiny-llama", hooks=["blocks.*.hook_resid_post"], corpus=str(corpus), n_tokens=400,
                context_length=40, batch_size=2, shard_rows=80, dtype="float32")
    good = cache_activations(CacheConfig(**args, out=str(tmp_path / "good")), model=model, progress=False)
    assert torch.isfinite(good.rows("blocks.1.hook_resid_post", slice(None))).all()

    # the embedding of the token that first occurs latest -> NaN from that row on
    toks = good.tokens[:]
    firsts = {int(t): int((toks == t).nonzero()[0]) for t in toks.unique()}
    tok, first = max(firsts.items(), key=lambda kv: kv[1])
    assert first >= 80, "the poisoned token should first occur after the first shard"
    with torch.no_grad():
        model.embed.W_E[tok, 0] = float("nan")
    with pytest.raises(ValueError, match=r"non-finite activations \(NaN or inf\) at \['blocks\.0\.hook_resid_post'"):
        cache_activations(CacheConfig(**args, out=str(tmp_path / "bad")), model=model, progress=False)
    bad = ActivationStore.open(tmp_path / "bad")
    assert bad.n_rows == first // 80 * 80, "exactly the shards before the bad batch (80 rows) are kept"
    assert torch.isfinite(bad.rows("blocks.1.hook_resid_post", slice(None))).all()
    assert not list((tmp_path / "bad" / "shards").glob(".tmp-*")), "the half-written shard was removed"


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nonfinite_rows_fed_to_sae_training_are_an_error(bad, tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(512, 8, generator=g)
    x[300, 3] = bad
    cfg = SAEConfig(arch="topk", d_in=8, d_sae=16, k=2, hook_in="h")
    tcfg = TrainConfig(n_tokens=512, batch_size=64, warmup_steps=1, b_dec_init="zeros", progress=False)
    with pytest.raises(ValueError, match=r"training rows at step \d+ contain NaN or inf \(h\)"):
        train_sae(TensorSource({"h": x}), cfg, tcfg)
    # the same rows in an on-disk store (written as float32)
    d = write_store(tmp_path / "s", {"h": lambda a, b: x[a:b].numpy()}, n_rows=512, shard_rows=128)
    with pytest.raises(ValueError, match="contain NaN or inf"):
        train_sae(ActivationStore.open(d), cfg, tcfg)
    # transcoder: a bad target row is caught too
    tc = SAEConfig(arch="relu", d_in=8, d_sae=16, d_out=8, hook_in="a", hook_out="b")
    clean = torch.randn(512, 8, generator=g)
    with pytest.raises(ValueError, match=r"\(a -> b\)"):
        train_sae(TensorSource({"a": clean, "b": x}), tc, tcfg)
