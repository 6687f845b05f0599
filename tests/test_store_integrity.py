"""Store integrity: checksums catch corruption, a full disk fails cleanly, reads work under a memory cap."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from interp.store import ActivationStore, CacheConfig, CorruptShardError, cache_activations, write_store


TEXT = ("Call me Ishmael. Some years ago, never mind how long precisely, having little or no money in my purse, "
        "and nothing particular to interest me on shore, I thought I would sail about a little and see the "
        "watery part of the world.\n\n") * 60


@pytest.fixture()
def small_store(tiny_llama, tmp_path):
    corpus = tmp_path / "moby.txt"
    corpus.write_text(TEXT)
    cfg = CacheConfig(model="tiny-llama", hooks=["blocks.*.hook_resid_post"], corpus=str(corpus), n_tokens=600,
                      context_length=40, batch_size=4, dtype="float16", shard_rows=200, out=str(tmp_path / "s"))
    cache_activations(cfg, model=tiny_llama, progress=False)
    return tmp_path / "s"


def test_bit_flip_detected_naming_file(small_store):
    victim = small_store / "shards" / "000001" / "blocks.1.hook_resid_post.bin"
    data = bytearray(victim.read_bytes())
    data[123] ^= 0x10
    victim.write_bytes(bytes(data))
    store = ActivationStore.open(small_store)  # sizes still match: opening is cheap and succeeds
    store.rows("blocks.1.hook_resid_post", [0, 199])  # shard 0 is intact
    with pytest.raises(CorruptShardError, match=r"000001/blocks\.1\.hook_resid_post\.bin is corrupt"):
        store.rows("blocks.1.hook_resid_post", [250])
    with pytest.raises(CorruptShardError, match="000001/blocks.1.hook_resid_post.bin"):
        list(ActivationStore.open(small_store).stream("blocks.1.hook_resid_post", 64))
    with pytest.raises(CorruptShardError, match="000001/blocks.1.hook_resid_post.bin"):
        list(ActivationStore.open(small_store).batches("blocks.1.hook_resid_post", 64))
    with pytest.raises(CorruptShardError, match="000001/blocks.1.hook_resid_post.bin"):
        ActivationStore.open(small_store).verify()
    with pytest.raises(CorruptShardError):
        ActivationStore.open(small_store, verify="full")
    # the CLI names the file and exits 2 without a traceback
    r = subprocess.run([sys.executable, "-m", "interp.cli.main", "store", "info", str(small_store), "--verify"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "000001/blocks.1.hook_resid_post.bin is corrupt" in r.stderr
    assert "Traceback" not in r.stderr


def test_truncation_detected_at_open(small_store):
    victim = small_store / "shards" / "000002" / "tokens.bin"
    os.truncate(victim, victim.stat().st_size - 8)
    with pytest.raises(CorruptShardError, match=r"000002/tokens\.bin has \d+ bytes, the manifest says"):
        ActivationStore.open(small_store)
    (small_store / "shards" / "000002" / "tokens.bin").unlink()
    with pytest.raises(CorruptShardError, match=r"000002/tokens\.bin is missing"):
        ActivationStore.open(small_store)


def test_unlisted_shard_ignored_and_rewritten(small_store, tiny_llama):
    """A crash between the shard rename and the manifest update leaves an unlisted shard: ignored."""
    import json

    mpath = small_store / "manifest.json"
    m = json.loads(mpath.read_text())
    good = ActivationStore.open(small_store).rows("blocks.0.hook_resid_post", slice(None))
    m["shards"] = m["shards"][:2]
    m["complete"] = False
    mpath.write_text(json.dumps(m))
    (small_store / "shards" / "000002" / "tokens.bin").write_bytes(b"garbage")
    left = small_store / "shards" / ".tmp-000002-99999"  # a temp shard of a killed run: removed on resume
    left.mkdir()
    (left / "tokens.bin").write_bytes(b"half")
    partial = ActivationStore.open(small_store)
    assert partial.n_rows == 400 and not partial.complete
    cfg = CacheConfig(**m["config"])
    store = cache_activations(cfg, model=tiny_llama, progress=False)
    assert store.complete and torch.equal(store.rows("blocks.0.hook_resid_post", slice(None)), good)
    store.verify()
    assert not left.exists()


def _synthetic(a, b, d=256):
    i = np.arange(a, b, dtype=np.int64)[:, None]
    j = np.arange(d, dtype=np.int64)[None, :]
    return ((i * 31 + j * 7) % 997).astype(np.float32)


def test_read_under_memory_cap_larger_store(tmp_path):
    """A 400 MB store read in a process whose address space is capped ~200 MB above its baseline.

    (An earlier reader failed here about half the time: it mapped four 16 MB shards at once
    while batch-sized arrays grew the malloc heap by ~100 MB, peaking at 170-190 MB of the
    200 MB headroom.  Now window buffers live in their own anonymous maps, one is reused, and
    the peak is ~130 MB.)"""
    n, d = 400_000, 256  # 400 MB fp32
    write_store(tmp_path / "big", {"x": lambda a, b: _synthetic(a, b, d)}, n, dtype="float32",
                shard_rows=16384, chunk_rows=16384)
    expected_sum = sum(float(_synthetic(a, min(n, a + 50_000), d).sum(dtype=np.float64)) for a in range(0, n, 50_000))
    script = textwrap.dedent(f"""
        import resource, numpy as np, torch
        from interp.store import ActivationStore
        torch.set_num_threads(1)
        vm = [int(l.split()[1]) * 1024 for l in open('/proc/self/status') if l.startswith('VmSize')][0]
        cap = vm + (200 << 20)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        try:
            np.empty(cap, dtype=np.uint8)  # the cap is real: allocating it all fails
            raise SystemExit('cap not enforced')
        except MemoryError:
            pass
        store = ActivationStore.open({str(tmp_path / 'big')!r})
        assert store.nbytes() > cap - vm
        s = 0.0
        for b in store.stream('x', 8192):
            s += b.double().sum().item()
        t = 0.0
        for b in store.batches('x', 4096, seed=0):
            t += b.double().sum().item()
        r = store.rows('x', [0, 123_457, {n - 1}])
        print(s, t, r[1, 5].item(), store.nbytes(), cap - vm)
    """)
    # one malloc arena: glibc otherwise reserves 64 MB of address space per thread arena
    env = {**os.environ, "MALLOC_ARENA_MAX": "1", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    s, t, r15, nbytes, headroom = out.stdout.split()
    assert float(s) == expected_sum and float(t) == expected_sum
    assert float(r15) == float((123_457 * 31 + 5 * 7) % 997)
    assert int(nbytes) > 400_000 * 256 * 4 > int(headroom)


def test_a_map_refused_for_address_space_releases_the_cached_buffers(tmp_path):
    """A shard map refused with ENOMEM (address space capped) drops the store's cached maps and kept
    window buffers and maps again: reads that fit once those are gone do not fail.

    The cap is set after an epoch of ``batches()`` (whose window buffers the store keeps for the next
    call) at 8 MB above the process's size, so no 16 MB shard maps until those buffers are gone;
    ``rows()`` then maps three shards in turn (releasing only the maps is not enough)."""
    n, d = 4 * 16384, 256  # 64 MB fp32, four 16 MB shards
    write_store(tmp_path / "s", {"x": lambda a, b: _synthetic(a, b, d)}, n, dtype="float32",
                shard_rows=16384, chunk_rows=16384)
    script = textwrap.dedent(f"""
        import resource, numpy as np, torch
        from interp.store import ActivationStore
        store = ActivationStore.open({str(tmp_path / 's')!r})
        for b in store.batches('x', 4096, seed=0):
            pass
        kept = store._pool is not None
        vm = [int(l.split()[1]) * 1024 for l in open('/proc/self/status') if l.startswith('VmSize')][0]
        resource.setrlimit(resource.RLIMIT_AS, (vm + (8 << 20),) * 2)
        r = store.rows('x', [5, 16384 + 5, 2 * 16384 + 5])
        print(kept, r[:, 5].tolist())
    """)
    env = {**os.environ, "MALLOC_ARENA_MAX": "1", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    kept, values = out.stdout.split(maxsplit=1)
    assert kept == "True"  # the buffers were there to release
    assert json.loads(values) == [float((i * 31 + 5 * 7) % 997) for i in (5, 16384 + 5, 2 * 16384 + 5)]


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir()
    try:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    except FileNotFoundError:
        return False
    return r.returncode == 0


def test_full_disk_clear_error_and_readable_prefix(tiny_llama, tmp_path):
    """A real full disk: a 1 MiB tmpfs when we may mount one (root), else a subprocess whose
    RLIMIT_FSIZE makes the kernel refuse writes past a file size (EFBIG), a per-file limit."""
    corpus = tmp_path / "moby.txt"
    corpus.write_text(TEXT * 3)
    mnt = tmp_path / "mnt"
    if _mount_tmpfs(mnt, "1m"):
        try:
            # each shard: 2 hooks x 1000 rows x 32 x 4 B + 20 KB meta = ~276 KB; 1 MiB holds 3
            cfg = CacheConfig(model="tiny-llama", hooks=["blocks.*.hook_resid_post"], corpus=str(corpus),
                              n_tokens=8000, context_length=50, batch_size=4, dtype="float32", shard_rows=1000,
                              out=str(mnt / "s"))
            with pytest.raises(OSError, match="no space left on device while writing .*shards") as err:
                cache_activations(cfg, model=tiny_llama, progress=False)
            # no file on the full disk stays open, even while the error's traceback is alive
            held = [t for t in (os.path.realpath(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd"))
                    if t.startswith(str(mnt))]
            assert not held and err.value is not None, held
            store = ActivationStore.open(mnt / "s")
            assert 1000 <= store.n_rows < 8000 and store.n_rows % 1000 == 0 and not store.complete
            store.verify()
            assert not [p for p in (mnt / "s" / "shards").iterdir() if p.name.startswith(".tmp")]
            r = subprocess.run([sys.executable, "-m", "interp.cli.main", "cache", "--model", "tiny-llama",
                                "--corpus", str(corpus), "--n-tokens", "8000", "--seq-len", "50",
                                "--batch-size", "4", "--dtype", "fp32", "--shard-rows", "1000",
                                "--out", str(mnt / "s")], capture_output=True, text=True)
            assert r.returncode == 2 and "no space left on device" in r.stderr and "Traceback" not in r.stderr
        finally:
            subprocess.run(["umount", str(mnt)], check=False)
        return
    script = textwrap.dedent(f"""
        import resource, signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
        from interp.cli.main import main
        raise SystemExit(main(['cache', '--model', 'tiny-llama', '--corpus', {str(corpus)!r}, '--n-tokens', '8000',
                               '--seq-len', '50', '--batch-size', '4', '--dtype', 'fp32',
                               '--shard-rows', '1000', '--out', {str(tmp_path / 's')!r}, '--no-progress']))
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert r.returncode == 2 and "file size limit exceeded while writing" in r.stderr, r.stderr[-2000:]
    assert "resume" in r.stderr and "Traceback" not in r.stderr


