"""Store read throughput: shuffled training batches and streaming vs a raw sequential file read.

The store is ``--rows`` x ``--d`` fp16 rows of one hook (default 400k x 576 = 461 MB, the
width of SmolLM2-135M's residual stream), written with :func:`interp.store.write_store`
(content does not affect read speed), or an existing store given with ``--store``.

The baseline, ``raw_batches``, is what a training loop minimally needs: every byte of the
hook's files brought into user memory, in batch-sized pieces, in storage order -- a sequential
``readinto`` of each shard file into a fresh ``np.empty`` array of ``batch_size`` rows per read
(a real copy from the page cache, not a view; glibc hands back the block the previous batch
freed, so the destination stays in the CPU cache, as it does for a loop that drops each batch).

* ``raw_reuse``: the same files read whole into one reused file-sized buffer (a destination
  that does not stay in the cache; for scale only).
* ``shuffled_fp16`` / ``shuffled_fp32``: a later epoch of ``store.batches(hook, batch_size,
  shuffle=True)`` (storage dtype / cast to fp32) with the fast window fill (``fast=True``:
  kernel scatter, ``preadv`` with one ``iovec`` per row into its batch slot); ``*_ref``: the
  reference fill (``fast=False``: sequential read into a staging array + numpy scatter), which
  gives bit-identical batches.  The fast fill runs on ``INTERP_STORE_READ_THREADS`` threads
  (default 2: the window's ``preadv`` calls shared with a helper, the next window planned on
  another); ``shuffled_fp16_1thread``: all on the calling thread.  Each epoch is a new ``batches()`` call on one store object, which
  keeps its window buffer between calls (as the raw loop's malloc keeps its batch block).
  ``shuffled_1st``: the first epoch of a freshly opened store (includes the one-time CRC-32
  check of every file and the first touch of the window buffer).  ``stream_fp16``: ``store.stream``.
* ``raw_cold`` / ``shuffled_cold`` / ``shuffled_cold_1thread`` / ``shuffled_cold_ref``:
  ``raw_batches`` / ``shuffled_fp16`` (fast / fast on one thread / reference) after the store's files were dropped from the page cache
  (``posix_fadvise(POSIX_FADV_DONTNEED)`` on every file), so all read from the disk.
* ``--device cuda``: ``shuffled_fp16_to_device`` / ``shuffled_fp32_to_device`` (the store's batches on the GPU:
  pinned host batch, asynchronous copy, synchronised at the end of the epoch) and
  ``raw_batches_to_device`` (each raw batch pinned and copied), all against the host ``raw_batches``.
* ``--settings C/W,...``: ``shuffled_fp16`` (fast) with ``chunk_rows=C, buffer_rows=W``, with
  the mixing each gives, measured on an id-only store of the same row count: distinct chunks
  per batch, most rows of one chunk in a batch, and distinct ``--context``-row sequences per
  batch (rows of one sequence in one batch are the correlated ones; a full shuffle gives
  ~``batch_size`` distinct sequences).

Page-cache states.  How the files sit in the page cache changes the raw read up to ~3x: on the
bench machine (ext4, Linux 6.18) a sequential read of a file just written runs at ~17 GB/s, and
at ~6-8 GB/s after the cache was dropped and the file read back.  The folios differ (seen with
``/proc/self/pagemap`` + ``/proc/kpageflags`` on 4 shard files): as written, every page sits in
a large folio (~1.7 MiB on average); read back sequentially, 75% do (~36 KiB); read back by a
shuffled epoch (its ``WILLNEED`` readahead), 8% do, the rest are single 4 KiB pages -- and the
kernel's cost is per folio.  So the warm contenders run in three phases, each ``--repeats``
interleaved rounds:

* ``as_written``: the store as the writer left it in the cache (``as_found`` with ``--store``);
* ``reread_raw``: after dropping the files (``posix_fadvise(POSIX_FADV_DONTNEED)``) and reading
  them back with one sequential raw read;
* ``reread_shuffled``: after dropping them and reading them back with one shuffled epoch (the
  state a training run leaves).

The cold contenders run between the first two phases.  Throughput is bytes of the hook's rows
delivered per second, by wall clock and by process CPU time (user + system, all threads).  Per
phase the report gives each contender's best time and, against ``raw_batches`` of the same round
(run just before it), the paired per-round ratios (median, min, max): the best-of ratio pairs two
outliers, the paired median does not.  Target for ``shuffled_fp16``: >= 0.5 of ``raw_batches``
(paired median), in every warm phase.  Writes ``--out`` (JSON) with the command line in it.

    python bench/bench_store_read.py --repeats 5 --cold-repeats 2 --settings 1024/65536,1024/16384,256/16384
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_cache import machine  # noqa: E402
from interp.store import ActivationStore, write_store  # noqa: E402
from interp.store import window_io as wio  # noqa: E402


def mixing(n_rows: int, batch_size: int, chunk_rows: int, buffer_rows: int, context: int, tmp: Path) -> dict:
    """Mixing of the batches of full windows of one epoch of ``batches`` on an id-only store of ``n_rows``
    rows (shards as the bench store): distinct chunks per batch, the most rows of one chunk in a batch
    (max and mean over batches), distinct ``context``-row sequences per batch."""
    write_store(tmp / f"ids_{chunk_rows}_{buffer_rows}", {"id": lambda a, b: np.arange(a, b, dtype=np.float32)[:, None]},
                n_rows, dtype="float32", shard_rows=28672, chunk_rows=16384)
    s = ActivationStore.open(tmp / f"ids_{chunk_rows}_{buffer_rows}")
    chunks, top, seqs = [], [], []
    window = max(1, buffer_rows // batch_size) * batch_size
    n_full = n_rows // window * (window // batch_size)  # batches of full windows (the epoch's last is short)
    for i, b in enumerate(s.batches("id", batch_size, seed=0, chunk_rows=chunk_rows, buffer_rows=buffer_rows)):
        if i >= n_full:
            break
        ids = b[:, 0].long().numpy()
        ch = (ids // 28672) * 10**6 + (ids % 28672) // chunk_rows
        _, counts = np.unique(ch, return_counts=True)
        chunks.append(counts.size)
        top.append(int(counts.max()))
        seqs.append(np.unique(ids // context).size)
    return {"batches_measured": len(chunks), "chunks_per_batch": float(np.mean(chunks)),
            "max_rows_of_one_chunk": int(max(top)), "mean_max_rows_of_one_chunk": float(np.mean(top)),
            "sequences_per_batch": float(np.mean(seqs)), "rows_per_sequence": batch_size / float(np.mean(seqs))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", default=None, help="an existing store (default: write a synthetic one)")
    ap.add_argument("--hook", default=None)
    ap.add_argument("--rows", type=int, default=400_000)
    ap.add_argument("--d", type=int, default=576)
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cold-repeats", type=int, default=2)
    ap.add_argument("--settings", default="", help="chunk_rows/buffer_rows pairs to sweep, e.g. 1024/65536,256/16384")
    ap.add_argument("--context", type=int, default=128, help="sequence length assumed by the mixing measure")
    ap.add_argument("--device", default="cpu", help="also time batches delivered to this device (cuda)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_store_read.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = [tuple(int(x) for x in s.split("/")) for s in args.settings.split(",") if s]

    tmp = Path(tempfile.mkdtemp(prefix="bench_read_"))
    if args.store is None:
        rng = np.random.default_rng(0)
        block = rng.standard_normal((16384, args.d)).astype(np.float16)
        write_store(tmp / "s", {"blocks.0.hook_resid_post": lambda a, b: block[: b - a]}, args.rows,
                    dtype="float16", shard_rows=28672, chunk_rows=16384)
        path = tmp / "s"
    else:
        path = Path(args.store)
    store = ActivationStore.open(path)
    hook = args.hook or store.hooks[0]
    files = [store._file(s, hook)[0] for s in store.shards]
    nbytes = sum(f.stat().st_size for f in files)
    row_bytes = store.d(hook) * np.dtype(store._np_dtype).itemsize
    reuse_buf = bytearray(max(f.stat().st_size for f in files))

    def raw_reuse():
        for f in files:
            with open(f, "rb", buffering=0) as fh:
                view, got = memoryview(reuse_buf), 0
                while (n := fh.readinto(view[got:])):
                    got += n

    def raw_batches():
        got = 0
        for f in files:
            with open(f, "rb", buffering=0) as fh:
                while True:
                    a = np.empty(args.batch_size * row_bytes, dtype=np.uint8)
                    n = fh.readinto(a)  # one read of up to a batch: the bytes land in `a`
                    if not n:
                        break
                    got += n
        assert got == nbytes

    warm = ActivationStore.open(path)
    list(warm.batches(hook, args.batch_size))  # CRC of every file checked once here

    def timed(fn):
        def run():
            t, c = time.perf_counter(), time.process_time()
            fn()
            return time.perf_counter() - t, time.process_time() - c
        return run

    def shuffled_first_epoch():
        s = ActivationStore.open(path)  # fresh object: includes the first-read CRC check
        n = sum(b.shape[0] for b in s.batches(hook, args.batch_size, shuffle=True, seed=0, dtype=None))
        assert n == s.n_rows

    def shuffled(dtype, fast=True, chunk_rows=1024, buffer_rows=65536, threads=None, device=None):
        def run():
            saved = wio.READ_THREADS
            wio.READ_THREADS = saved if threads is None else threads
            try:
                n = sum(b.shape[0] for b in warm.batches(hook, args.batch_size, shuffle=True, seed=1, dtype=dtype,
                                                         fast=fast, chunk_rows=chunk_rows, buffer_rows=buffer_rows,
                                                         device=device))
                if device is not None and torch.device(device).type == "cuda":
                    torch.cuda.synchronize()  # the last copies are asynchronous
            finally:
                wio.READ_THREADS = saved
            assert n == warm.n_rows
        return run

    def stream():
        for _ in warm.stream(hook, args.batch_size, dtype=None):
            pass

    def drop_cache():
        for f in files:
            fd = os.open(f, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)

    def cold(fn):
        def run():
            drop_cache()
            return timed(fn)()
        return run

    contenders = {"raw_reuse": timed(raw_reuse), "raw_batches": timed(raw_batches),
                  "shuffled_1st": timed(shuffled_first_epoch),
                  "shuffled_fp16": timed(shuffled(None)), "shuffled_fp16_1thread": timed(shuffled(None, threads=1)),
                  "shuffled_fp16_ref": timed(shuffled(None, fast=False)),
                  "shuffled_fp32": timed(shuffled(torch.float32)),
                  "shuffled_fp32_ref": timed(shuffled(torch.float32, fast=False)), "stream_fp16": timed(stream)}
    if args.device != "cpu":  # the store's batches on the GPU vs the raw host read (and a raw read copied there)
        def raw_batches_to_device():
            for f in files:
                with open(f, "rb", buffering=0) as fh:
                    while True:
                        a = np.empty(args.batch_size * row_bytes, dtype=np.uint8)
                        n = fh.readinto(a)
                        if not n:
                            break
                        torch.from_numpy(a[:n]).pin_memory().to(args.device, non_blocking=True)
            torch.cuda.synchronize()

        contenders["raw_batches_to_device"] = timed(raw_batches_to_device)
        contenders["shuffled_fp16_to_device"] = timed(shuffled(None, device=args.device))
        contenders["shuffled_fp32_to_device"] = timed(shuffled(torch.float32, device=args.device))
    for c, w in settings:
        contenders[f"shuffled_fp16_c{c}_w{w}"] = timed(shuffled(None, chunk_rows=c, buffer_rows=w))
    cold_contenders = {"raw_cold": cold(raw_batches), "shuffled_cold": cold(shuffled(None)),
                       "shuffled_cold_1thread": cold(shuffled(None, threads=1)),
                       "shuffled_cold_ref": cold(shuffled(None, fast=False))}
    def phase(todo: dict, repeats: int) -> dict:
        """``repeats`` interleaved rounds of ``todo``: per-round seconds, best-of and paired ratios to raw_batches."""
        wall = {k: [] for k in todo}
        cpu = {k: [] for k in todo}
        load = [os.getloadavg()]
        for _ in range(repeats):
            for k, fn in todo.items():
                w, c = fn()
                wall[k].append(w)
                cpu[k].append(c)
            load.append(os.getloadavg())
        out = {"load_avg": load, "seconds": wall, "cpu_seconds": cpu,
               "seconds_best": {k: min(v) for k, v in wall.items()},
               "GB_per_s_best": {k: nbytes / min(v) / 1e9 for k, v in wall.items()}}
        ref = "raw_batches" if "raw_batches" in todo else "raw_cold"
        out["ratio_best"] = {k: min(wall[ref]) / min(v) for k, v in wall.items()}
        out["cpu_ratio_best"] = {k: min(cpu[ref]) / min(v) for k, v in cpu.items()}
        paired = {k: [r / x for r, x in zip(wall[ref], v)] for k, v in wall.items()}
        out["ratio_paired"] = {k: {"median": float(np.median(v)), "min": min(v), "max": max(v), "all": v}
                               for k, v in paired.items()}
        cpu_paired = {k: [r / x for r, x in zip(cpu[ref], v)] for k, v in cpu.items()}
        out["cpu_ratio_paired_median"] = {k: float(np.median(v)) for k, v in cpu_paired.items()}
        out["ratios_to"] = ref
        return out

    def reread(how):
        def run():
            drop_cache()
            how()
        return run

    first_state = "as_written" if args.store is None else "as_found"
    for fn in contenders.values():
        fn()  # warm-up (allocator, window buffer); the cache stays as it was found
    phases = {first_state: phase(contenders, args.repeats)}
    if args.cold_repeats:
        phases["cold"] = phase(cold_contenders, args.cold_repeats)
    for name, how in (("reread_raw", raw_batches), ("reread_shuffled", shuffled(None))):
        reread(how)()
        phases[name] = phase(contenders, args.repeats)
    warm_states = [k for k in phases if k != "cold"]
    summary = {k: {"paired_median": phases[k]["ratio_paired"]["shuffled_fp16"]["median"],
                   "paired_min": phases[k]["ratio_paired"]["shuffled_fp16"]["min"],
                   "paired_max": phases[k]["ratio_paired"]["shuffled_fp16"]["max"],
                   "best_of": phases[k]["ratio_best"]["shuffled_fp16"],
                   "cpu_paired_median": phases[k]["cpu_ratio_paired_median"]["shuffled_fp16"],
                   "one_thread_paired_median": phases[k]["ratio_paired"]["shuffled_fp16_1thread"]["median"],
                   "raw_batches_best_s": phases[k]["seconds_best"]["raw_batches"],
                   "shuffled_fp16_best_s": phases[k]["seconds_best"]["shuffled_fp16"]} for k in warm_states}
    if args.device != "cpu":
        for k in warm_states:
            rp = phases[k]["ratio_paired"]
            summary[k].update({f"{c}_paired_median": rp[c]["median"] for c in
                               ("raw_batches_to_device", "shuffled_fp16_to_device", "shuffled_fp32_to_device")})
    if "cold" in phases:
        c = phases["cold"]
        summary["cold"] = {"paired_median": c["ratio_paired"]["shuffled_cold"]["median"],
                           "paired_min": c["ratio_paired"]["shuffled_cold"]["min"],
                           "paired_max": c["ratio_paired"]["shuffled_cold"]["max"],
                           "best_of": c["ratio_best"]["shuffled_cold"],
                           "one_thread_paired_median": c["ratio_paired"]["shuffled_cold_1thread"]["median"],
                           "ref_paired_median": c["ratio_paired"]["shuffled_cold_ref"]["median"]}
    mix = {f"c{c}_w{w}": mixing(store.n_rows, args.batch_size, c, w, args.context, tmp)
           for c, w in [(1024, 65536), *[s for s in settings if s != (1024, 65536)]]}
    report = {"machine": machine(), "command": " ".join([sys.executable, *sys.argv]),
              "store": str(path), "rows": store.n_rows, "d": store.d(hook), "dtype": store.dtype,
              "bytes": nbytes, "n_files": len(files), "batch_size": args.batch_size, "repeats": args.repeats,
              "cold_repeats": args.cold_repeats,
              "reader": {"chunk_rows": 1024, "buffer_rows": 65536, "read_threads": wio.READ_THREADS,
                         "note": "batches() defaults unless named c*_w* (*_1thread: INTERP_STORE_READ_THREADS=1)"},
              "page_cache": {first_state: "as the writer left it" if args.store is None else "as found",
                             "cold": "files dropped (posix_fadvise DONTNEED) before each contender",
                             "reread_raw": "dropped, then read back by one sequential raw read",
                             "reread_shuffled": "dropped, then read back by one shuffled epoch"},
              "target": "shuffled_fp16 / raw_batches >= 0.5 (paired median) in every warm state",
              "target_met": all(summary[k]["paired_median"] >= 0.5 for k in warm_states),
              "shuffled_fp16_vs_raw": summary, "phases": phases, "mixing": mix, "context_for_mixing": args.context}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1, default=str) + "\n")
    if args.json:
        print(json.dumps(report, indent=1, default=str))
    else:
        m = report["machine"]
        print(f"machine: {m['cpu']} ({m['cores']} cores), torch {m['torch']} ({m['torch_threads']} threads), "
              f"numpy {m['numpy']}")
        print(f"store: {store.n_rows} rows x d={store.d(hook)} {store.dtype} = {nbytes / 1e6:.0f} MB in "
              f"{len(files)} shard files; batch {args.batch_size}; {args.repeats} rounds a phase "
              f"(cold: {args.cold_repeats})")
        for name, ph in phases.items():
            print(f"phase {name} ({report['page_cache'][name]}; load "
                  f"{', '.join(f'{x[0]:.1f}' for x in ph['load_avg'])}), ratios to {ph['ratios_to']}:")
            print(f"  {'':<26} {'best':>8} {'GB/s':>6} {'best':>5} {'paired median [min, max]':>25} {'CPU':>5}")
            for k in ph["seconds"]:
                pr = ph["ratio_paired"][k]
                print(f"  {k:<26} {ph['seconds_best'][k]:7.3f}s {ph['GB_per_s_best'][k]:6.2f} "
                      f"{ph['ratio_best'][k]:5.2f} {pr['median']:11.2f} [{pr['min']:.2f}, {pr['max']:.2f}] "
                      f"{ph['cpu_ratio_paired_median'][k]:10.2f}")
        for k, v in summary.items():
            print(f"  shuffled fp16 / raw, {k}: paired median {v['paired_median']:.2f} "
                  f"[{v['paired_min']:.2f}, {v['paired_max']:.2f}], best-of {v['best_of']:.2f}; one read thread: "
                  f"{v['one_thread_paired_median']:.2f}")
        print(f"  target (>= 0.5 in every warm state): {'met' if report['target_met'] else 'NOT met'}")
        for k, v in mix.items():
            print(f"  mixing {k}: {v['chunks_per_batch']:.0f} chunks per batch (at most {v['max_rows_of_one_chunk']} "
                  f"rows of one, {v['mean_max_rows_of_one_chunk']:.0f} on average), "
                  f"{v['sequences_per_batch']:.0f} {args.context}-row sequences per batch "
                  f"({v['rows_per_sequence']:.1f} rows each)")
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
