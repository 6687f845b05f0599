"""Issue 14's bench ratios before and after, back to back in one run, same sizes, same interpreter.

Each bench script of each tree runs with ``PYTHONPATH`` at that tree (its own copy of the bench
script and of ``interp``), before then after, so the two sides of a row are seconds apart and
see about the same machine load; ``uptime`` is recorded around every run.  The noise of a ratio
is measured by running the after side of ``--noise`` benches ``--noise-repeats`` times more.

    git archive 17e6454 | tar -x -C /tmp/before      # where issue 14 started
    git archive HEAD | tar -x -C /tmp/after
    nice -n 5 python bench/issue14_before_after.py --before /tmp/before --after /tmp/after \
        --out bench/results/issue14_before_after.json

Sizes are small (the whole run is ~20 minutes on two shared cores); the ratios, not the
absolute times, are what the table in docs/benchmarks.md compares.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def get(d, path, default=None):
    for k in path.split("/"):
        if not isinstance(d, dict) or k not in d:
            return default
        d = d[k]
    return d


def _sae_ratio(d, other):
    r = get(d, "results") or {}
    a, b = get(r, "interp/tokens_per_s"), get(r, f"{other}/tokens_per_s")
    return a / b if a and b else None


# name -> (argv after the script, json file the script writes (relative to the tree or absolute), ratio extractors)
BENCHES = {
    "cache": (["bench/bench_cache.py", "--model", "smollm2-135m", "--n-tokens", "1024", "--context-length", "128",
               "--batch-size", "8", "--repeats", "2", "--saelens-python", "/nonexistent", "--out", "{tmp}/cache.json"],
              "{tmp}/cache.json",
              {"interp_total_vs_plain_bridge (tok/s ratio)": lambda d: get(d, "ratio_interp_total_vs_plain_bridge"),
               "interp_total_vs_plain_hf (tok/s ratio)": lambda d: get(d, "ratio_interp_total_vs_plain_hf"),
               "interp_total_vs_plain_bridge (CPU-time ratio)": lambda d: get(d, "cpu_ratio_interp_total_vs_plain_bridge")}),
    "store_read": (["bench/bench_store_read.py", "--rows", "100000", "--repeats", "3", "--cold-repeats", "1",
                    "--out", "{tmp}/store_read.json"],
                   "{tmp}/store_read.json",
                   {"shuffled_fp16/raw_batches as_written (paired median)": lambda d: get(d, "shuffled_fp16_vs_raw/as_written/paired_median"),
                    "shuffled_fp16/raw_batches reread_raw (paired median)": lambda d: get(d, "shuffled_fp16_vs_raw/reread_raw/paired_median"),
                    "shuffled_fp16/raw_cold (best of 1)": lambda d: get(d, "shuffled_fp16_vs_raw/cold/paired_median")}),
    "ig": (["bench/bench_ig.py", "--model", "smollm2-135m", "--n", "2", "--steps", "16", "--repeat", "2",
            "--threads", "2", "--mid-hook", "blocks.15.hook_resid_pre", "--skip-equal-accuracy", "--out", "{tmp}/ig.json"],
           "{tmp}/ig.json",
           {"captum/ours hook_embed (speed-up)": lambda d: get(d, "hook_embed/speedup"),
            "captum/ours hook_embed, process-CPU time": lambda d: get(d, "hook_embed/cpu_ratios/captum_over_ours"),
            "captum/ours blocks.15, process-CPU time": lambda d: get(d, "hook_embed/cpu_ratios/mid_captum_over_ours"),
            "captum/ours blocks.15.hook_resid_pre (speed-up)": lambda d: get(d, "mid_hook/speedup_vs_captum"),
            "path at hook_embed": lambda d: get(d, "hook_embed/ours_path")}),
    "attribution": (["bench/bench_attribution.py", "--model", "smollm2-135m", "--n", "4", "--repeats", "2",
                     "--json", "{tmp}/attribution.json"],
                    "{tmp}/attribution.json",
                    {"RelP(default)/AtP time": lambda d: get(d, "rows/relp(default)/seconds") / get(d, "rows/atp/seconds"),
                     "RelP(default+cp-lrp)/AtP time": lambda d: get(d, "rows/relp(all)/seconds") / get(d, "rows/atp/seconds")}),
    "sae_train": (["bench/bench_sae_train.py", "--rows", "16384", "--held", "2048", "--batch", "2048", "--steps", "20",
                   "--threads", "2", "--saelens-python", "/nonexistent"],
                  "runs/bench_sae_train.json",
                  {"interp/plain-pytorch (tok/s)": lambda d: _sae_ratio(d, "plain-pytorch"),
                   "interp/interp-dense reference (tok/s)": lambda d: _sae_ratio(d, "interp-dense")}),
}


# RelP vs AtP by one timing script for both trees (the API it calls is the same at both commits):
# wall and process-CPU seconds per call, interleaved rounds; CPU time is far less sensitive to the
# other jobs on the machine than wall time (bench_attribution.py records wall time only).
RELP_ATP = r"""
import json, sys, time, torch
from interp.attribution import attribution_patching, relevance_patching
from interp.models import load_model
from interp.tasks import ioi_task
torch.set_num_threads(1)
n, rounds, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
model = load_model("smollm2-135m", device="cpu")
task = ioi_task(model, n=n, seed=0)
comps = ("attn_head", "mlp")
runs = {"atp": lambda: attribution_patching(model, task, comps),
        "relp_default": lambda: relevance_patching(model, task, comps, rules="default"),
        "relp_all": lambda: relevance_patching(model, task, comps, rules=ALL)}
