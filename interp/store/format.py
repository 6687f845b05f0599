"""On-disk layout of an activation store, its manifest, and the crash-safe write primitives.

Layout of a store directory ``DIR``::

    DIR/manifest.json                          the manifest (JSON, replaced atomically)
    DIR/shards/000000/blocks.0.hook_resid_post.bin   rows [0, S) of that hook: (rows, d) C-order
    DIR/shards/000000/tokens.bin               int32  (rows,)    token id of each row
    DIR/shards/000000/seq_pos.bin              int64  (rows, 2)  (sequence index, position) of each row
    DIR/shards/000001/...                      rows [S, 2S), and so on; the last shard may be shorter

Every ``.bin`` file is raw little-endian numbers with no header, so it can be memory-mapped
with ``np.memmap`` (or read with ``np.fromfile``) at any offset.  Activations are stored as
``float16``, ``float32`` or ``bfloat16`` (bf16 is kept on disk as ``uint16`` bit patterns and
viewed back as ``torch.bfloat16``).  Hooks whose activation per token is not a vector (e.g.
``blocks.0.attn.hook_z``: ``[n_heads, d_head]``) are flattened; the manifest keeps each hook's
``row_shape`` so a reader can reshape.

Size: ``n_rows * (sum_h d_h * bytes(dtype) + 4 + 16)`` bytes.  Example: SmolLM2-135M,
``blocks.*.hook_resid_post`` (30 hooks x d=576), fp16, 10M tokens -> 10M x (30 x 1152 + 20)
~= 346 GB; one hook alone is 11.5 GB, i.e. ~1.15 KB per token per hook.

Crash safety (the write protocol: :meth:`ShardWriter.publish_complete` + :func:`write_json_atomic`):

1. A shard is written into ``shards/.tmp-<index>-<pid>/``; each file is flushed and fsynced.
2. The temp directory is renamed to ``shards/<index>/`` (``rename`` is atomic) and the parent
   directory is fsynced: a shard directory exists only when complete.
3. The manifest is rewritten as ``manifest.json.tmp``, fsynced, and renamed over
   ``manifest.json``.  The manifest is the authority: a shard directory not listed in it (a
   crash between steps 2 and 3) is ignored by readers and rewritten on resume.

Integrity: the manifest holds each file's byte size and CRC-32.  Opening a store checks
sizes (cheap, catches truncation); the CRC of a shard file is checked on the first read of
that file in a process, and :meth:`ActivationStore.verify` checks every file.
"""

from __future__ import annotations

import errno
import json
import os
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SHARDS = "shards"
# the per-row metadata streams beside the hooks: dtype and width of a row
META = {"tokens": (np.dtype(np.int32), 1), "seq_pos": (np.dtype(np.int64), 2)}

# name -> (numpy storage dtype, torch dtype, bytes per element)
DTYPES = {
    "float16": (np.float16, torch.float16, 2),
    "bfloat16": (np.uint16, torch.bfloat16, 2),
    "float32": (np.float32, torch.float32, 4),
}
_ALIASES = {"fp16": "float16", "half": "float16", "bf16": "bfloat16", "fp32": "float32", "float": "float32"}


class StoreError(ValueError):
    """A store on disk is missing, incomplete, corrupt, or does not match the request."""


class CorruptShardError(StoreError):
    """A shard file's size or checksum does not match the manifest."""


def as_storage(t: torch.Tensor) -> np.ndarray:
    """A tensor in a storage dtype -> the array written to disk (bfloat16 as its 16-bit patterns)."""
    return (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy()


def canonical_dtype(dtype) -> str:
    """``fp16``/``half``/``torch.float16`` -> ``float16`` (and bf16, fp32); error on others."""
    name = _ALIASES.get(str(dtype), str(dtype).removeprefix("torch."))
    if name not in DTYPES:
        raise ValueError(f"unknown store dtype {dtype!r}; choose from float16 (fp16), bfloat16 (bf16), float32 (fp32)")
    return name


def stream_file(stream: str) -> str:
    """File name of a stream's rows (a hook's, or ``tokens`` / ``seq_pos``) inside a shard directory."""
    return f"{stream}.bin"


def shard_dirname(index: int) -> str:
    return f"{index:06d}"


def crc32_file(path: Path, chunk: int = 16 << 20) -> int:
    """CRC-32 of a file, read in chunks (never the whole file in memory)."""
    crc, buf = 0, memoryview(bytearray(chunk))
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            crc = zlib.crc32(buf[:n], crc)
    return crc


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


@contextmanager
def naming_full_disk(path: Path):
    """Re-raise a full disk (or file size limit) met while writing ``path`` as an ``OSError`` that
    names ``path`` and says how to resume; other errors pass unchanged."""
    try:
        yield
    except OSError as e:
        if e.errno not in DISK_FULL:
            raise
        what = "file size limit exceeded" if e.errno == errno.EFBIG else "no space left on device"
        raise OSError(e.errno, f"{what} while writing {path} ({e.strerror}). The store stays readable up "
                      "to its last complete shard; free space and rerun the same command to resume.") from e


def write_json_atomic(path: Path, payload: dict) -> None:
    """Write JSON to ``path`` via temp file + fsync + rename (+ fsync of the directory)."""
    path = Path(path)
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    try:
        with naming_full_disk(path), open(tmp, "w") as f:
            json.dump(payload, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def shard_record(d: dict) -> dict:
    """A manifest's record of one complete shard, checked: ``{"index", "row_start", "rows", "files"}``;
    the shard holds rows ``[row_start, row_start + rows)``, ``files`` maps a file name to its
    ``{"bytes", "crc32"}``."""
    try:
        files = {str(k): {"bytes": int(v["bytes"]), "crc32": int(v["crc32"])} for k, v in d["files"].items()}
        return {"index": int(d["index"]), "row_start": int(d["row_start"]), "rows": int(d["rows"]),
                "files": files}
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise StoreError(f"malformed shard record in manifest: {d!r} ({e})") from e


# Keys every manifest must have, with their JSON types (validated at the I/O boundary).
_REQUIRED = {
    "format_version": int, "model": str, "weight_hash": str, "hooks": list, "row_shapes": dict,
    "dtype": str, "context_length": int, "shard_rows": int, "n_rows_target": int, "shards": list,
    "complete": bool, "corpus": dict, "config": dict,
}


def read_json_object(path: Path, error: type[Exception] = ValueError) -> dict:
    """Parse ``path`` as a JSON object; ``error`` names the file for invalid JSON or a non-object."""
    try:
        obj = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise error(f"{path} is not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise error(f"{path}: expected a JSON object")
    return obj


def read_manifest(directory: Path) -> dict:
    """Load and validate ``DIR/manifest.json``; clear errors for a missing or malformed one."""
    path = Path(directory) / MANIFEST
    if not Path(directory).is_dir():
        raise FileNotFoundError(f"activation store {directory} does not exist")
    if not path.exists():
        raise FileNotFoundError(f"{directory} is not an activation store: {MANIFEST} is missing")
    m = read_json_object(path, StoreError)
    for key, typ in _REQUIRED.items():
        if key not in m:
            raise StoreError(f"{path}: manifest lacks the field {key!r}")
        if not isinstance(m[key], typ):
            raise StoreError(f"{path}: manifest field {key!r} should be {typ.__name__}, got {type(m[key]).__name__}")
    if m["format_version"] > FORMAT_VERSION:
        raise StoreError(f"{path}: store format {m['format_version']} is newer than this interp ({FORMAT_VERSION})")
    canonical_dtype(m["dtype"])
    m["shards"] = [shard_record(s) for s in m["shards"]]
    return m
