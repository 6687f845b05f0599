"""Crash-safe shard writer: rows arrive in order, shards appear only when complete.

:class:`ShardWriter` owns a set of shard indices of a store (all of them for a single
process, ``k % world_size == rank`` for one rank of a multi-process job).  Callers hand it
rows of each stream (a hook, ``tokens`` or ``seq_pos``) tagged with their global row index,
in increasing order per stream; rows outside its shards are ignored.  Each open shard lives
in ``shards/.tmp-<index>-<pid>/`` with its files preallocated (``posix_fallocate``, so a
full disk fails at once with ENOSPC rather than later), and the CRC-32 of each file is
accumulated while writing.  `ShardWriter.publish_complete` fsyncs and publishes every
shard whose rows are all written (atomic directory rename, see :mod:`interp.store.format`)
and reports its :class:`ShardRecord` to a callback that updates the manifest.

Memory: nothing beyond the arrays handed in; data goes straight to the page cache.
"""

from __future__ import annotations

import os
import shutil
import zlib
from pathlib import Path
from typing import Callable

import numpy as np

from .format import SEQPOS_FILE, SHARDS, TOKENS_FILE, ShardRecord, disk_full_message, fsync_dir, hook_file, is_disk_full, shard_dirname


class _OpenShard:
    def __init__(self, tmp: Path, index: int, start: int, rows: int, streams: dict[str, tuple[str, int]]):
        self.tmp, self.index, self.start, self.rows = tmp, index, start, rows
        self.files, self.written, self.crc, self.row_bytes = {}, {}, {}, {}
        tmp.mkdir(parents=True, exist_ok=False)
        try:
            for stream, (fname, row_bytes) in streams.items():
                path = tmp / fname
                f = open(path, "w+b", buffering=0)
                self.files[stream] = (fname, f)
                try:
                    os.posix_fallocate(f.fileno(), 0, rows * row_bytes)
                except OSError as e:
                    if is_disk_full(e):
                        raise
                    # filesystem without fallocate support: writes will report a full disk instead
                self.written[stream], self.crc[stream], self.row_bytes[stream] = 0, 0, row_bytes
        except BaseException:
            # close what was opened: a traceback kept alive (e.g. handed across the writer
            # thread) would otherwise hold the files open, and the filesystem busy
            for _, f in self.files.values():
                f.close()
            raise

    def write(self, stream: str, local_row: int, data: memoryview) -> None:
        if local_row != self.written[stream]:
            raise RuntimeError(
                f"shard {self.index} stream {stream}: rows must arrive in order "
                f"(expected row {self.start + self.written[stream]}, got {self.start + local_row})"
            )
        fname, f = self.files[stream]
        view = memoryview(data).cast("B")
        done = 0
        while done < len(view):
            done += f.write(view[done:])
        self.crc[stream] = zlib.crc32(view, self.crc[stream])
        self.written[stream] += len(view) // self.row_bytes[stream]

    def complete(self) -> bool:
        return all(n == self.rows for n in self.written.values())

    def close(self, sync: bool) -> dict[str, dict]:
        files = {}
        for stream, (fname, f) in self.files.items():
            if sync:
                f.flush()
                os.fsync(f.fileno())
            f.close()
            files[fname] = {"bytes": self.rows * self.row_bytes[stream], "crc32": self.crc[stream]}
        return files


class ShardWriter:
    """Write the shards ``todo`` of a store directory (see module docstring)."""

    def __init__(
        self,
        directory: str | Path,
        row_bytes: dict[str, int],
        shard_rows: int,
        n_rows: int,
        todo: set[int],
        on_shard: Callable[[ShardRecord], None],
    ):
        """``row_bytes``: hook name -> bytes per row (``tokens``/``seq_pos`` are added)."""
        self.dir = Path(directory)
        self.shard_rows, self.n_rows, self.todo = shard_rows, n_rows, set(todo)
        self.on_shard = on_shard
        self.streams = {h: (hook_file(h), b) for h, b in row_bytes.items()}
        self.streams["tokens"] = (TOKENS_FILE, 4)
        self.streams["seq_pos"] = (SEQPOS_FILE, 16)
        self.open: dict[int, _OpenShard] = {}
        (self.dir / SHARDS).mkdir(parents=True, exist_ok=True)

    def shard_range(self, k: int) -> tuple[int, int]:
        start = k * self.shard_rows
        return start, min(start + self.shard_rows, self.n_rows)

    def _get(self, k: int) -> _OpenShard:
        sh = self.open.get(k)
        if sh is None:
            start, end = self.shard_range(k)
            tmp = self.dir / SHARDS / f".tmp-{shard_dirname(k)}-{os.getpid()}"
            if tmp.exists():
                shutil.rmtree(tmp)
            try:
                sh = _OpenShard(tmp, k, start, end - start, self.streams)
            except OSError as e:
                shutil.rmtree(tmp, ignore_errors=True)
                if is_disk_full(e):
                    raise OSError(e.errno, disk_full_message(tmp, e)) from e
                raise
            self.open[k] = sh
        return sh

    def write(self, stream: str, row0: int, arr: np.ndarray) -> None:
        """Write rows ``[row0, row0 + len(arr))`` of ``stream`` (only those in this writer's shards)."""
        n = arr.shape[0]
        if n == 0:
            return
        arr = np.ascontiguousarray(arr)
        per_row = arr.nbytes // n
        k0, k1 = row0 // self.shard_rows, (row0 + n - 1) // self.shard_rows
        for k in range(k0, k1 + 1):
            if k not in self.todo:
                continue
            start, end = self.shard_range(k)
            a, b = max(start, row0), min(end, row0 + n)
            sh = self._get(k)
            if sh.row_bytes[stream] != per_row:
                raise ValueError(f"stream {stream}: rows of {per_row} bytes, expected {sh.row_bytes[stream]}")
            try:
                sh.write(stream, a - start, memoryview(arr[a - row0 : b - row0]))
            except OSError as e:
                if is_disk_full(e):
                    raise OSError(e.errno, disk_full_message(sh.tmp / sh.files[stream][0], e)) from e
                raise

    def publish_complete(self) -> list[ShardRecord]:
        """Fsync and publish every open shard whose rows are all written."""
        done = []
        for k in sorted(self.open):
            sh = self.open[k]
            if not sh.complete():
                continue
            try:
                files = sh.close(sync=True)
                final = self.dir / SHARDS / shard_dirname(k)
                if final.exists():  # left by a crash before the manifest update: replace it
                    shutil.rmtree(final)
                fsync_dir(sh.tmp)
                os.rename(sh.tmp, final)
                fsync_dir(final.parent)
            except OSError as e:
                if is_disk_full(e):
                    raise OSError(e.errno, disk_full_message(sh.tmp, e)) from e
                raise
            del self.open[k]
            self.todo.discard(k)
            rec = ShardRecord(k, sh.start, sh.rows, files)
            self.on_shard(rec)
            done.append(rec)
        return done

    def abort(self) -> None:
        """Close and delete every unfinished shard (frees the space they held)."""
        for sh in self.open.values():
            try:
                sh.close(sync=False)
            except OSError:
                pass
            shutil.rmtree(sh.tmp, ignore_errors=True)
        self.open.clear()


