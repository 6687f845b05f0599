"""Crash-safe shard writer: rows arrive in order, shards appear only when complete.

:class:`ShardWriter` owns a set of shard indices of a store (all of them for a single
process, ``k % world_size == rank`` for one rank of a multi-process job).  Callers hand it
rows of each stream (a hook, ``tokens`` or ``seq_pos``) tagged with their global row index,
in increasing order per stream; rows outside its shards are ignored.  Each open shard lives
in ``shards/.tmp-<index>-<pid>/`` with its files preallocated (``posix_fallocate``, so a
full disk fails at once with ENOSPC rather than later), and the CRC-32 of each file is
accumulated while writing.  `ShardWriter.publish_complete` fsyncs and publishes every
shard whose rows are all written (atomic directory rename, see :mod:`interp.store.format`)
and reports its record (:func:`~interp.store.format.shard_record`) to a callback that updates the manifest
(:func:`commit_manifest`: also folds in the per-rank progress files of a multi-process job).

Memory: nothing beyond the arrays handed in; data goes straight to the page cache.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import zlib
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .format import (
    DISK_FULL, DTYPES, FORMAT_VERSION, MANIFEST, META, SHARDS, StoreError, as_storage, canonical_dtype,
    fsync_dir, naming_full_disk, shard_dirname, shard_record, stream_file, write_json_atomic,
)


class _OpenShard:
    """A shard being written into its temp directory: per stream a preallocated file, the rows written
    and their CRC-32 so far."""

    def __init__(self, tmp: Path, index: int, start: int, rows: int, streams: dict[str, int]):
        self.tmp, self.index, self.start, self.rows, self.streams = tmp, index, start, rows, streams
        self.files, self.written, self.crc = {}, dict.fromkeys(streams, 0), dict.fromkeys(streams, 0)
        tmp.mkdir(parents=True, exist_ok=False)
        try:
            for stream, row_bytes in streams.items():
                f = self.files[stream] = open(tmp / stream_file(stream), "w+b", buffering=0)
                try:
                    os.posix_fallocate(f.fileno(), 0, rows * row_bytes)
                except OSError as e:
                    if e.errno in DISK_FULL:
                        raise
                    # filesystem without fallocate support: writes will report a full disk instead
        except BaseException:
            # close what was opened: a traceback kept alive (e.g. handed across the writer
            # thread) would otherwise hold the files open, and the filesystem busy
            self.close(sync=False)
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def write(self, stream: str, local_row: int, data: memoryview) -> None:
        if local_row != self.written[stream]:
            raise RuntimeError(
                f"shard {self.index} stream {stream}: rows must arrive in order "
                f"(expected row {self.start + self.written[stream]}, got {self.start + local_row})"
            )
        view = memoryview(data).cast("B")
        done = 0
        while done < len(view):
            done += self.files[stream].write(view[done:])
        self.crc[stream] = zlib.crc32(view, self.crc[stream])
        self.written[stream] += len(view) // self.streams[stream]

    def close(self, sync: bool) -> dict[str, dict]:
        for f in self.files.values():
            if sync:
                os.fsync(f.fileno())
            f.close()
        return {stream_file(s): {"bytes": self.rows * rb, "crc32": self.crc[s]}
                for s, rb in self.streams.items()}


class ShardWriter:
    """Write the shards ``todo`` of a store directory (see module docstring)."""

    def __init__(
        self,
        directory: str | Path,
        row_bytes: dict[str, int],
        shard_rows: int,
        n_rows: int,
        todo: set[int],
        on_shard: Callable[[dict], None],
    ):
        """``row_bytes``: hook name -> bytes per row (``tokens``/``seq_pos`` are added)."""
        self.dir = Path(directory)
        self.shard_rows, self.n_rows, self.todo, self.on_shard = shard_rows, n_rows, set(todo), on_shard
        self.streams = {**row_bytes, **{s: dt.itemsize * w for s, (dt, w) in META.items()}}  # bytes per row
        self.open: dict[int, _OpenShard] = {}
        (self.dir / SHARDS).mkdir(parents=True, exist_ok=True)

    def shard_range(self, k: int) -> tuple[int, int]:
        start = k * self.shard_rows
        return start, min(start + self.shard_rows, self.n_rows)

    def write(self, stream: str, row0: int, arr: np.ndarray) -> None:
        """Write rows ``[row0, row0 + len(arr))`` of ``stream`` (only those in this writer's shards)."""
        n = arr.shape[0]
        arr = np.ascontiguousarray(arr)
        rb = self.streams[stream]
        if arr.nbytes != n * rb:
            raise ValueError(f"stream {stream}: {arr.nbytes} bytes for {n} rows, not {rb} a row")
        for k in range(row0 // self.shard_rows, (row0 + n - 1) // self.shard_rows + 1):
            if k not in self.todo:
                continue
            start, end = self.shard_range(k)
            a, b = max(start, row0), min(end, row0 + n)
            tmp = self.dir / SHARDS / f".tmp-{shard_dirname(k)}-{os.getpid()}"
            with naming_full_disk(tmp):
                if k not in self.open:
                    shutil.rmtree(tmp, ignore_errors=True)
                    self.open[k] = _OpenShard(tmp, k, start, end - start, self.streams)
                self.open[k].write(stream, a - start, memoryview(arr[a - row0 : b - row0]))

    def publish_complete(self) -> None:
        """Fsync and publish every open shard whose rows are all written; report each to ``on_shard``."""
        for k, sh in sorted(self.open.items()):  # a list: the loop deletes from self.open
            if any(n != sh.rows for n in sh.written.values()):
                continue
            final = self.dir / SHARDS / shard_dirname(k)
            with naming_full_disk(sh.tmp):
                files = sh.close(sync=True)
                shutil.rmtree(final, ignore_errors=True)  # left by a crash before the manifest update
                fsync_dir(sh.tmp)
                os.rename(sh.tmp, final)
                fsync_dir(final.parent)
            del self.open[k]
            self.todo.discard(k)
            self.on_shard({"index": k, "row_start": sh.start, "rows": sh.rows, "files": files})

    def abort(self) -> None:
        """Close and delete every unfinished shard (frees the space they held)."""
        for sh in self.open.values():
            with contextlib.suppress(OSError):
                sh.close(sync=False)
            shutil.rmtree(sh.tmp, ignore_errors=True)
        self.open.clear()


def clean_temp(directory: str | Path) -> None:
    """Remove temp shard directories left by interrupted runs."""
    for p in (Path(directory) / SHARDS).glob(".tmp-*"):  # none when there is no shards/ yet
        shutil.rmtree(p, ignore_errors=True)


def commit_manifest(directory: Path, manifest: dict) -> None:
    """Fold the ``progress-rank*.json`` shard records into ``manifest`` (deduplicated by index), mark it
    complete when every shard is there, write it and remove the progress files."""
    recs = {s["index"]: s for s in manifest["shards"]}
    progress = sorted(directory.glob("progress-rank*.json"))
    for p in progress:
        try:
            for s in map(shard_record, json.loads(p.read_text())["shards"]):
                recs.setdefault(s["index"], s)
        except (KeyError, TypeError, ValueError) as e:  # invalid JSON and a bad shard record are ValueErrors
            raise StoreError(f"{p} is malformed ({e}); delete it to redo that rank's shards") from e
    manifest["shards"] = [recs[k] for k in sorted(recs)]
    manifest["complete"] = len(recs) == math.ceil(manifest["n_rows_target"] / manifest["shard_rows"])
    write_json_atomic(directory / MANIFEST, manifest)
    for p in progress:
        p.unlink()


def write_store(
    directory: str | Path,
    rows: dict[str, "Callable[[int, int], np.ndarray]"],
    n_rows: int,
    dtype: str = "float32",
    shard_rows: int = 65536,
    chunk_rows: int = 8192,
    tokens: "Callable[[int, int], np.ndarray] | None" = None,
) -> Path:
    """Write arrays that did not come from a caching job (e.g. SAE codes) as a store.

    ``rows[name](a, b)`` returns rows ``[a, b)`` of that stream as ``[b - a, d]`` (in the
    storage dtype's numpy type, ``uint16`` bit patterns for bfloat16, or any float array that
    is cast).  ``tokens(a, b)`` gives their token ids (default -1); positions are
    ``(row, 0)``.  The manifest's model is ``external``, its corpus ``{"kind": "external"}``.  The
    same crash-safe shard protocol as :func:`cache_activations` is used.
    """
    dtype = canonical_dtype(dtype)
    np_dt, torch_dt, nbytes = DTYPES[dtype]
    directory = Path(directory)
    probe = {h: np.asarray(fn(0, 1)) for h, fn in rows.items()}
    widths = {h: int(np.prod(a.shape[1:])) for h, a in probe.items()}
    manifest = {  # the fields a store must have (no tokenizer, model batches or BOS here)
        "format_version": FORMAT_VERSION, "model": "external", "weight_hash": "", "hooks": list(rows),
        "row_shapes": {h: list(a.shape[1:]) for h, a in probe.items()}, "dtype": dtype, "context_length": 1,
        "shard_rows": shard_rows, "n_rows_target": n_rows, "corpus": {"kind": "external"}, "config": {},
        "shards": [], "complete": False,
    }
    directory.mkdir(parents=True, exist_ok=True)
    commit_manifest(directory, manifest)

    def on_shard(rec: dict) -> None:
        manifest["shards"].append(rec)
        commit_manifest(directory, manifest)  # complete with the last shard

    n_shards = -(-n_rows // shard_rows)
    w = ShardWriter(directory, {h: widths[h] * nbytes for h in rows}, shard_rows, n_rows, set(range(n_shards)), on_shard)
    try:
        for a in range(0, n_rows, chunk_rows):
            b = min(n_rows, a + chunk_rows)
            for h, fn in rows.items():
                arr = np.asarray(fn(a, b)).reshape(b - a, widths[h])
                if arr.dtype != np_dt:  # cast through float32 (bfloat16: its bit patterns)
                    arr = as_storage(torch.from_numpy(arr.astype(np.float32)).to(torch_dt))
                w.write(h, a, arr)
            tok = tokens(a, b) if tokens else np.full(b - a, -1)
            w.write("tokens", a, np.asarray(tok, dtype=np.int32))
            w.write("seq_pos", a, np.stack([np.arange(a, b), np.zeros(b - a, dtype=np.int64)], 1))
            w.publish_complete()
    except BaseException:
        w.abort()
        raise
    return directory