def test_manifest_checks_name_what_is_wrong(tmp_path):
    """Every manifest check of read_manifest / ActivationStore / commit_manifest on a real 3-shard store, one
    edit at a time (none had a test): a wrong field type, a newer format, a malformed shard record, a shard
    at the wrong row, a gap in the shard list (read up to it, with a warning), a malformed progress file."""
    from interp.store import StoreError

    d = write_store(tmp_path / "s", {"x": lambda a, b: _synthetic(a, b, 4)}, 300, shard_rows=100,
                    chunk_rows=50)
    good = json.loads((d / "manifest.json").read_text())

    def opened(edit: dict):
        (d / "manifest.json").write_text(json.dumps({**good, **edit}))
        return ActivationStore.open(d)

    shards = good["shards"]
    for edit, message in [
        ({"hooks": "x"}, "manifest field 'hooks' should be list, got str"),
        ({"format_version": 2}, r"store format 2 is newer than this interp \(1\)"),
        ({"shards": [{**shards[0], "rows": "many"}, *shards[1:]]}, "malformed shard record"),
        ({"shards": [{**shards[0], "row_start": 5}, *shards[1:]]}, "shard 0 starts at row 5, expected 0"),
    ]:
        with pytest.raises(StoreError, match=message):
            opened(edit)
    with pytest.warns(UserWarning, match="shards after 1 are not contiguous"):
        gap = opened({"shards": [shards[0], shards[2]]})
    assert gap.n_rows == 100 and not gap.complete
    assert torch.equal(gap.rows("x", slice(None)), torch.from_numpy(_synthetic(0, 100, 4)).float())
    (d / "progress-rank1.json").write_text('{"rank": 1}')
    with pytest.raises(StoreError, match="progress-rank1.json is malformed"):
        write_store(d, {"x": lambda a, b: _synthetic(a, b, 4)}, 300, shard_rows=100)


