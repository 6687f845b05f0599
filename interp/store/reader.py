"""Reading an activation store: random rows, contiguous streams, shuffled training batches.

Nothing is loaded into RAM wholesale.  Three access paths, each bounded in memory:

* :meth:`ActivationStore.rows` -- random access by global row index, through memory maps of
  the shard files.  At most ``max_mapped_bytes`` (default 64 MiB) of files stay mapped
  (least recently used are unmapped), so address space stays bounded even for stores
  far larger than RAM or than ``RLIMIT_AS``.
* :meth:`ActivationStore.stream` -- rows in storage order, ``batch_size`` at a time, each
  batch read with plain sequential ``readinto`` calls straight into its own array.
* :meth:`ActivationStore.batches` -- shuffled mini-batches for training, by a chunk shuffle
  with a mixing window (the scheme of SAELens's mixing buffer and of chunked dataloaders):

  1. each epoch, the store's *chunks* (``chunk_rows`` consecutive rows of one shard, default
     1024) are put in a uniformly random order (``numpy`` generator seeded ``[seed, epoch]``);
  2. the rows, in that chunk order, are cut into *windows* of ``W`` rows: ``buffer_rows``
     (default 65536; 75 MB for one d=576 fp16 hook) rounded down to whole batches;
  3. a window is split into batches by a uniformly random permutation of its ``W`` rows:
     batch ``k`` takes the rows whose permuted index falls in ``[kB, (k+1)B)``.

  Filling a window (``fast=True``, the default where libc has ``preadv``; the low-level pieces
  are in :mod:`interp.store.window_io`): each chunk is read by one ``preadv`` call whose
  ``iovec`` list has one entry per row, pointing at the row's slot in the window buffer (the
  window's last batch: in an array of its own), so the kernel copies every row from the page
  cache straight to its batch slot -- one pass, no staging, no Python per row.  The calls of a
  window are shared by the calling thread and a helper thread (rows have distinct slots, so
  they never write the same bytes), and a third thread plans the next window meanwhile (its
  permutation, slots and readahead); ``INTERP_STORE_READ_THREADS`` (default 2, at most the CPU
  count) sets the reading threads, 1 keeps everything on the calling thread; the batches do not
  depend on it.  The reference (``fast=False``, or ``INTERP_REFERENCE=1``: interp/fastpath.py)
  reads the chunk with one sequential read into a staging array and scatters its rows with
  numpy: two passes, the same bytes in the same slots (tested bit for bit).  The chunks of the
  next window (and of the first) are handed to ``posix_fadvise(WILLNEED)`` first (up to two
  windows ahead), so a cold store is read from disk ahead of use; ranges whose ends are cached
  already are skipped (probed with a 1-byte ``RWF_NOWAIT`` read), and nothing is advised when
  three windows exceed 1/8 of RAM.

  Cost: one pass over the bytes, in ``W / B`` interleaved destination streams (rows of a chunk
  go to every batch of the window), which bounds it below a sequential read; the ratios to a
  raw read, the page-cache states they depend on, and the alternatives measured and dropped
  (user-space gathers from memory maps, ``process_vm_readv``, small chunks with a window in L3)
  are in docs/benchmarks.md ("Store reads") with the commands that produced them.  Design
  choice: the kernel scatter stays beside the plain reference because it reads faster in every
  page-cache state measured there; the reference is kept as the definition.

  Randomness guarantee (both fills): each batch is a uniformly random ``batch_size``-subset of
  its window, and a window holds ``W / chunk_rows`` (+1) chunks drawn uniformly at random from
  the whole store; two rows can be in one batch only if their chunks fall in the same window.
  With sequences of ``T`` tokens stored contiguously (``T <= chunk_rows``), a batch holds about
  ``B * T / W`` rows of each sequence it touches (8 for ``B`` = 4096, ``T`` = 128 and the
  default ``W``; a full shuffle of a large store gives ~1).
  Inside a batch, rows of one chunk are adjacent and in storage order (order within a batch
  is not random: shuffle it yourself if you slice batches).  Every row is emitted exactly
  once per epoch (``drop_last`` aside); a seed gives the same batches, with either fill.
  Memory: one window buffer (``W`` rows of every hook asked for; the store keeps it for its
  next ``batches`` call), a second only while the caller still holds a storage-dtype batch (a
  view of the window buffer) of the previous window, plus the window's last batch in its own
  array (the reference: one chunk of staging per hook instead); the ``iovec`` lists are 16
  bytes a row of the window and hook, the slots of this and the next window 8 bytes a row
  each.  With ``rank``/``world_size`` (DDP) rank ``r`` takes chunks
  ``r, r+W', ...`` of the permuted order (``W'`` = world size) and every rank yields the same
  number of full batches.  ``shuffle=False`` reads rows in storage order through the same
  windows (one sequential read per segment).

Tensors come back as ``dtype`` on ``device``; on CUDA the host batch is pinned and copied
with ``non_blocking=True``, and the cast to ``dtype`` happens on the GPU.

Integrity (see :mod:`interp.store.format`): ``open`` checks that every file exists with the
manifest's size; the CRC-32 of a file is checked the first time the file is read in this
process (``verify="lazy"``, default) -- also when it was read only in part -- or never
(``"size"``), or for all files at open (``"full"``).  :meth:`ActivationStore.verify` checks
every file.  A mismatch raises :class:`~interp.store.format.CorruptShardError` naming it.
"""

