"""Low-level window I/O for the shuffled store reader (:meth:`ActivationStore.batches`).

The pieces :mod:`interp.store.reader` composes into a window fill: cutting the epoch's chunk order
into windows (:func:`_windows`), the slot of each row for uniformly random batches
(:func:`_append_destinations`), whole-range reads (:func:`_pread_full`, the reference fill), the
kernel scatter through libc's ``preadv`` with one ``iovec`` per row (:func:`_preadv_rows`, the fast
fill, where libc has it: ``_PREADV``), ``posix_fadvise(WILLNEED)`` readahead of the next window
(:func:`_prefetch`), the helper threads that plan the next window and share a window's reads
(:class:`_Planner`; :data:`READ_THREADS`, ``INTERP_STORE_READ_THREADS``), and the pool of window
buffers in anonymous memory maps (:class:`_WindowPool`). The algorithm and the randomness guarantee
are documented in :mod:`interp.store.reader`.

Memory: a window buffer is ``W`` rows of each hook read (outside the malloc heap); the
``iovec`` lists are 16 bytes a row and hook, the slots 8 bytes a row (this window's and the
next's); nothing else scales with the store.
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Iterator

import numpy as np

from .format import CorruptShardError


def _pread_full(fd: int, out: np.ndarray, offset: int, path: Path) -> None:
    """Fill ``out`` (C-contiguous) from ``fd`` at byte ``offset``; error naming ``path`` if the file ends early."""
    view = memoryview(out).cast("B")
    got = 0
    while got < len(view):
        n = os.preadv(fd, [view[got:]], offset + got)
        if not n:
            raise CorruptShardError(f"shard file {path} ended early (truncated after it was opened)")
        got += n


def _windows(chunks: list[tuple[dict, int, int]], window: int) -> Iterator[list[tuple[dict, int, int, int]]]:
    """Cut the rows of ``chunks`` (in this order) into windows of ``window`` rows: yields each window's
    ``[(shard, a, b, offset in window), ...]``; a chunk across a window end is split between the two."""
    segs: list[tuple[dict, int, int, int]] = []
    fill = 0
    for shard, a, b in chunks:
        while a < b:
            take = min(b - a, window - fill)
            segs.append((shard, a, a + take, fill))
            a, fill = a + take, fill + take
            if fill == window:
                yield segs
                segs, fill = [], 0
    if segs:
        yield segs


def _append_destinations(perm: np.ndarray, batch_size: int) -> np.ndarray:
    """Window slot of each row, given a uniformly random permutation ``perm`` of the window's rows
    (in reading order): batch ``k`` takes the rows ``p`` with ``perm[p] // batch_size == k`` and
    holds them in reading order, at slots ``[k * batch_size, k * batch_size + count_k)``.

    That is ``dest[argsort(perm // batch_size, stable)] = arange(n)``; computed here from the
    inverse permutation (row of each value), whose batch-sized pieces only need sorting."""
    n = perm.size
    inv = np.empty(n, dtype=np.uint16 if n <= 1 << 16 else np.int64)  # 16-bit keys: numpy's radix sort
    inv[perm] = np.arange(n, dtype=inv.dtype)
    dest = np.empty(n, dtype=np.int64)
    full = n // batch_size * batch_size
    if full:
        dest[np.sort(inv[:full].reshape(-1, batch_size), axis=1, kind="stable").reshape(-1)] = np.arange(full)
    if full < n:
        dest[np.sort(inv[full:], kind="stable")] = np.arange(full, n)
    return dest


class _Planner:
    """The slots of each window's rows (:func:`_append_destinations` of a fresh permutation from the
    epoch's generator, window after window), and the helper threads of the fast fill.

    With ``threads`` >= 2, one worker computes the next window's slots while the current one is
    read (the permutation and sorts take ~2 ms for a 65536-row window; numpy releases the GIL in
    them), and ``threads - 1`` more take a share of each window's ``preadv`` calls
    (:meth:`split`).  The generator is used in the same order either way, so the slots, and the
    batches, do not depend on ``threads``."""

    def __init__(self, batch_size: int, threads: int = 1):
        self.batch_size, self.threads = batch_size, threads
        self._plan = ThreadPoolExecutor(1, thread_name_prefix="interp-store-plan") if threads > 1 else None
        self._read = ThreadPoolExecutor(threads - 1, thread_name_prefix="interp-store-read") if threads > 1 else None

    def _one(self, rng: np.random.Generator, sizes: list[int], k: int, advise) -> np.ndarray:
        dest = _append_destinations(rng.permutation(sizes[k]), self.batch_size)
        for w in range(k and k + 1, min(k + 2, len(sizes))) if advise else ():  # windows 0, 1; then k + 1
            advise(w)
        return dest

    def slots(self, rng: np.random.Generator, sizes: list[int], advise=None) -> Iterator[np.ndarray]:
        """Slots for windows of ``sizes`` rows, in order (a generator; with a worker, the next window's are
        computed while one is used).  ``advise(k)``, if given, asks the disk for window ``k``'s rows
        (:func:`_prefetch`): windows 0 and 1 with the first slots, window ``k + 1`` with window ``k``'s,
        so the disk reads one window ahead (two with a worker, which plans a window ahead)."""
        fut = None  # the worker's plan of window k, submitted while window k - 1 is used
        for k in range(len(sizes)):
            dest = self._one(rng, sizes, k, advise) if fut is None else fut.result()
            if self._plan is not None and k + 1 < len(sizes):
                fut = self._plan.submit(self._one, rng, sizes, k + 1, advise)
            yield dest

    def split(self, run, jobs: list) -> None:
        """``run(jobs)`` shared by this thread and the ``threads - 1`` helpers: each takes the next job until
        none is left (so a thread slowed by another process takes fewer); returns when all are done (also
        when one raises: then the first error is raised, after the others let go of the buffers)."""
        if self._read is None or len(jobs) < 2:
            run(jobs)
            return
        it = iter(jobs)  # shared: a list iterator hands out each item once (its next() holds the GIL)
        futs = [self._read.submit(run, it) for _ in range(min(self.threads, len(jobs)) - 1)]
        try:
            run(it)
        except BaseException:
            for _ in it:  # the helpers stop at their next job
                pass
            raise
        finally:
            wait(futs)  # raise only once the helpers let go of the buffers
        for f in futs:
            f.result()

    def close(self) -> None:
        for pool in filter(None, (self._plan, self._read)):
            pool.shutdown(wait=True, cancel_futures=True)


def _anon_array(size: int, dtype) -> np.ndarray:
    """A 1-D array in its own anonymous memory map: outside the malloc heap, so freeing it returns
    the memory to the OS at once (no heap growth or fragmentation), with transparent huge pages
    asked for as numpy does for its large arrays (the scatter runs ~25% faster with fewer TLB
    misses).  Every view of it has it as ``.base``."""
    mm = mmap.mmap(-1, max(1, size * np.dtype(dtype).itemsize), flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    with contextlib.suppress(AttributeError, OSError, ValueError):
        mm.madvise(mmap.MADV_HUGEPAGE)
    return np.frombuffer(mm, dtype=dtype, count=size)


def _libc_preadv():
    """libc's ``preadv`` through ctypes (``preadv64`` where glibc has it), or ``None`` where it is missing."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = getattr(libc, "preadv64", None) or libc.preadv
    except (OSError, AttributeError):
        return None
    fn.restype = ctypes.c_ssize_t
    fn.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int64]
    return fn


_PREADV = _libc_preadv()
try:
    _IOV_MAX = max(1, min(1024, os.sysconf("SC_IOV_MAX")))
except (AttributeError, ValueError, OSError):
    _IOV_MAX = 16


def _read_threads() -> int:
    raw = os.environ.get("INTERP_STORE_READ_THREADS", "2")
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"INTERP_STORE_READ_THREADS must be an integer >= 1, got {raw!r}")
    return min(int(raw), os.cpu_count() or 1)