def test_summary_of_a_partial_store_with_nonfinite_rows(tmp_path):
    """summarize_store on a store whose last shard was never recorded and that holds a nan and an inf row: the
    norms of the finite rows against numpy, the non-finite rows counted, the partial state in the summary."""
    from interp.store.summary import summarize_store

    x = _synthetic(0, 300, 4)
    x[5, 1], x[150, 2] = np.nan, np.inf
    d = write_store(tmp_path / "s", {"x": lambda a, b: x[a:b]}, 300, shard_rows=100)
    m = json.loads((d / "manifest.json").read_text())
    m["shards"], m["complete"] = m["shards"][:2], False
    (d / "manifest.json").write_text(json.dumps(m))
    res = summarize_store(ActivationStore.open(d), n_norm_rows=1000)  # more than the 200 rows: every row
    norms = np.linalg.norm(x[:200].astype(np.float64), axis=1)
    fin = np.sort(norms[np.isfinite(norms)])
    s = res.norms["x"]
    assert s["rows"] == 200 and s["nonfinite"] == 2 and len(fin) == 198
    # float64 norms of the same float32 rows, summed in another order: 1e-12 relative
    assert s["mean"] == pytest.approx(fin.mean(), rel=1e-12) and s["max"] == pytest.approx(fin[-1], rel=1e-12)
    assert s["median"] == pytest.approx(fin[(len(fin) - 1) // 2], rel=1e-12)  # torch.median: the lower middle
    assert s["p99"] == pytest.approx(np.quantile(fin, 0.99), rel=1e-12)  # both interpolate linearly
    text = res.summary()
    assert "PARTIAL (200 of 300 rows)" in text and "(2 non-finite rows)" in text and "not checked" in text


def test_writer_thread_keeps_order_and_stops_at_the_first_error():
    """The caching job's writer thread (cache._AsyncWriter, a bounded queue on one thread): jobs run in the
    order submitted; a job that raises drops every later one (no shard write lands after a failed one) and its
    error, not a later one, reaches the caller at a later submit or at flush."""
    from interp.store.cache import _AsyncWriter

    done = []

    def job(i):
        if i == 4:
            raise OSError(28, "job 4: no space left on device")
        if i == 6:
            raise RuntimeError("job 6 ran after job 4 failed")
        done.append(i)

    w = _AsyncWriter(max_jobs=3)
    with pytest.raises(OSError, match="job 4"):
        for i in range(20):
            w.submit(job, i)
        w.flush()
    w.close()
    assert done == [0, 1, 2, 3]
    w = _AsyncWriter(max_jobs=3)
    for i in range(50):
        w.submit(done.append, i)
    w.flush()
    w.close()
    assert done == [0, 1, 2, 3, *range(50)]
