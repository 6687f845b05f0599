"""The caching job: run a model over a corpus and write chosen hook points to a store.

Algorithm (:func:`cache_activations`):

1. Load the model, expand the hook patterns (:func:`interp.models.resolve_hooks`), check the
   context length against ``model.cfg.n_ctx``.
2. Probe: one forward pass on two 7-token prefixes with recording hooks gives each hook's
   per-token shape (hooks that are not ``[batch, pos, ...]`` are rejected) and the order in
   which the hooks fire; the last one to fire is the *stop hook*.
3. Write or check the manifest.  A directory holding a partial store written with the same
   model (weight hash), hooks, dtype, corpus, context length, batch size and shard size is
   resumed; any difference is an error naming the field.
4. Sequences come from :func:`interp.store.corpus.token_sequences` in a fixed order; batch
   ``i`` is always sequences ``[i*B, (i+1)*B)`` so that a resumed run computes exactly the
   same batches (same shapes, same floating-point results) as an uninterrupted one.  Only
   batches overlapping shards still to be written are run.
5. Each batch runs the TransformerBridge under ``torch.inference_mode`` with forward hooks on
   the requested hook points only.  A hook casts its ``[B, T, ...]`` activation to the store dtype and hands the
   rows to the :class:`~interp.store.writer.ShardWriter` (on CUDA: a non-blocking copy to a
   pinned buffer, written after the pass).  After the last needed hook an exception ends the
   pass, so later layers -- and the unembedding -- are never computed; caching
   ``blocks.*.hook_resid_post`` skips the final norm and the ``d_model x vocab`` unembed.
6. Complete shards are fsynced, renamed into place and recorded in the manifest.

On CPU, steps 5's file writes (page-cache copy and CRC-32) and step 6 run on one writer thread
(:class:`_AsyncWriter`, jobs in order, both release the GIL) while the next batch's forward
pass runs; a batch's rows are handed over as fresh arrays, and at most two batches wait in the
queue.  An error on that thread (a full disk) drops the jobs after it and is raised in the caller
once the failed job is the oldest waiting, or at the final flush.  On CUDA the writes of a batch
finish before the next pass reuses the pinned buffers.

Multi-process: under ``torch.distributed``, rank
``r`` writes shards ``k % world_size == r`` into the same directory and records them in
``progress-rank<r>.json``; at the end rank 0 merges them into the manifest.  The shards are
byte-identical to a single-process run's.

Memory: the model, up to three batches of activations for the requested hooks (one being
computed, two queued for the writer thread), nothing else.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import time
from collections import deque
from dataclasses import asdict
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from interp.results import versions

from .config import CacheConfig
from .corpus import CorpusError, load_corpus, token_sequences
from .format import DTYPES, FORMAT_VERSION, MANIFEST, StoreError, as_storage, read_manifest, write_json_atomic
from .writer import ShardWriter, clean_temp, commit_manifest

# Manifest fields that must agree for a run to resume a partial store.
IDENTITY_FIELDS = (
    "model", "weight_hash", "hooks", "dtype", "context_length", "batch_size", "shard_rows",
    "n_rows_target", "prepend_bos", "skip_bos", "corpus",
)


class _StopForward(Exception):
    """Raised by the last needed hook to end the forward pass early."""


def probe_hooks(model, hooks: list[str], tokens: torch.Tensor) -> tuple[list[str], dict[str, list[int]]]:
    """Firing order of ``hooks`` and each one's per-token shape, from one forward pass."""
    from interp.models import scoped_hooks

    shapes: dict[str, tuple] = {}  # in firing order

    def record(name, t, hook=None):
        shapes.setdefault(name, tuple(t.shape))
        if len(shapes) == len(hooks):
            raise _StopForward  # everything seen: skip the rest of the model

    with scoped_hooks(model, fwd=[(h, partial(record, h)) for h in hooks]), torch.inference_mode(), \
            contextlib.suppress(_StopForward):
        model(tokens, return_type=None)
    missing = [h for h in hooks if h not in shapes]
    if missing:
        raise ValueError(f"hook point(s) {missing} exist but did not fire in a forward pass of this model; "
                         "they cannot be cached")
    B, T = tokens.shape
    bad = {h: list(s) for h, s in shapes.items() if s[:2] != (B, T)}
    if bad:
        raise ValueError(
            f"hook(s) {bad} are not per-token activations [batch={B}, pos={T}, ...]: only hooks with one "
            "activation per token can be stored (e.g. hook_resid_post, attn.hook_z, mlp.hook_post)"
        )
    return list(shapes), {h: list(shapes[h][2:]) for h in hooks}