#: threads of the fast fill (``INTERP_STORE_READ_THREADS``, default 2, at most the CPU count): with 2+,
#: the window's ``preadv`` calls are split between the calling thread and helpers, and one more thread
#: plans the next window (:class:`_Planner`); 1 keeps everything on the calling thread.
READ_THREADS = _read_threads()


def _preadv_rows(fd: int, iov: np.ndarray, offset: int, path: Path) -> None:
    """Read consecutive file bytes from ``offset`` into the buffers of ``iov`` (``[k, 2]`` uint64
    rows of (address, length), all of one length, consumed in order) with ``preadv``: the kernel copies each row from
    the page cache straight to its own address.  Short reads resume; end of file is an error naming ``path``."""
    k, n = 0, len(iov)
    row = int(iov[0, 1]) if n else 0  # every entry has this length; only iov[k] may be trimmed (below)
    while k < n:
        m = min(_IOV_MAX, n - k)
        got = _PREADV(fd, iov.ctypes.data + k * iov.strides[0], m, offset)
        if got < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"preadv of {path}: {os.strerror(err)}")
        if got == 0:
            raise CorruptShardError(f"shard file {path} ended early (truncated after it was opened)")
        offset += got
        if got == m * row - (row - int(iov[k, 1])):
            k += m
            continue
        while got:  # a short read (rare): skip the buffers filled, trim the one filled in part
            take = min(got, int(iov[k, 1]))
            got -= take
            if take == int(iov[k, 1]):
                k += 1
            else:
                iov[k, 0] += np.uint64(take)
                iov[k, 1] -= np.uint64(take)