from interp.attribution.lrp_rules import RULE_SETS
ALL = "default+cp-lrp" if "default+cp-lrp" in RULE_SETS else "all"  # the name of the full rule set at 17e6454: "all"
for fn in runs.values():
    fn()  # warm-up
wall, cpu = {k: [] for k in runs}, {k: [] for k in runs}
for _ in range(rounds):
    for k, fn in runs.items():
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall[k].append(time.perf_counter() - t)
        cpu[k].append(time.process_time() - c)
res = {"n": n, "rounds": rounds, "threads": 1, "wall": wall, "cpu": cpu}
for k in ("relp_default", "relp_all"):
    res[f"{k}_over_atp_wall_best"] = min(wall[k]) / min(wall["atp"])
    res[f"{k}_over_atp_cpu_best"] = min(cpu[k]) / min(cpu["atp"])
json.dump(res, open(out, "w"), indent=1)
print(json.dumps({k: v for k, v in res.items() if k.endswith("best")}))
"""
BENCHES["relp_atp"] = (["-c", RELP_ATP, "4", "4", "{tmp}/relp_atp.json"], "{tmp}/relp_atp.json",
                       {"RelP(default)/AtP process-CPU time (best of 4)": lambda d: d["relp_default_over_atp_cpu_best"],
                        "RelP(default+cp-lrp)/AtP process-CPU time": lambda d: d["relp_all_over_atp_cpu_best"],
                        "RelP(default)/AtP wall time (best of 4)": lambda d: d["relp_default_over_atp_wall_best"]})


# SAE training vs the plain PyTorch loop in process-CPU time, each tree's own bench_sae_train.py functions
# (run_interp switches that tree's sparse kernels on its own way), interleaved rounds, one thread.
SAE_CPU = r"""
import argparse, json, sys, time, torch
sys.path.insert(0, "bench")
import bench_sae_train as b
torch.set_num_threads(1)
rounds, out = int(sys.argv[1]), sys.argv[2]
args = argparse.Namespace(store=None, hook="blocks.15.hook_resid_post", rows=16384, held=2048, expansion=8, k=32,
                          batch=2048, steps=20, threads=1, device="cpu")
train, held = b.load_rows(args)
runs = {"interp": lambda: b.run_interp(train, held, args, True), "plain": lambda: b.run_plain(train, held, args)}
wall, cpu, fvu = {k: [] for k in runs}, {k: [] for k in runs}, {}
for _ in range(rounds):
    for k, fn in runs.items():
        t, c = time.perf_counter(), time.process_time()
        r = fn()
        wall[k].append(time.perf_counter() - t)
        cpu[k].append(time.process_time() - c)
        fvu[k] = r["fvu"]
res = {"rows": 16384, "d": 576, "d_sae": 4608, "k": 32, "batch": 2048, "steps": 20, "threads": 1, "rounds": rounds,
       "wall": wall, "cpu": cpu, "held_fvu": fvu,
       "plain_over_interp_cpu_best": min(cpu["plain"]) / min(cpu["interp"]),
       "plain_over_interp_wall_best": min(wall["plain"]) / min(wall["interp"])}