def _resume(directory: Path, header: dict, cfg: CacheConfig) -> None:
    """Take over the partial store's shards (and its shard size unless ``cfg`` names one); an error
    naming every field where it differs from this run."""
    old = read_manifest(directory)
    if cfg.shard_rows is None:
        header["shard_rows"] = old["shard_rows"]
    diffs = [f"{k}: store has {old.get(k)!r}, this run has {header.get(k)!r}"
             for k in IDENTITY_FIELDS if old.get(k) != header.get(k)]
    if diffs:
        raise StoreError(
            f"{directory} holds a store written with different settings, so it cannot be resumed: "
            + "; ".join(diffs) + ". Use another --out directory, or the settings of that store."
        )
    header["shards"], header["created"] = old["shards"], old["created"]


def cache_activations(cfg: CacheConfig, model=None, progress: bool = True):
    """Run the caching job described by ``cfg`` and return the :class:`ActivationStore`.

    Resumes when ``cfg.out`` holds a partial store with the same settings.  Each rank of an initialised
    ``torch.distributed`` group writes its share of the shards (one process: all of them).  ``model``: a
    model already loaded, used instead of loading ``cfg.model`` (on ``cfg.device``, in ``cfg.model_dtype``);
    the manifest records the model that ran (its name and weight hash).
    """
    from tqdm.auto import tqdm

    from interp.models import load_model, model_name, resolve_hooks, scoped_hooks, weight_hash

    from .reader import ActivationStore

    use_dist = dist.is_available() and dist.is_initialized()
    rank, world = (dist.get_rank(), dist.get_world_size()) if use_dist else (0, 1)
    barrier = dist.barrier if use_dist else lambda: None
    out = Path(cfg.out)
    if model is None:
        model = load_model(cfg.model, device=cfg.device, dtype=cfg.model_dtype)
    device = next(model.parameters()).device
    hooks = resolve_hooks(model, cfg.hooks)
    n_ctx = getattr(model.cfg, "n_ctx", None)
    if n_ctx is not None and cfg.context_length > n_ctx:
        raise ValueError(f"context_length={cfg.context_length} exceeds the model's context window n_ctx={n_ctx}")
    tokenizer = model.tokenizer
    corpus = load_corpus(cfg.corpus, cfg.text_field)
    C, B, rps = cfg.context_length, cfg.batch_size, cfg.rows_per_sequence
    n_rows = cfg.n_tokens
    n_seq = math.ceil(n_rows / rps)
    s_bos = int(cfg.skip_bos)

    # 2. probe shapes and firing order on the first (up to) two sequences
    seq_iter = token_sequences(corpus, tokenizer, C, cfg.prepend_bos)
    head = list(itertools.islice(seq_iter, 2))
    if not head:
        raise CorpusError(f"corpus {corpus.description} is too short for even one sequence of {C} tokens")
    # a short probe (7 positions: unlikely to equal a head count, so [B, H, T, T] hooks are told apart)
    probe_tokens = torch.tensor([s[:7] for s in head * (2 // len(head))], dtype=torch.long, device=device)
    order, row_shapes = probe_hooks(model, hooks, probe_tokens)
    stop_hook = order[-1]
    _, store_torch, nbytes = DTYPES[cfg.dtype]
    row_bytes = {h: int(np.prod(row_shapes[h])) * nbytes for h in hooks}

    # 3. manifest: new, or resume after an identity check
    header = {
        "format_version": FORMAT_VERSION, "model": model_name(model), "weight_hash": weight_hash(model),
        "model_dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "hooks": hooks, "row_shapes": row_shapes, "dtype": cfg.dtype, "context_length": C,
        "batch_size": B, "shard_rows": cfg.shard_rows or cfg.default_shard_rows(max(row_bytes.values())),
        "n_rows_target": n_rows, "prepend_bos": cfg.prepend_bos, "skip_bos": cfg.skip_bos,
        "bos_token_id": tokenizer.bos_token_id, "corpus": corpus.description,
        "config": asdict(cfg), "versions": versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "shards": [], "complete": False,
    }
    if rank == 0:
        if (out / MANIFEST).exists():
            _resume(out, header, cfg)
        elif out.exists() and any(out.iterdir()):
            raise FileExistsError(f"{out} exists, is not empty and holds no store manifest; choose another --out")
        out.mkdir(parents=True, exist_ok=True)
        clean_temp(out)
        commit_manifest(out, header)
    barrier()
    if rank != 0:
        _resume(out, header, cfg)
    shard_rows = header["shard_rows"]
    done = {s["index"] for s in header["shards"]}
    todo = {k for k in range(math.ceil(n_rows / shard_rows)) if k not in done and k % world == rank}
    shards = list(header["shards"])

    def on_shard(rec: dict) -> None:  # the manifest's shards are sorted by index when the run ends
        shards.append(rec)
        if world == 1:
            write_json_atomic(out / MANIFEST, {**header, "shards": shards})
        else:
            write_json_atomic(out / f"progress-rank{rank}.json",
                              {"rank": rank, "shards": [s for s in shards if s["index"] % world == rank]})
        bar.update(rec["rows"])

    writer = ShardWriter(out, row_bytes, shard_rows, n_rows, todo, on_shard)
    needed: set[int] = set()  # the batches that hold rows of shards still to write
    for a, e in map(writer.shard_range, todo):
        needed.update(range(a // rps // B, (e - 1) // rps // B + 1))
    on_cuda = device.type == "cuda"
    sink = _AsyncWriter(max_jobs=2 * (len(hooks) + 3))
    staged: dict[str, torch.Tensor] = {}  # on CUDA: pinned host buffers the hooks copy into
    finite: dict[str, torch.Tensor] = {}
    row0 = valid = 0  # the rows of the batch being run

    def on_rows(h: str, t, hook=None):
        rows = t[:, s_bos:].reshape(-1, row_bytes[h] // nbytes)[:valid]
        # a copy in any case: the writer thread reads it while the model goes on
        rows = rows.to(store_torch, memory_format=torch.contiguous_format, copy=not on_cuda)
        finite[h] = torch.isfinite(rows).all()  # checked after the pass (no sync here)
        if on_cuda:
            if h not in staged:  # the most rows a batch has: B * rps
                staged[h] = torch.empty((B * rps, rows.shape[1]), dtype=store_torch, pin_memory=True)
            staged[h][: rows.shape[0]].copy_(rows, non_blocking=True)
        else:
            sink.submit(writer.write, h, row0, as_storage(rows))
        if h == stop_hook:
            raise _StopForward

    def run_batch(batch: list[list[int]], seq0: int) -> None:
        """One forward pass over sequences ``seq0...``: the rows of every hook (on CUDA from ``staged``),
        tokens and positions to the writer, then publish the shards completed."""
        nonlocal row0, valid
        tokens = torch.tensor(batch, dtype=torch.long)
        row0, valid = seq0 * rps, min(len(batch) * rps, n_rows - seq0 * rps)
        finite.clear()
        with contextlib.suppress(_StopForward):  # the last needed hook ends the pass
            model(tokens.to(device), return_type=None)
        bad = [h for h, ok in finite.items() if not bool(ok)]
        if bad:  # the open shards holding these rows are deleted by the caller's abort
            raise ValueError(
                f"non-finite activations (NaN or inf) at {bad} in rows [{row0}, {row0 + valid}) (sequences "
                f"{seq0}..{seq0 + len(batch) - 1}) when stored as {cfg.dtype}; nothing from this batch was "
                "kept. inf after an fp16 cast means the values exceed 65504: cache with --dtype bf16 or "
                "fp32; NaN/inf in the model itself means broken weights or an overflowing model dtype")
        if on_cuda:
            torch.cuda.current_stream(device).synchronize()
            for h, buf in staged.items():
                sink.submit(writer.write, h, row0, as_storage(buf[:valid]))
        pos = torch.arange(s_bos, C).repeat(len(batch))
        seq = torch.arange(seq0, seq0 + len(batch)).repeat_interleave(rps)
        sink.submit(writer.write, "tokens", row0, tokens[:, s_bos:].reshape(-1)[:valid].int().numpy())
        sink.submit(writer.write, "seq_pos", row0, torch.stack([seq, pos], 1)[:valid].numpy())
        sink.submit(writer.publish_complete)
        if on_cuda:  # the pinned buffers are reused by the next batch
            sink.flush()

    bar = tqdm(total=sum(e - a for a, e in map(writer.shard_range, todo)), unit="tok", dynamic_ncols=True,
               desc=f"caching {len(hooks)} hook(s)", disable=not progress or rank != 0 or not todo)
    t0 = time.perf_counter()
    seqs = itertools.islice(itertools.chain(head, seq_iter), n_seq)
    try:
        with scoped_hooks(model, fwd=[(h, partial(on_rows, h)) for h in hooks]), torch.inference_mode():
            for i in range(max(needed, default=-1) + 1):  # batch i is always sequences [iB, (i+1)B)
                batch = list(itertools.islice(seqs, B))
                if len(batch) < min(B, n_seq - i * B):
                    raise CorpusError(
                        f"corpus {corpus.description} yields only {i * B + len(batch)} sequences of {C} "
                        f"tokens; n_tokens={n_rows} needs {n_seq}. Lower --n-tokens or use a larger corpus."
                    )
                if i in needed:
                    run_batch(batch, i * B)
        sink.flush()
    except BaseException:
        sink.close()
        writer.abort()
        raise
    finally:
        sink.close()
        bar.close()
    elapsed = time.perf_counter() - t0
    if writer.open:
        raise RuntimeError(f"internal error: shards {sorted(writer.open)} were left incomplete")

    barrier()
    if rank == 0:
        final = read_manifest(out)
        final["last_run"] = {"seconds": round(elapsed, 3), "world_size": world, "device": str(device),
                             "rows": n_rows - sum(s["rows"] for s in header["shards"])}  # by all ranks
        commit_manifest(out, final)
    barrier()
    return ActivationStore.open(out)


def _after(prev, fn, args) -> None:
    if prev is not None:
        prev.result()  # a job that raised fails every later one with its error: they are not run
    fn(*args)


class _AsyncWriter:
    """Run jobs (a :class:`ShardWriter`'s ``write`` and ``publish_complete``) in order on one thread.

    ``submit`` enqueues (the arrays must not change afterwards) and blocks while ``max_jobs`` jobs wait,
    so a slow disk holds the producer back.  An error on the thread is re-raised by a later
    ``submit`` (once the failed job is the oldest waiting) or by ``flush``; later jobs are dropped.
    """

    def __init__(self, max_jobs: int):
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="interp-shard-writer")
        self._jobs: deque[Future] = deque()
        self._max = max(2, max_jobs)

    def submit(self, fn, *args) -> None:
        if len(self._jobs) == self._max:
            self._jobs.popleft().result()
        self._jobs.append(self._pool.submit(_after, self._jobs[-1] if self._jobs else None, fn, args))

    def flush(self) -> None:
        """Wait for every queued job; raise the thread's error if one happened."""
        while self._jobs:
            self._jobs.popleft().result()

    def close(self) -> None:
        """Finish queued jobs and stop the thread (idempotent; errors are kept for :meth:`flush`)."""
        self._pool.shutdown(wait=True)