def _ram_bytes() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return 0


def _prefetch(ranges: list[tuple[Path, int, int]]) -> None:
    """Ask the kernel to start reading ``(path, byte offset, length)`` ranges into the page cache
    (``posix_fadvise(WILLNEED)``: asynchronous readahead).  A range whose first and last bytes are
    cached already (probed with a 1-byte ``RWF_NOWAIT`` read, which fails instead of waiting for
    the disk) is skipped: the advice walks every page, which costs ~8% of a warm epoch."""
    if not hasattr(os, "posix_fadvise"):
        return
    nowait = getattr(os, "RWF_NOWAIT", None)
    probe = bytearray(1)
    for path, off, ln in ranges:
        with contextlib.suppress(OSError):  # advice only: the read itself names a problem
            fd = os.open(path, os.O_RDONLY)
            try:
                if nowait is not None and ln > 0:
                    try:
                        os.preadv(fd, [probe], off, nowait)
                        os.preadv(fd, [probe], off + ln - 1, nowait)
                        continue  # both ends cached
                    except BlockingIOError:
                        pass
                    except OSError:
                        nowait = None  # RWF_NOWAIT unsupported here: advise every range
                os.posix_fadvise(fd, off, ln, os.POSIX_FADV_WILLNEED)
            finally:
                os.close(fd)


class _WindowPool:
    """Window buffers (one array per hook), reused when no batch handed out still views them.

    A batch in the storage dtype is a view of its window buffer; the buffer is reused for a
    later window only when nothing outside the pool refers to it any more (reference count),
    so a caller that keeps batches never sees them overwritten: it gets a fresh buffer instead.
    """

    def __init__(self, specs: list[tuple[int, np.dtype]], keep: int = 2):
        self.specs, self._keep = specs, keep
        self._free: list[list[np.ndarray]] = []
        self._lock = threading.Lock()

    def get(self, n: int) -> list[np.ndarray]:
        with self._lock:  # the views returned hold their owners before another thread can look
            for owners in self._free:
                if owners[0].size >= n * self.specs[0][0] and all(sys.getrefcount(o) <= 3 for o in owners):
                    return [o[: n * w].reshape(n, w) for o, (w, _) in zip(owners, self.specs)]
            owners = [_anon_array(n * w, dt) for w, dt in self.specs]
            if len(self._free) < self._keep:
                self._free.append(owners)
            return [o.reshape(n, w) for o, (w, _) in zip(owners, self.specs)]