from __future__ import annotations

import errno
import itertools
import math
import os
import warnings
from collections import OrderedDict
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from interp.config import takes_config
from interp.fastpath import use_fast

from . import window_io as wio
from .window_io import _WindowPool, _pread_full, _prefetch, _preadv_rows, _ram_bytes, _windows
from .format import (
    DTYPES, META, SHARDS, CorruptShardError, StoreError, crc32_file, read_manifest, shard_dirname,
    stream_file,
)


def _close(fds: dict[Path, int]) -> None:
    for fd in fds.values():
        os.close(fd)


def _to_torch(arr, store_dtype: torch.dtype, device, dtype: torch.dtype | None) -> torch.Tensor:
    """Rows in the storage dtype (a numpy array freshly read, never a memory map; bfloat16 as its
    16-bit patterns) -> torch tensor of ``dtype`` on ``device``."""
    t = torch.from_numpy(arr).view(store_dtype)
    if device is not None and torch.device(device).type == "cuda":
        t = t.pin_memory().to(device, non_blocking=True)
        return t if dtype is None else t.to(dtype)
    if dtype is not None and dtype != t.dtype:
        t = _np_empty(t.shape, dtype).copy_(t)
    return t if device is None else t.to(device)  # CPU: the same tensor; other devices (mps, xpu, ...): a copy


_NP_OF = {torch.float32: np.float32, torch.float16: np.float16, torch.float64: np.float64,
          torch.bfloat16: np.int16, torch.int16: np.int16}


