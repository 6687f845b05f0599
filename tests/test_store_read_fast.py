"""The fast shuffled reader (kernel scatter by ``preadv``) against its definition and the reference.

``ActivationStore.batches(fast=True)`` fills each mixing window with one ``preadv`` per segment,
an ``iovec`` per row pointing at the row's batch slot; ``fast=False`` is the plain reference
(sequential read into a staging array, numpy scatter).  Both must give bit-identical batches;
independently of either, every batch must hold exactly the source rows its ``id`` column names
and an epoch must be a permutation of the store.
"""

from __future__ import annotations

import ctypes
import os

import numpy as np
import pytest
import torch

import interp.store.reader as reader
import interp.store.window_io as window_io
from interp.store import ActivationStore, write_store
from interp.store.format import CorruptShardError

pytestmark = pytest.mark.skipif(window_io._PREADV is None, reason="libc has no preadv here")


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.view(torch.int32) if t.element_size() == 4 else t.view(torch.int16)


def _store(tmp_path, n=1000, shard_rows=300, dtype="float16", name="s"):
    """Two hooks of different widths plus an ``id`` column (exact in every dtype below 256 * 256)."""
    rng = np.random.default_rng(0)
    data = {"blocks.0.hook_resid_post": rng.standard_normal((n, 24)).astype(np.float32),
            "blocks.1.hook_mlp_out": rng.standard_normal((n, 7)).astype(np.float32),
            "id": (np.arange(n, dtype=np.float32) % 256)[:, None],
            "hi": (np.arange(n, dtype=np.float32) // 256)[:, None]}
    write_store(tmp_path / name, {h: (lambda a, b, h=h: data[h][a:b]) for h in data}, n, dtype=dtype,
                shard_rows=shard_rows, chunk_rows=128)
    return ActivationStore.open(tmp_path / name), data


def _row_ids(batch) -> torch.Tensor:
    return (batch[-1].float()[:, 0] * 256 + batch[-2].float()[:, 0]).long()


HOOKS = ["blocks.0.hook_resid_post", "blocks.1.hook_mlp_out", "id", "hi"]


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
@pytest.mark.parametrize("kw", [
    dict(chunk_rows=64, buffer_rows=256),                    # chunks inside shards, several windows
    dict(chunk_rows=70, buffer_rows=300, drop_last=True),    # chunks and windows straddle everything
    dict(chunk_rows=1, buffer_rows=1000),                    # one window, row-level shuffle
    dict(chunk_rows=50, buffer_rows=200, rank=1, world_size=3, epochs=2),
])
def test_fast_equals_reference_and_definition(tmp_path, dtype, kw):
    store, data = _store(tmp_path, dtype=dtype)
    torch_dt = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}[dtype]
    for out_dtype in (None, torch.float32):
        fast = list(store.batches(HOOKS, 64, seed=7, dtype=out_dtype, fast=True, **kw))
        ref = list(store.batches(HOOKS, 64, seed=7, dtype=out_dtype, fast=False, **kw))
        assert len(fast) == len(ref) > 0
        for f, r in zip(fast, ref):
            assert all(torch.equal(_bits(a), _bits(b)) for a, b in zip(f, r))
        # the definition, independent of both paths: each row is the source row its id names
        for f in fast:
            ids = _row_ids(f).numpy()
            for h, t in zip(HOOKS[:2], f):
                want = torch.from_numpy(data[h][ids]).to(torch_dt)
                assert torch.equal(_bits(t if out_dtype is None else t.to(torch_dt)), _bits(want))
    if "world_size" not in kw and not kw.get("drop_last"):
        ids = torch.cat([_row_ids(f) for f in fast])
        assert torch.equal(ids.sort().values, torch.arange(store.n_rows))  # every row once


def test_fast_is_the_default_and_the_switch_picks_the_reference(tmp_path, monkeypatch, fast):
    store, _ = _store(tmp_path)
    calls = {"fast": 0, "ref": 0}
    fast_fill, ref_fill = ActivationStore._fill_window_fast, ActivationStore._fill_window

    def count_fast(self, *a, **k):
        calls["fast"] += 1
        return fast_fill(self, *a, **k)

    def count_ref(self, *a, **k):
        calls["ref"] += 1
        return ref_fill(self, *a, **k)

    monkeypatch.setattr(ActivationStore, "_fill_window_fast", count_fast)
    monkeypatch.setattr(ActivationStore, "_fill_window", count_ref)
    for flag in (None, not fast):  # the switch (the ``fast`` fixture: INTERP_REFERENCE), then asked for
        path = "fast" if (fast if flag is None else flag) else "ref"
        calls.update(fast=0, ref=0)
        list(store.batches("id", 64, chunk_rows=64, buffer_rows=256, fast=flag))
        assert calls[path] > 0 and calls["ref" if path == "fast" else "fast"] == 0


def test_short_reads_resume_inside_rows(tmp_path, monkeypatch):
    """preadv may return fewer bytes than asked (partial rows too): the reader resumes where it stopped."""
    store, _ = _store(tmp_path)
    real = window_io._PREADV
    cap = 7 * 4 + 3  # shorter than two fp16 rows of 24, not a row multiple

    def short(fd, iov_addr, count, offset):
        # present at most `cap` bytes: a one-iovec read of the first entry, trimmed
        entry = np.frombuffer((ctypes.c_uint64 * 2).from_address(iov_addr), dtype=np.uint64).copy()
        entry[1] = min(int(entry[1]), cap)
        return real(fd, entry.ctypes.data, 1, offset)

    want = list(store.batches(HOOKS, 64, seed=3, chunk_rows=64, buffer_rows=256, fast=False, dtype=None))
    monkeypatch.setattr(window_io, "_PREADV", short)
    got = list(store.batches(HOOKS, 64, seed=3, chunk_rows=64, buffer_rows=256, fast=True, dtype=None))
    assert all(torch.equal(_bits(a), _bits(b)) for f, r in zip(got, want) for a, b in zip(f, r))


def test_truncated_after_open_names_the_file(tmp_path):
    store, _ = _store(tmp_path)
    store = ActivationStore.open(store.path, verify="size")  # skip the CRC so the read itself meets the end
    path = store._file(store.shards[1], "blocks.0.hook_resid_post")[0]
    os.truncate(path, 1000)
    with pytest.raises(CorruptShardError, match=str(path.parent.name)):
        list(store.batches("blocks.0.hook_resid_post", 64, fast=True))


@pytest.mark.parametrize("threads", [1, 2])
def test_prefetch_advises_every_row_once_a_window_ahead(tmp_path, monkeypatch, threads):
    """Inline, windows 0 and 1 are advised before the first batch, then window k + 1 with window k;
    with a planning thread one window further ahead may be asked too (it plans the next window early)."""
    monkeypatch.setattr(window_io, "READ_THREADS", threads)
    store, _ = _store(tmp_path)
    asked = []
    monkeypatch.setattr(reader, "_prefetch", lambda ranges: asked.extend(ranges))
    hook = "blocks.0.hook_resid_post"
    rb = store.d(hook) * 2

    def rows_advised():
        covered = np.zeros(store.n_rows, dtype=int)
        for path, off, ln in asked:
            shard = int(path.parent.name)
            assert off % rb == 0 and ln % rb == 0
            covered[shard * 300 + off // rb : shard * 300 + (off + ln) // rb] += 1
        return covered

    first = next(iter(store.batches(hook, 100, seed=1, chunk_rows=64, buffer_rows=300, fast=True)))
    early = rows_advised()
    assert first.shape[0] == 100 and early.max() == 1
    assert (early.sum() == 600) if threads == 1 else (600 <= early.sum() <= 900)  # windows 0, 1 (and maybe 2)
    # windows 0 and 1 of the epoch (600 rows) are among them: the same rows the batches of those windows hold
    order = np.random.default_rng([1, 0]).permutation(-(-300 // 64) * 3 + -(-100 // 64))
    chunks = [(sh * 300 + a, min(sh * 300 + a + 64, sh * 300 + 300)) for sh in range(4) for a in range(0, 300, 64)
              if sh * 300 + a < store.n_rows]
    chunks = [(a, min(b, store.n_rows)) for a, b in chunks]
    rows = np.concatenate([np.arange(*chunks[k]) for k in order])[:600]
    assert (early[rows] == 1).all()
    asked.clear()
    list(store.batches(hook, 100, seed=1, chunk_rows=64, buffer_rows=300, fast=True))
    assert (rows_advised() == 1).all()  # every row of the epoch advised exactly once


def test_bad_inputs(tmp_path, monkeypatch):
    store, _ = _store(tmp_path)
    with pytest.raises(RuntimeError, match="out of range"):  # the pointer guard: no write outside the window
        bufs = [np.empty((10, 24), dtype=np.float16)]
        seg = [(store.shards[0], 0, 10, 0)]
        store._fill_window_fast(["blocks.0.hook_resid_post"], seg, bufs, np.arange(1, 11), {})
    monkeypatch.setattr(window_io, "_PREADV", None)
    with pytest.raises(RuntimeError, match="preadv"):
        next(iter(store.batches("id", 64, fast=True)))


@pytest.mark.parametrize("n,batch_size", [(1, 1), (7, 3), (64, 8), (1000, 64), (70_000, 4096)])
def test_window_slots_follow_the_definition(n, batch_size):
    """Slot of each row: batch k = rows whose permuted value falls in [kB, (k+1)B), in reading order
    (the definition as a stable argsort, written out here without the fast inverse-permutation route)."""
    perm = np.random.default_rng(n).permutation(n)
    dest = window_io._append_destinations(perm, batch_size)
    want = np.empty(n, dtype=np.int64)
    want[np.argsort(perm // batch_size, kind="stable")] = np.arange(n)
    assert np.array_equal(dest, want)
    for k in range(-(-n // batch_size)):  # and directly: batch k's slots hold its rows in reading order
        rows = np.nonzero(perm // batch_size == k)[0]
        assert np.array_equal(np.sort(dest[rows]), np.arange(k * batch_size, k * batch_size + rows.size))
        assert np.all(np.diff(dest[rows]) == 1)


def test_store_pickles_without_its_buffers(tmp_path):
    """The store keeps its window buffers (and a lock) between calls; a pickled copy leaves them out and reads the same."""
    import pickle

    store, _ = _store(tmp_path)
    want = list(store.batches(HOOKS, 64, seed=2, chunk_rows=64, buffer_rows=256, dtype=None))
    copy = pickle.loads(pickle.dumps(store))
    assert copy._pool is None and store._pool is not None
    got = list(copy.batches(HOOKS, 64, seed=2, chunk_rows=64, buffer_rows=256, dtype=None))
    assert all(torch.equal(_bits(a), _bits(b)) for f, r in zip(got, want) for a, b in zip(f, r))


def test_no_prefetch_when_windows_are_a_large_part_of_ram(tmp_path, monkeypatch):
    store, _ = _store(tmp_path)
    asked = []
    monkeypatch.setattr(reader, "_prefetch", lambda ranges: asked.extend(ranges))
    monkeypatch.setattr(reader, "_ram_bytes", lambda: 8 * 3 * 300 * 48 - 1)  # three 300-row windows of 48 B rows
    list(store.batches("blocks.0.hook_resid_post", 100, chunk_rows=64, buffer_rows=300, fast=True))
    assert asked == []
    monkeypatch.setattr(reader, "_ram_bytes", lambda: 8 * 3 * 300 * 48)
    list(store.batches("blocks.0.hook_resid_post", 100, chunk_rows=64, buffer_rows=300, fast=True))
    assert asked


def test_tail_arrays_must_match_the_window(tmp_path):
    store, _ = _store(tmp_path)
    bufs = [np.empty((10, 24), dtype=np.float16)]
    seg = [(store.shards[0], 0, 10, 0)]
    for tail in (np.empty((4, 23), dtype=np.float16), np.empty((4, 24), dtype=np.float32),
                 np.empty((8, 24), dtype=np.float16)):  # wrong width, wrong dtype, runs past the window
        with pytest.raises(RuntimeError, match="tails to match"):
            store._fill_window_fast(["blocks.0.hook_resid_post"], seg, bufs, np.arange(10), {}, [tail], cut=6)
    tail = np.empty((4, 24), dtype=np.float16)  # and the right one: rows 6..9 of the window land in it
    fds = {}
    store._fill_window_fast(["blocks.0.hook_resid_post"], seg, bufs, np.arange(10), fds, [tail], cut=6)
    for fd in fds.values():
        os.close(fd)
    want = store.rows("blocks.0.hook_resid_post", range(10), dtype=None).numpy()
    assert np.array_equal(bufs[0][:6].view(np.int16), want[:6].view(np.int16))
    assert np.array_equal(tail.view(np.int16), want[6:].view(np.int16))


@pytest.mark.parametrize("threads,iov_max", [(1, None), (3, None), (2, 16)])
def test_read_threads_do_not_change_batches(tmp_path, monkeypatch, threads, iov_max):
    """The fill's helper threads (planning ahead, shares of the preadv calls) give the reference's batches,
    also where a chunk has more rows than one preadv takes (IOV_MAX)."""
    if iov_max is not None:
        monkeypatch.setattr(window_io, "_IOV_MAX", iov_max)
    store, _ = _store(tmp_path)
    kw = dict(chunk_rows=50, buffer_rows=200, seed=5, epochs=2, dtype=None)
    want = list(store.batches(HOOKS, 64, fast=False, **kw))
    monkeypatch.setattr(window_io, "READ_THREADS", threads)
    got = list(store.batches(HOOKS, 64, fast=True, **kw))
    assert len(got) == len(want) > 0
    assert all(torch.equal(_bits(a), _bits(b)) for f, r in zip(got, want) for a, b in zip(f, r))


def test_split_runs_every_job_once_and_raises_after_the_helpers(monkeypatch):
    planner = window_io._Planner(8, threads=3)
    try:
        seen = []
        planner.split(lambda part: seen.extend(part), list(range(100)))
        assert sorted(seen) == list(range(100))
        done = []

        def run(part):
            for j in part:
                if j == 0:
                    raise OSError("job 0 failed")
                done.append(j)

        with pytest.raises(OSError, match="job 0"):
            planner.split(run, list(range(50)))
        assert 0 not in done  # and split returned only after every helper stopped: nothing runs later
        n = len(done)
        import time

        time.sleep(0.05)
        assert len(done) == n
        done.clear()

        import threading

        started = threading.Event()

        def run_slow(part):  # the calling thread fails while a helper is inside a slow job
            for j in part:
                if threading.current_thread() is threading.main_thread():
                    started.wait(5)
                    raise OSError("the caller's job failed")
                started.set()
                time.sleep(0.02)
                done.append(j)

        with pytest.raises(OSError, match="caller's job"):
            planner.split(run_slow, list(range(50)))
        n = len(done)
        time.sleep(0.05)
        assert len(done) == n < 48  # the helpers had stopped, and stopped early (the rest drained)
    finally:
        planner.close()


def test_bad_read_threads_env(monkeypatch):
    for bad in ("0", "-1", "two"):
        monkeypatch.setenv("INTERP_STORE_READ_THREADS", bad)
        with pytest.raises(ValueError, match="INTERP_STORE_READ_THREADS"):
            window_io._read_threads()
    monkeypatch.setenv("INTERP_STORE_READ_THREADS", "1")
    assert window_io._read_threads() == 1
