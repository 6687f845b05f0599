"""Store read throughput: shuffled training batches and streaming vs a raw sequential file read.

The store is ``--rows`` x ``--d`` fp16 rows of one hook (default 400k x 576 = 461 MB, the
width of SmolLM2-135M's residual stream), written with :func:`interp.store.write_store`
(content does not affect read speed), or an existing store given with ``--store``.

* ``raw_batches``: sequential ``readinto`` of every shard file into fresh batch-sized numpy
  arrays: a plain sequential read delivering the same batches (the issue's baseline).
* ``raw_reuse``: the same into one reused buffer: memcpy from the page cache, an upper bound.
* ``shuffled_1st``: ``store.batches(hook, batch_size, shuffle=True)`` on a freshly opened store,
  so the one-time CRC-32 check of every file is included; ``shuffled_fp16``/``fp32``: later
  epochs (storage dtype / cast to fp32).  ``stream``: ``store.stream(hook, batch_size)``.

Throughput is bytes of the hook's rows delivered per second; ratios are to ``raw_batches``
(target for shuffled batches: >= 0.5) and to ``raw_reuse``.  Files are in the page cache for every contender
(each is run once as warm-up), so this measures the reader's own cost.

    python bench/bench_store_read.py --rows 400000 --d 576 --batch-size 4096
"""

from __future__ import annotations

import argparse
import json
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
    ap.add_argument("--json", action="store_true")
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

    def raw_reuse():
        buf = bytearray(max(f.stat().st_size for f in files))
        t = time.perf_counter()
        for f in files:
            with open(f, "rb", buffering=0) as fh:
                view, got = memoryview(buf), 0
                while (n := fh.readinto(view[got:])):
                    got += n
        return time.perf_counter() - t

    def raw_batches():
        t = time.perf_counter()
        for f in files:
            with open(f, "rb", buffering=0) as fh:
                while True:
                    a = np.empty(args.batch_size * row_bytes, dtype=np.uint8)
                    n = fh.readinto(a)
                    if not n:
                        break
        return time.perf_counter() - t

    warm = ActivationStore.open(path)
    list(warm.batches(hook, args.batch_size))  # CRC of every file checked once here

    def shuffled_first_epoch():
        s = ActivationStore.open(path)  # fresh object: includes the first-read CRC check
        t = time.perf_counter()
        n = sum(b.shape[0] for b in s.batches(hook, args.batch_size, shuffle=True, seed=0, dtype=None))
        assert n == s.n_rows
        return time.perf_counter() - t

    def shuffled(dtype):
        def run():
            t = time.perf_counter()
            n = sum(b.shape[0] for b in warm.batches(hook, args.batch_size, shuffle=True, seed=1, dtype=dtype))
            assert n == warm.n_rows
            return time.perf_counter() - t
        return run

    def stream():
        t = time.perf_counter()
        for _ in warm.stream(hook, args.batch_size, dtype=None):
            pass
        return time.perf_counter() - t

    contenders = {"raw_reuse": raw_reuse, "raw_batches": raw_batches, "shuffled_1st": shuffled_first_epoch,
                  "shuffled_fp16": shuffled(None), "shuffled_fp32": shuffled(torch.float32), "stream_fp16": stream}
    for fn in contenders.values():
        fn()  # warm-up: page cache, allocator
    times = {k: [] for k in contenders}
    for _ in range(args.repeats):
        for k, fn in contenders.items():
            times[k].append(fn())
    best = {k: min(v) for k, v in times.items()}
    gbps = {k: nbytes / v / 1e9 for k, v in best.items()}
    ratios = {k: gbps[k] / gbps["raw_batches"] for k in contenders}
    report = {"machine": machine(), "store": str(path), "rows": store.n_rows, "d": store.d(hook),
              "bytes": nbytes, "batch_size": args.batch_size, "seconds_best": best, "GB_per_s": gbps,
              "ratio_vs_raw_batches": ratios,
              "ratio_vs_raw_reuse": {k: gbps[k] / gbps["raw_reuse"] for k in contenders}, "all_seconds": times}
    if args.json:
        print(json.dumps(report, indent=1, default=str))
    else:
        m = report["machine"]
        print(f"machine: {m['cpu']} ({m['cores']} cores, load {m['load_avg'][0]:.1f}), torch {m['torch']} "
              f"({m['torch_threads']} threads), numpy {m['numpy']}")
        print(f"store: {store.n_rows} rows x d={store.d(hook)} {store.dtype} = {nbytes / 1e6:.0f} MB in "
              f"{len(files)} shard files; batch {args.batch_size}; best of {args.repeats}; page cache warm")
        print("  raw_reuse: readinto one reused buffer (memcpy bound); raw_batches: sequential readinto fresh "
              "batch-sized arrays; shuffled_1st: first epoch of a fresh store object (CRC-32 checks included)")
        for k in contenders:
            print(f"  {k:<14} {best[k]:6.3f} s  {gbps[k]:6.2f} GB/s  {ratios[k]:.2f} of raw_batches, "
                  f"{report['ratio_vs_raw_reuse'][k]:.2f} of raw_reuse")
        print(f"  shuffled batches / raw sequential read (target >= 0.5): {ratios['shuffled_fp16']:.2f} "
              f"(first epoch with CRC: {ratios['shuffled_1st']:.2f})")
    if args.store is None:
        import shutil

        shutil.rmtree(path.parent, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