def _np_empty(shape, dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised CPU tensor whose memory comes from numpy (glibc malloc reuses freed
    blocks, while large torch allocations are fresh pages that fault on every batch)."""
    if dtype not in _NP_OF:
        return torch.empty(shape, dtype=dtype)
    return torch.from_numpy(np.empty(tuple(shape), dtype=_NP_OF[dtype])).view(dtype)  # bfloat16: from int16


class RowView:
    """Lazy per-row metadata (token ids or (sequence, position)), indexable like a tensor."""

    def __init__(self, store: "ActivationStore", stream: str):
        self._store, self._stream = store, stream

    def __len__(self) -> int:
        return self._store.n_rows

    def __getitem__(self, idx) -> torch.Tensor:
        out = self._store.rows(self._stream, idx, None, None)
        return out[0] if isinstance(idx, int) else out

    def __array__(self, dtype=None, copy=None):
        """All rows as one array (``np.asarray(store.tokens)``)."""
        return np.asarray(self[:].numpy(), dtype)

    def __repr__(self) -> str:
        return f"RowView({self._stream!r}, rows={len(self)})"


@dataclass(frozen=True)
class Batching:
    """How ``batches()`` orders and delivers rows; an in-memory source takes the same settings."""

    shuffle: bool = True
    """Rows in a random order (a function of ``seed`` and the epoch), else in storage order."""
    seed: int = 0
    device: Any = None
    """Where the batches go (``None``: the CPU)."""
    dtype: torch.dtype | None = torch.float32
    """The batches' dtype (``None``: the storage dtype)."""
    rank: int = 0
    """This process's share of the rows: every ``world_size``-th chunk from ``rank`` on."""
    world_size: int = 1
    epochs: int = 1


@dataclass(frozen=True)
class StoreBatching(Batching):
    """:class:`Batching` plus the store's chunk shuffle and read path (see ``ActivationStore.batches``)."""

    chunk_rows: int = 1024
    """Consecutive rows read (and shuffled) as one chunk."""
    buffer_rows: int = 65536
    """Rows of one mixing window (rounded down to whole batches)."""
    drop_last: bool | None = None
    """Drop a short last batch (``None``: only when ``world_size > 1``, so every rank yields as many)."""
    fast: bool | None = None
    """The kernel scatter fill (``True``) or the reference one (``False``); ``None``: :func:`use_fast`."""


def batch_request(hook_or_hooks, batch_size: int, config: Batching, check_hook) -> tuple[bool, list[str]]:
    """Validate the arguments every ``batches()`` shares; returns (several hooks asked?, the hook list)."""
    multi = not isinstance(hook_or_hooks, str)
    hooks = list(hook_or_hooks) if multi else [hook_or_hooks]
    for h in hooks:
        check_hook(h)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not 0 <= config.rank < config.world_size:
        raise ValueError(f"rank {config.rank} is outside world_size {config.world_size}")
    return multi, hooks


class ActivationStore:
    """A read-only view of a store directory written by :func:`cache_activations`."""

    max_mapped_bytes = 64 << 20
    """Memory maps of shard files kept open by :meth:`rows` (least recently used are unmapped)."""

    def __init__(self, path: str | Path, verify: str = "lazy"):
        if verify not in ("lazy", "size", "full"):
            raise ValueError(f"verify must be 'lazy', 'size' or 'full', got {verify!r}")
        self.path = Path(path)
        self.manifest = read_manifest(self.path)
        m = self.manifest
        self.dtype: str = m["dtype"]
        self._np_dtype, self.torch_dtype, _ = DTYPES[self.dtype]
        self.hooks: list[str] = list(m["hooks"])
        self.shard_rows: int = m["shard_rows"]
        self._verify_mode = verify
        self._verified: set[Path] = set()
        self._maps: OrderedDict[Path, np.memmap] = OrderedDict()
        self._pool: _WindowPool | None = None  # window buffers of the last batches() call, reused by the next
        self._mapped_bytes = 0
        # the readable part: the contiguous prefix of complete shards (0, 1, ... up to the first gap)
        by_index = {s["index"]: s for s in m["shards"]}
        self.shards: list[dict] = list(itertools.takewhile(bool, map(by_index.get, itertools.count())))
        if len(self.shards) < len(by_index):
            warnings.warn(f"{self.path}: shards after {len(self.shards)} are not contiguous; reading only the first "
                          f"{len(self.shards)} (resume the caching job to fill the gap)", stacklevel=2)
        for s in self.shards:
            if s["row_start"] != s["index"] * self.shard_rows:
                raise StoreError(f"{self.path}: shard {s['index']} starts at row {s['row_start']}, "
                                 f"expected {s['index'] * self.shard_rows}")
        self.n_rows: int = sum(s["rows"] for s in self.shards)
        # (shard index, stream) -> (path, manifest record) of every file of the readable shards, built once:
        # building a Path costs more than a warm read of a chunk's rows
        self._files = {(s["index"], st): (self.path / SHARDS / shard_dirname(s["index"]) / stream_file(st),
                                          s["files"][stream_file(st)])
                       for s in self.shards for st in [*self.hooks, *META]}
        self.complete: bool = m["complete"] and self.n_rows == m["n_rows_target"]
        for path, rec in self._files.values():  # every file is there with the manifest's size
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                raise CorruptShardError(f"shard file {path} is missing (listed in the manifest)") from None
            if size != rec["bytes"]:
                raise CorruptShardError(f"shard file {path} has {size} bytes, the manifest says "
                                        f"{rec['bytes']} (truncated or overwritten); re-run the caching job "
                                        "into a new directory")
        if verify == "full":
            self.verify()

    def __getstate__(self) -> dict:
        """Pickling (e.g. into DataLoader workers) leaves out the per-process caches: maps, window buffers."""
        return {**self.__dict__, "_maps": OrderedDict(), "_mapped_bytes": 0, "_pool": None}

    @classmethod
    def open(cls, path: str | Path, verify: str = "lazy") -> "ActivationStore":
        """Open a store directory (see class and module docs for ``verify``)."""
        return cls(path, verify=verify)

    # ---------------------------------------------------------------- metadata
    def d(self, hook: str) -> int:
        """Width (elements per row) of ``hook``'s rows."""
        return int(np.prod(self.row_shape(hook)))

    def row_shape(self, hook: str) -> tuple[int, ...]:
        """Per-token shape of ``hook`` before flattening (e.g. ``(n_heads, d_head)`` for hook_z)."""
        self._check_hook(hook)
        return tuple(self.manifest["row_shapes"][hook])

    @property
    def tokens(self) -> RowView:
        """Token id of every row (``store.tokens[i]``, ``store.tokens[a:b]``, ``np.asarray``)."""
        return RowView(self, "tokens")

    @property
    def seq_pos(self) -> RowView:
        """``(sequence index, position)`` of every row, int64 ``[n, 2]``."""
        return RowView(self, "seq_pos")

    def nbytes(self) -> int:
        """Bytes on disk of the readable shards."""
        return sum(f["bytes"] for s in self.shards for f in s["files"].values())

    def __repr__(self) -> str:
        return (f"ActivationStore({str(self.path)!r}, model={self.manifest['model']!r}, hooks={len(self.hooks)}, "
                f"rows={self.n_rows}, dtype={self.dtype})")

    # ---------------------------------------------------------------- integrity
    def _file(self, shard: dict, stream: str) -> tuple[Path, dict]:
        return self._files[shard["index"], stream]

    def _check_crc(self, path: Path, rec: dict, lazy: bool = False) -> None:
        """Check a file's CRC-32; ``lazy``: only at its first read here, never with ``verify="size"``."""
        if lazy and (self._verify_mode == "size" or path in self._verified):
            return
        crc = crc32_file(path)
        if crc != rec["crc32"]:
            raise CorruptShardError(f"shard file {path} is corrupt: CRC-32 {crc:#010x} != {rec['crc32']:#010x} "
                                    "in the manifest")
        self._verified.add(path)

    def verify(self) -> dict:
        """Check the CRC-32 of every file; raises :class:`CorruptShardError` on the first bad one."""
        files = self._files.values()
        for f in files:
            self._check_crc(*f)
        return {"files": len(files), "bytes": self.nbytes(), "ok": True}

    # ---------------------------------------------------------------- low-level reads
    def _check_hook(self, hook: str) -> None:
        if hook not in self.manifest["row_shapes"]:
            raise KeyError(f"hook {hook!r} is not in this store; it holds {self.hooks}")

    def _stream_shape(self, stream: str) -> tuple[np.dtype, int]:
        return META.get(stream) or (np.dtype(self._np_dtype), self.d(stream))

    def _map(self, shard: dict, stream: str) -> np.ndarray:
        path, rec = self._file(shard, stream)
        mm = self._maps.get(path)
        if mm is not None:
            self._maps.move_to_end(path)
            return mm
        self._check_crc(path, rec, lazy=True)
        dt, w = self._stream_shape(stream)
        try:
            mm = np.memmap(path, dtype=dt, mode="r", shape=(shard["rows"], w))
        except OSError as e:  # address space short (a `ulimit -v` cap): drop what this store caches, retry
            if e.errno != errno.ENOMEM:
                raise
            self._maps.clear()
            self._mapped_bytes, self._pool = 0, None
            mm = np.memmap(path, dtype=dt, mode="r", shape=(shard["rows"], w))
        self._maps[path] = mm
        self._mapped_bytes += rec["bytes"]
        while self._mapped_bytes > self.max_mapped_bytes and len(self._maps) > 1:
            self._mapped_bytes -= self._maps.popitem(last=False)[1].nbytes
        return mm

    # ---------------------------------------------------------------- public reads
    def rows(self, hook: str, idx, device=None, dtype: torch.dtype | None = torch.float32) -> torch.Tensor:
        """Rows ``idx`` (ints, array, tensor or slice; negative counts from the end) of ``hook`` as
        ``[len(idx), d]`` (of ``tokens`` / ``seq_pos`` too: int64 ids / ``[len(idx), 2]``)."""
        if isinstance(idx, slice):
            idx = np.arange(self.n_rows)[idx]
        idx = np.asarray(idx.cpu() if isinstance(idx, torch.Tensor) else idx, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < -self.n_rows or idx.max() >= self.n_rows):
            bad = idx[(idx < -self.n_rows) | (idx >= self.n_rows)][0]
            raise IndexError(f"row {int(bad)} is out of range for a store of {self.n_rows} rows")
        idx = np.where(idx < 0, idx + self.n_rows, idx)
        dt, w = self._stream_shape(hook)
        out = np.empty((idx.size, w), dtype=dt)
        shard_of = idx // self.shard_rows
        for k in np.unique(shard_of):
            sel = np.nonzero(shard_of == k)[0]
            out[sel] = self._map(self.shards[int(k)], hook)[idx[sel] - int(k) * self.shard_rows]
        if hook in META:
            t = torch.from_numpy(out).to(torch.int64)
            return t[:, 0] if hook == "tokens" else t
        return _to_torch(out, self.torch_dtype, device, dtype)

    def stream(
        self, hook: str, batch_size: int, device=None, dtype: torch.dtype | None = torch.float32,
        start: int = 0, stop: int | None = None,
    ) -> Iterator[torch.Tensor]:
        """Rows ``[start, stop)`` of ``hook`` in storage order, ``batch_size`` per tensor (last may be short)."""
        batch_request(hook, batch_size, Batching(), self._check_hook)
        stop = self.n_rows if stop is None else min(stop, self.n_rows)
        parts = [(s, max(0, start - s["row_start"]), min(s["rows"], stop - s["row_start"]))
                 for s in self.shards]
        fds: dict[Path, int] = {}  # files opened once per call, closed when the iterator ends
        try:
            for segs in _windows([p for p in parts if p[1] < p[2]], batch_size):  # batches across shard ends
                arr = np.empty((sum(b - a for _, a, b, _ in segs), self.d(hook)), dtype=self._np_dtype)
                self._fill_window([hook], segs, [arr], None, fds)  # straight into the batch's own array
                yield _to_torch(arr, self.torch_dtype, device, dtype)
        finally:
            _close(fds)

    @takes_config(StoreBatching)
    def batches(self, hook_or_hooks: str | Sequence[str], batch_size: int, *, config: StoreBatching
                ) -> Iterator[torch.Tensor | tuple[torch.Tensor, ...]]:
        """Mini-batches for training; a list of hooks yields aligned tuples.

        A chunk shuffle with a mixing window (see the module docstring for the guarantee):
        each epoch permutes the store's chunks of ``chunk_rows`` consecutive rows, cuts the
        rows in that order into windows of ``buffer_rows`` rows (rounded down to whole batches,
        at least one batch), and splits each window into batches by a uniformly random
        permutation.  Every row comes exactly once per epoch (``drop_last`` aside); the same
        ``seed``, ``chunk_rows`` and ``buffer_rows`` give the same batches, whichever hooks are
        asked for.  Memory: one window buffer (``buffer_rows x sum of the hooks' row bytes``,
        75 MB for one d=576 fp16 hook at the default; kept by the store for the next call), a
        second one only while the caller still holds a storage-dtype batch of the previous
        window, plus the window's last batch (reference fill: one chunk per hook of staging).

        ``drop_last`` defaults to ``True`` when ``world_size > 1`` (every rank yields the same
        number of full batches) and ``False`` otherwise.  ``fast`` picks how a shuffled window is
        filled: the kernel scatter (``True``) or the reference staging + numpy scatter (``False``);
        both give bit-identical batches.  ``None`` takes the kernel scatter where libc has ``preadv``
        unless ``INTERP_REFERENCE=1``.  The fast fill reads on
        :data:`interp.store.window_io.READ_THREADS` threads (``INTERP_STORE_READ_THREADS``, default 2)
        and plans the next window on another; the batches are the same on any number.
        """
        multi, hooks = batch_request(hook_or_hooks, batch_size, config, self._check_hook)
        shuffle, seed, device, dtype, rank, world_size, epochs = astuple(config)[:7]
        chunk_rows, buffer_rows, drop_last, fast = astuple(config)[7:]
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
        drop_last = world_size > 1 if drop_last is None else drop_last
        if fast and wio._PREADV is None:
            raise RuntimeError("fast=True needs libc's preadv, which this platform lacks; use fast=False")
        fast = use_fast(fast) and wio._PREADV is not None and shuffle  # storage order: sequential reads
        widths = [self.d(h) for h in hooks]
        rbytes = [w * np.dtype(self._np_dtype).itemsize for w in widths]
        window = max(1, buffer_rows // batch_size) * batch_size  # rows per mixing window
        # chunks: (shard, first row, last row + 1), shard-local, in storage order
        chunks = [(s, a, min(a + chunk_rows, s["rows"])) for s in self.shards for a in range(0, s["rows"], chunk_rows)]
        specs = [(w, self._np_dtype) for w in widths]
        if self._pool is None or self._pool.specs != specs:  # the store keeps one pool for the next call:
            self._pool = _WindowPool(specs)  # a fresh 75 MB buffer costs ~10% of a warm epoch in page faults
        pool = self._pool
        # read-ahead only while three windows of page cache are a small part of RAM (else it could evict the
        # window being read)
        prefetch = fast and 3 * window * sum(rbytes) <= _ram_bytes() // 8
        own_last = dtype in (None, self.torch_dtype)
        # the window's last batch gets its own array: a caller holding it while asking for the next batch
        # does not pin the window buffer, which is then reused (a cast copies anyway)
        direct_tail = fast and own_last
        # fast: helper threads plan the next window (permutation, slots) and share this one's reads
        planner = wio._Planner(batch_size, wio.READ_THREADS if fast else 1)
        fds: dict[Path, int] = {}  # files opened once per call, closed when the iterator ends
        try:
            for epoch in range(epochs):
                rng = np.random.default_rng([seed, epoch])
                order = rng.permutation(len(chunks)) if shuffle else np.arange(len(chunks))
                per_rank = [order[r::world_size] for r in range(world_size)]
                budget = math.inf  # batches left: with ranks, as many full ones as the smallest share holds
                if world_size > 1:
                    budget = min(sum(chunks[k][2] - chunks[k][1] for k in ks) for ks in per_rank) // batch_size
                plan = []  # per window: its segments, rows and batches
                for segs in _windows([chunks[int(k)] for k in per_rank[rank]], window):
                    n = sum(b - a for _, a, b, _ in segs)
                    n_batches = min(n // batch_size if drop_last else -(-n // batch_size), budget)
                    if n_batches <= 0:
                        break
                    plan.append((segs, n, n_batches))
                    budget -= n_batches

                def advise(k: int, plan=plan) -> None:  # the disk reads ahead (see _Planner.slots)
                    _prefetch([(self._file(sh, h)[0], a * rb, (b - a) * rb) for h, rb in zip(hooks, rbytes)
                               for sh, a, b, _ in plan[k][0]])

                slots = planner.slots(rng, [n for _, n, _ in plan] if shuffle else [],
                                      advise if prefetch else None)
                for segs, n, n_batches in plan:
                    bufs = pool.get(n)
                    dest = next(slots) if shuffle else None
                    cut = (n_batches - 1) * batch_size if direct_tail else 0  # first row of the last batch
                    tails = ([np.empty((min(n, cut + batch_size) - cut, w), dtype=self._np_dtype) for w in widths]
                             if direct_tail else None)  # the last batch, read straight into its own arrays
                    if fast:
                        self._fill_window_fast(hooks, segs, bufs, dest, fds, tails, cut, planner)
                    else:
                        self._fill_window(hooks, segs, bufs, dest, fds)
                    for i in range(n_batches):
                        a, b = i * batch_size, min(n, (i + 1) * batch_size)
                        if i < n_batches - 1 or not own_last:
                            parts = [buf[a:b] for buf in bufs]
                        else:
                            parts = tails if tails is not None else [buf[a:b].copy() for buf in bufs]
                        out = tuple(_to_torch(x, self.torch_dtype, device, dtype) for x in parts)
                        del parts
                        yield out if multi else out[0]
                        del out
                    del bufs, tails, dest
        finally:
            planner.close()
            _close(fds)

    def _fill_window(self, hooks: list[str], segs: list[tuple[dict, int, int, int]], bufs: list[np.ndarray],
                     dest: np.ndarray | None, fds: dict[Path, int]) -> None:
        """Read every segment ``(shard, a, b, window offset)`` of a window into ``bufs``.

        Without ``dest`` rows land at their window offset (one sequential read each); with
        ``dest`` a segment is read into a staging array that fits in the CPU cache and its
        rows are scattered to ``dest[offset : offset + len]``, each row moved as one opaque
        item (a ``void`` view: one ``memcpy`` per row).  Files are CRC-checked whole on first use and
        opened into ``fds`` (the caller closes them).
        """
        for buf, h in zip(bufs, hooks):
            rows = buf.view(np.dtype((np.void, buf.shape[1] * buf.itemsize))).reshape(-1)
            if dest is not None:
                stage = np.empty((max(b - a for _, a, b, _ in segs), buf.shape[1]), dtype=buf.dtype)
            for shard, a, b, off in segs:
                path, fd = self._open_verified(fds, shard, h)
                target = buf[off : off + b - a] if dest is None else stage[: b - a]
                _pread_full(fd, target, a * rows.itemsize, path)
                if dest is not None:
                    rows[dest[off : off + b - a]] = stage.view(rows.dtype).reshape(-1)[: b - a]

    def _open_verified(self, fds: dict[Path, int], shard: dict, hook: str) -> tuple[Path, int]:
        """The file of ``hook`` in ``shard``, CRC-checked on first use, opened once into ``fds``."""
        path, rec = self._file(shard, hook)
        fd = fds.get(path)
        if fd is None:
            self._check_crc(path, rec, lazy=True)
            fd = fds[path] = os.open(path, os.O_RDONLY)
        return path, fd

    def _fill_window_fast(self, hooks: list[str], segs: list[tuple[dict, int, int, int]], bufs: list[np.ndarray],
                          dest: np.ndarray, fds: dict[Path, int],
                          tails: list[np.ndarray] | None = None, cut: int = 0,
                          planner: wio._Planner | None = None) -> None:
        """:meth:`_fill_window` of a shuffled window in one pass: each segment is read by ``preadv`` with
        one ``iovec`` per row pointing at the row's slot ``dest[offset + i]`` in the window buffer,
        so the kernel copies every row from the page cache straight to its place (no staging
        copy, no Python per row).  With ``tails``, window rows ``[cut, cut + len(tails[j]))`` go
        to ``tails[j]`` instead (the window's last batch, handed out in its own array).  With a
        ``planner`` of 2+ threads, its helpers take shares of the ``preadv`` calls (every row has
        its own slot, so the shares never write the same bytes).  ``fds`` as there."""
        n = bufs[0].shape[0]
        if dest.shape != (n,) or (n and (int(dest.min()) < 0 or int(dest.max()) >= n)):
            raise RuntimeError(f"window destinations out of range for a window of {n} rows")  # a pointer guard
        for j, buf in enumerate(bufs):  # every address below must fall inside these arrays
            t = tails[j] if tails is not None else buf
            if (buf.shape[0] != n or not buf.flags.c_contiguous or not t.flags.c_contiguous
                    or t.shape[1:] != buf.shape[1:] or t.dtype != buf.dtype or cut + t.shape[0] > n):
                raise RuntimeError("window buffers must be C-contiguous, of the window's rows, with tails to match")
        if tails is not None:
            in_tail = np.flatnonzero((dest >= cut) & (dest < cut + tails[0].shape[0]))
        jobs = []  # (path, fd, iovec array, its address, row bytes, segment)
        for j, h in enumerate(hooks):
            buf = bufs[j]
            rb = buf.shape[1] * buf.itemsize
            iov = np.empty((n, 2), dtype=np.uint64)
            np.multiply(dest, rb, out=iov[:, 0], casting="unsafe")
            iov[:, 0] += np.uint64(buf.ctypes.data)
            if tails is not None:  # those rows' address: in the tail array instead
                shift = (tails[j].ctypes.data - buf.ctypes.data - cut * rb) % (1 << 64)  # wraps as uint64
                iov[in_tail, 0] += np.uint64(shift)
            iov[:, 1] = rb
            jobs += [(*self._open_verified(fds, shard, h), iov, iov.ctypes.data, rb, a, b, off)
                     for shard, a, b, off in segs]

        def run(part):  # one preadv per segment; the general loop only where it falls short
            for path, fd, iov, at, rb, a, b, off in part:
                if b - a > wio._IOV_MAX or wio._PREADV(fd, at + 16 * off, b - a, a * rb) != (b - a) * rb:
                    _preadv_rows(fd, iov[off : off + b - a], a * rb, path)  # from the start: same bytes

        (planner or wio._Planner(1)).split(run, jobs)  # no planner: an inline one (no threads)