def clean_temp(directory: str | Path) -> None:
    """Remove temp shard directories left by interrupted runs."""
    shards = Path(directory) / SHARDS
    if shards.is_dir():
        for p in shards.iterdir():
            if p.name.startswith(".tmp-"):
                shutil.rmtree(p, ignore_errors=True)


def write_store(
    directory: str | Path,
    rows: dict[str, "Callable[[int, int], np.ndarray]"],
    n_rows: int,
    dtype: str = "float32",
    shard_rows: int = 65536,
    chunk_rows: int = 8192,
    tokens: "Callable[[int, int], np.ndarray] | None" = None,
    description: dict | None = None,
) -> Path:
    """Write arrays that did not come from a caching job (e.g. SAE codes) as a store.

    ``rows[name](a, b)`` returns rows ``[a, b)`` of that stream as ``[b - a, d]`` (in the
    storage dtype's numpy type, ``uint16`` bit patterns for bfloat16, or any float array that
    is cast).  ``tokens(a, b)`` gives their token ids (default -1); positions are
    ``(row, 0)``.  ``description`` (default ``{"kind": "external"}``) is the manifest's corpus
    record, its ``"model"`` entry the manifest's model.  The same crash-safe shard protocol as
    :func:`cache_activations` is used.
    """
    from .format import DTYPES, FORMAT_VERSION, MANIFEST, canonical_dtype, write_json_atomic

    import torch

    dtype = canonical_dtype(dtype)
    np_dt, torch_dt, nbytes = DTYPES[dtype]
    directory = Path(directory)
    probe = {h: np.asarray(fn(0, 1)) for h, fn in rows.items()}
    widths = {h: int(np.prod(a.shape[1:])) for h, a in probe.items()}
    description = description or {"kind": "external"}
    manifest = {
        "format_version": FORMAT_VERSION, "model": description.get("model", "external"), "weight_hash": "",
        "hooks": list(rows),
        "row_shapes": {h: list(a.shape[1:]) for h, a in probe.items()}, "dtype": dtype, "context_length": 1,
        "batch_size": chunk_rows, "shard_rows": shard_rows, "n_rows_target": n_rows, "prepend_bos": False,
        "skip_bos": False, "bos_token_id": None, "corpus": description,
        "config": {}, "shards": [], "complete": False,
    }
    directory.mkdir(parents=True, exist_ok=True)
    write_json_atomic(directory / MANIFEST, manifest)

    def on_shard(rec: ShardRecord) -> None:
        manifest["shards"].append(rec.to_json())
        write_json_atomic(directory / MANIFEST, manifest)

    n_shards = -(-n_rows // shard_rows)
    w = ShardWriter(directory, {h: widths[h] * nbytes for h in rows}, shard_rows, n_rows, set(range(n_shards)), on_shard)
    try:
        for a in range(0, n_rows, chunk_rows):
            b = min(n_rows, a + chunk_rows)
            for h, fn in rows.items():
                arr = np.asarray(fn(a, b)).reshape(b - a, widths[h])
                if arr.dtype != np_dt:
                    arr = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).to(torch_dt)
                    arr = (arr.view(torch.int16) if torch_dt == torch.bfloat16 else arr).numpy()
                w.write(h, a, arr)
            tok = tokens(a, b) if tokens else np.full(b - a, -1)
            w.write("tokens", a, np.asarray(tok, dtype=np.int32))
            w.write("seq_pos", a, np.stack([np.arange(a, b), np.zeros(b - a, dtype=np.int64)], 1))
            w.publish_complete()
    except BaseException:
        w.abort()
        raise
    manifest["complete"] = True
    write_json_atomic(directory / MANIFEST, manifest)
    return directory