json.dump(res, open(out, "w"), indent=1)
print(json.dumps({k: v for k, v in res.items() if k.endswith("best")}))
"""
BENCHES["sae_cpu"] = (["-c", SAE_CPU, "3", "{tmp}/sae_cpu.json"], "{tmp}/sae_cpu.json",
                      {"interp/plain-pytorch, process-CPU time (best of 3; includes held-out eval)":
                           lambda d: d["plain_over_interp_cpu_best"],
                       "interp/plain-pytorch, wall (best of 3)": lambda d: d["plain_over_interp_wall_best"]})


BENCHES["ig_repeat"] = BENCHES["ig"]  # the same pair again, later in the run (another machine load)


def run_one(tree: Path, name: str, tmp: Path, python: str) -> dict:
    argv, out, extract = BENCHES[name]
    argv = [a.replace("{tmp}", str(tmp)) for a in argv]
    out_path = Path(out.replace("{tmp}", str(tmp)))
    out_path = out_path if out_path.is_absolute() else tree / out_path
    out_path.unlink(missing_ok=True)
    env = dict(os.environ, PYTHONPATH=str(tree), PYTHONUNBUFFERED="1")
    env.pop("INTERP_REFERENCE", None)
    shown = [a if len(a) < 200 else "<RELP_ATP script>" for a in argv]
    rec = {"tree": str(tree), "command": " ".join([python, *shown]), "uptime_start": uptime(),
           "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    t0 = time.perf_counter()
    p = subprocess.run([python, *argv], cwd=tree, env=env, capture_output=True, text=True)
    rec.update(wall_s=round(time.perf_counter() - t0, 1), rc=p.returncode, uptime_end=uptime(),
               stdout_tail=p.stdout[-3000:], stderr_tail=p.stderr[-2000:] if p.returncode else "")
    if p.returncode == 0 and out_path.exists():
        rec["raw"] = json.loads(out_path.read_text())
        ratios = {}
        for k, f in extract.items():
            try:
                ratios[k] = f(rec["raw"])
            except Exception as e:  # a key the older script does not write
                ratios[k] = f"n/a ({type(e).__name__})"
        rec["ratios"] = ratios
    print(f"[{name}] {tree}: rc={p.returncode} {rec['wall_s']}s {rec.get('ratios')}", flush=True)
    return rec


def _load(rec: dict) -> str:
    up = rec.get("uptime_start", "")
    return up.split("load average:")[-1].split(",")[0].strip() if "load average" in up else "?"


def _fmt(v) -> str:
    return f"{v:.2f}" if isinstance(v, (int, float)) else "-" if v is None else str(v)


def _ratios(name: str, rec: dict) -> dict:
    """The ratios of a run, recomputed from its raw JSON where kept (so extractors added later apply)."""
    if "raw" not in rec:
        return rec.get("ratios") or {}
    out = {}
    for k, f in BENCHES[name][2].items():
        try:
            out[k] = f(rec["raw"])
        except Exception as e:
            out[k] = f"n/a ({type(e).__name__})"
    return out


def table(res: dict) -> str:
    """The Markdown table of docs/benchmarks.md: one row per ratio, before and after, the 1-minute load
    average at the start of each run, and the after side's repeats (the noise)."""
    lines = ["| bench | ratio | before (17e6454) | after | load before / after | after, repeated |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name, b in res["benches"].items():
        before, after = _ratios(name, b["before"]), _ratios(name, b["after"])
        reps = [r.get("ratios") or {} for r in res.get("noise", {}).get(name, [])]
        for key in after or before:
            again = ", ".join(_fmt(r.get(key)) for r in reps) or "-"
            lines.append(f"| {name} | {key} | {_fmt(before.get(key, 'failed'))} | {_fmt(after.get(key))} | "
                         f"{_load(b['before'])} / {_load(b['after'])} | {again} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", required=True)
    ap.add_argument("--after", required=True)
    ap.add_argument("--before-commit", default="17e6454")
    ap.add_argument("--after-commit", default="")
    ap.add_argument("--benches", default=",".join(BENCHES))
    ap.add_argument("--merge", action="store_true", help="add to an existing --out instead of starting anew")
    ap.add_argument("--noise", default="sae_train,ig", help="benches whose after side runs --noise-repeats more times")
    ap.add_argument("--noise-repeats", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "issue14_before_after.json"))
    ap.add_argument("--table", action="store_true", help="only print the Markdown table of --out")
    args = ap.parse_args(argv)
    if args.table:
        print(table(json.loads(Path(args.out).read_text())))
        return 0
    python = sys.executable
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / "issue14_ba"
    tmp.mkdir(parents=True, exist_ok=True)
    res = {"before": {"tree": args.before, "commit": args.before_commit},
           "after": {"tree": args.after, "commit": args.after_commit},
           "python": python, "cores": os.cpu_count(), "benches": {}, "noise": {}}
    out = Path(args.out)
    if args.merge and out.exists():
        old = json.loads(out.read_text())
        old["benches"].update(res["benches"])
        res["benches"], res["noise"] = old["benches"], old.get("noise", {})
    for name in filter(None, args.benches.split(",")):
        res["benches"][name] = {"before": run_one(Path(args.before), name, tmp, python),
                                "after": run_one(Path(args.after), name, tmp, python)}
        out.write_text(json.dumps(res, indent=1))
    for name in filter(None, args.noise.split(",")):
        reps = [run_one(Path(args.after), name, tmp, python) for _ in range(args.noise_repeats)]
        res["noise"][name] = [{k: r.get(k) for k in ("ratios", "uptime_start", "uptime_end", "wall_s", "rc")} for r in reps]
        out.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
