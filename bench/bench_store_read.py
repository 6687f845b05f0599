"""Store read throughput: shuffled training batches and streaming vs a raw sequential file read.

The store is ``--rows`` x ``--d`` fp16 rows of one hook (default 400k x 576 = 461 MB, the
width of SmolLM2-135M's residual stream), written with :func:`interp.store.write_store`
(content does not affect read speed), or an existing store given with ``--store``.

* ``raw_batches``: sequential ``readinto`` of every shard file into fresh batch-sized numpy
  arrays: a plain sequential read delivering the same bytes in batches (the issue's baseline).
* ``raw_reuse``: the same into one reused buffer: memcpy from the page cache, an upper bound.
* ``shuffled_1st``: ``store.batches(hook, batch_size, shuffle=True)`` on a freshly opened store,
  so the one-time CRC-32 check of every file is included; ``shuffled_fp16``/``fp32``: later
  epochs (storage dtype / cast to fp32).  ``stream``: ``store.stream(hook, batch_size)``.
* ``raw_cold`` / ``shuffled_cold``: ``raw_batches`` / ``shuffled_fp16`` after the store's files
  were dropped from the page cache (``posix_fadvise(POSIX_FADV_DONTNEED)`` on every file),
  so both read from the disk.

Page cache: warm for every contender but the ``_cold`` pair (each warm contender runs once as
warm-up), so the warm numbers measure the reader's own cost.  Throughput is bytes of the
hook's rows delivered per second, by wall clock and by process CPU time (user + system,
insensitive to other processes on a shared machine); ratios are to ``raw_batches`` (target
for shuffled batches: >= 0.5) and ``raw_cold``.  Contenders run interleaved ``--repeats``
times; the best time counts.  Writes ``--out`` (JSON).

    python bench/bench_store_read.py --rows 400000 --d 576 --batch-size 4096
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
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_store_read.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    if args.store is None:
        tmp = Path(tempfile.mkdtemp(prefix="bench_read_"))
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

    row_bytes = store.d(hook) * 2 if store.dtype != "float32" else store.d(hook) * 4

    reuse_buf = bytearray(max(f.stat().st_size for f in files))

    def raw_reuse():
        for f in files:
            with open(f, "rb", buffering=0) as fh:
                view, got = memoryview(reuse_buf), 0
                while (n := fh.readinto(view[got:])):
                    got += n

    def raw_batches():
        for f in files:
            with open(f, "rb", buffering=0) as fh:
                while True:
                    a = np.empty(args.batch_size * row_bytes, dtype=np.uint8)
                    n = fh.readinto(a)
                    if not n:
                        break

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

    def shuffled(dtype):
        def run():
            n = sum(b.shape[0] for b in warm.batches(hook, args.batch_size, shuffle=True, seed=1, dtype=dtype))
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
                  "shuffled_1st": timed(shuffled_first_epoch), "shuffled_fp16": timed(shuffled(None)),
                  "shuffled_fp32": timed(shuffled(torch.float32)), "stream_fp16": timed(stream)}
    cold_contenders = {"raw_cold": cold(raw_batches), "shuffled_cold": cold(shuffled(None))}
    for fn in contenders.values():
        fn()  # warm-up: page cache, allocator
    wall = {k: [] for k in [*contenders, *cold_contenders]}
    cpu = {k: [] for k in wall}
    for r in range(max(args.repeats, args.cold_repeats)):
        todo = {**(contenders if r < args.repeats else {}), **(cold_contenders if r < args.cold_repeats else {})}
        for k, fn in todo.items():
            w, c = fn()
            wall[k].append(w)
            cpu[k].append(c)
    best = {k: min(v) for k, v in wall.items() if v}
    best_cpu = {k: min(v) for k, v in cpu.items() if v}
    gbps = {k: nbytes / v / 1e9 for k, v in best.items()}
    ratios = {k: best["raw_batches"] / v for k, v in best.items()}
    cpu_ratios = {k: best_cpu["raw_batches"] / v for k, v in best_cpu.items()}
    report = {"machine": machine(), "store": str(path), "rows": store.n_rows, "d": store.d(hook), "dtype": store.dtype,
              "bytes": nbytes, "n_files": len(files), "batch_size": args.batch_size,
              "reader": {"chunk_rows": 1024, "buffer_rows": 65536, "note": "batches() defaults"},
              "page_cache": "warm for all but raw_cold/shuffled_cold (dropped by posix_fadvise DONTNEED before each)",
              "seconds_best": best, "cpu_seconds_best": best_cpu, "GB_per_s": gbps,
              "ratio_vs_raw_batches": ratios, "cpu_ratio_vs_raw_batches": cpu_ratios,
              "ratio_vs_raw_reuse": {k: best["raw_reuse"] / v for k, v in best.items()},
              "cold_ratio_shuffled_vs_raw": best["raw_cold"] / best["shuffled_cold"] if "raw_cold" in best else None,
              "all_seconds": wall, "all_cpu_seconds": cpu}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1, default=str) + "\n")
    if args.json:
        print(json.dumps(report, indent=1, default=str))
    else:
        m = report["machine"]
        print(f"machine: {m['cpu']} ({m['cores']} cores, load {m['load_avg'][0]:.1f}), torch {m['torch']} "
              f"({m['torch_threads']} threads), numpy {m['numpy']}")
        print(f"store: {store.n_rows} rows x d={store.d(hook)} {store.dtype} = {nbytes / 1e6:.0f} MB in "
              f"{len(files)} shard files; batch {args.batch_size}; best of {args.repeats} (cold: {args.cold_repeats})")
        print("  raw_reuse: readinto one reused buffer (memcpy bound); raw_batches: sequential readinto fresh "
              "batch-sized arrays; shuffled_1st: first epoch of a fresh store object (CRC-32 checks included); "
              "_cold: page cache dropped first")
        print(f"  {'':<14} {'wall':>8} {'GB/s':>7} {'vs raw':>7} {'CPU':>8} {'CPU vs raw':>10}")
        for k in best:
            print(f"  {k:<14} {best[k]:7.3f}s {gbps[k]:7.2f} {ratios[k]:7.2f} {best_cpu[k]:7.3f}s {cpu_ratios[k]:10.2f}")
        print(f"  shuffled batches / raw sequential read, page cache warm (target >= 0.5): wall "
              f"{ratios['shuffled_fp16']:.2f}, CPU {cpu_ratios['shuffled_fp16']:.2f}; "
              f"first epoch with CRC: {ratios['shuffled_1st']:.2f}")
        if report["cold_ratio_shuffled_vs_raw"] is not None:
            print(f"  both cold (from disk): shuffled / raw = {report['cold_ratio_shuffled_vs_raw']:.2f} (wall)")
    if args.store is None:
        import shutil

        shutil.rmtree(path.parent, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
