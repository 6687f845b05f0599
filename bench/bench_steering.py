"""Steering methods on SmolLM2-135M at equal next-token KL, both tasks; writes bench/results/steering_<task>.json.

    OMP_NUM_THREADS=1 python bench/bench_steering.py                # runs `interp steer compare` per task
    python bench/bench_steering.py --merge runs/steer_ioi runs/steer_feat_ioi --task ioi   # merge two runs

The settings are the ones the committed numbers used (sized for a loaded 2-core CPU): IOI 16 build / 16 eval
prompts, 4 new tokens; sentiment 16 build / 12 eval prompts, 10 new tokens; KL targets 0.1, 0.3, 1.0 nats;
layer n_layers // 2 = 15; GrAInS k = 3, 20 IG steps; SAE / SNMF dictionaries on 8000 corpus tokens.
Two method groups (mean_diff,grains and sae,snmf) can run as separate processes and be merged: the baseline is
deterministic, and the merge checks that both runs have the same one.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {"ioi": ["--n-eval", "16", "--n-new", "4"], "sentiment": ["--n-eval", "12", "--n-new", "10"]}


def merge(paths: list[Path]) -> dict:
    from interp.results import read_results

    runs = [read_results(p) for p in paths]  # a results.json or the run folder holding one
    out = runs[0]
    for r in runs[1:]:
        if r["model_hash"] != out["model_hash"] or r["task"] != out["task"]:
            raise ValueError("runs differ in model or task")
        if abs(r["baseline"]["success"] - out["baseline"]["success"]) > 1e-4:
            raise ValueError(f"runs differ in their unsteered baseline: {r['baseline']} vs {out['baseline']}")
        out["methods"].update(r["methods"])
        for e, f in zip(out["examples"], r["examples"]):
            e.update({k: v for k, v in f.items() if k not in ("prompt", "unsteered")})
        out["meta"].setdefault("merged_seconds", []).append(r["meta"].get("seconds"))
    out["config"]["methods"] = list(out["methods"])
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", default="ioi,sentiment")
    ap.add_argument("--methods", default="mean_diff,grains,sae,snmf")
    ap.add_argument("--merge", nargs="*", default=None, help="results folders to merge instead of running")
    ap.add_argument("--task", default=None, help="task of --merge")
    args = ap.parse_args()
    (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
    if args.merge:
        res = merge([Path(p) for p in args.merge])
        dest = ROOT / "bench" / "results" / f"steering_{args.task or res['task']}.json"
        dest.write_text(json.dumps(res, indent=1))
        print(f"wrote {dest}")
        from interp.steering import SteeringComparison

        c = SteeringComparison.from_json(res)
        c.report().write(ROOT / "runs" / f"steer_{c.task}_merged" / "report.html")
        print(c.summary())
        return 0
    for t in args.tasks.split(","):
        out = ROOT / "runs" / f"steer_bench_{t}"
        cmd = [sys.executable, "-m", "interp.cli.main", "steer", "compare", t, "--model", "smollm2-135m",
               "--methods", args.methods, "--n-tokens", "8000", *SETTINGS[t], "--out", str(out)]
        print(" ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
        (ROOT / "bench" / "results" / f"steering_{t}.json").write_text((out / "results.json").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
