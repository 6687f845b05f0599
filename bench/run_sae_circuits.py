"""Discrete-SAE circuit identification (O'Neill & Bui 2024) on SmolLM2-135M vs activation-patching ground truth.

    python bench/run_sae_circuits.py --tasks ioi,greater-than --n 100 --n-patch 16 --seeds 5

For each task:
1. Ground truth: activation patching (denoising: clean head z into the corrupted run) of every
   attention head on the first ``--n-patch`` prompts; the ground-truth heads are the fewest heads
   whose |effect| sums to each share in ``--shares`` of the total |effect| over heads.
2. The method (``interp.circuits.sae_circuits``) on ``--n`` positive (clean) and ``--n`` negative
   (corrupted) prompts, with ``--seeds`` SAE seeds (each seed also redraws the 10 training
   prompts, as the reference's trials do); node and edge scores -> ROC-AUC and best F1.
3. Context, not part of the method: a difference-in-means baseline, score(head) =
   ||mean_pos(head output) - mean_neg(head output)||, on the same representations.

Wall times: activation patching as measured by ``activation_patching``; the method as
representations (2 forward passes) + SAE training + scoring of the first seed.  Both on the
same machine, in the same process, with ``--threads`` torch threads.

Writes ``bench/results/sae_circuits_smollm2.json`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _top(scores: torch.Tensor, k: int = 10) -> list[str]:
    H = scores.shape[1]
    idx = scores.flatten().argsort(descending=True)[:k].tolist()
    return [f"L{i // H}H{i % H}" for i in idx]


def run_task(model, name: str, args) -> dict:
    from interp.attribution import activation_patching
    from interp.circuits import sae_circuits as sc
    from interp.tasks import make_task

    task = make_task(name, model, n=max(args.n, args.n_patch), seed=args.task_seed)
    method_task = task.subset(slice(0, args.n))
    patch_task = task.subset(slice(0, args.n_patch))
    print(f"[{name}] patching {model.cfg.n_layers * model.cfg.n_heads} heads on {args.n_patch} prompts ...", flush=True)
    ap = activation_patching(model, patch_task, components=("attn_head",), progress=False)
    effects = ap.scores["attn_head"]
    print(f"[{name}] patching {ap.seconds:.1f} s; metric clean {ap.metric_clean:.3f} corrupt {ap.metric_corrupt:.3f}",
          flush=True)
    t0 = time.perf_counter()
    pos = sc.head_outputs(model, method_task.clean, args.batch)
    neg = sc.head_outputs(model, method_task.corrupt, args.batch)
    t_repr = time.perf_counter() - t0
    truths = {str(s): sc.ground_truth_heads(effects, s) for s in args.shares}
    dim = (pos.mean(0) - neg.mean(0)).norm(dim=-1)
    runs = []
    for seed in range(args.seeds):
        cfg = sc.SAECircuitConfig(seed=seed, n_train=args.n_train, epochs=args.epochs)
        r = sc.scores_from_outputs(pos, neg, cfg, t_repr=t_repr)
        ev = {s: {"node": sc.evaluate_scores(r.node_scores, t), "edge": sc.evaluate_scores(r.edge_scores, t)}
              for s, t in truths.items()}
        runs.append({"seed": seed, "seconds": r.seconds, "sae_loss": r.sae_loss, "eval": ev,
                     "top_node": _top(r.unique_codes.float()), "n_heads_with_unique_codes": int((r.unique_codes > 0).sum()),
                     "unique_codes": r.unique_codes.tolist(), "edge_votes": r.edge_votes.tolist()})
        print(f"[{name}] seed {seed}: " + "; ".join(
            f"share {s}: node AUC {e['node']['roc_auc']:.3f} F1 {e['node']['best_f1']:.3f}, edge AUC "
            f"{e['edge']['roc_auc']:.3f} F1 {e['edge']['best_f1']:.3f}" for s, e in ev.items())
            + f"; train {r.seconds['train']:.1f} s", flush=True)

    def agg(share, kind, key):
        v = torch.tensor([run["eval"][share][kind][key] for run in runs])
        return {"mean": float(v.mean()), "std": float(v.std(unbiased=False)), "values": v.tolist()}

    summary = {s: {"node_auc": agg(s, "node", "roc_auc"), "node_f1": agg(s, "node", "best_f1"),
                   "edge_auc": agg(s, "edge", "roc_auc"), "edge_f1": agg(s, "edge", "best_f1"),
                   "dim_baseline": sc.evaluate_scores(dim, t), "n_truth_heads": int(t.sum()),
                   "truth_heads": _top(t.float() + effects.abs() * 1e-9, int(t.sum()))}
               for s, t in truths.items()}
    return {
        "task": name, "n_method_prompts": args.n, "n_patch_prompts": args.n_patch, "seq_len": int(task.clean.shape[1]),
        "metric_clean": ap.metric_clean, "metric_corrupt": ap.metric_corrupt,
        "patching_seconds": ap.seconds, "method_seconds_seed0": runs[0]["seconds"],
        "patch_top_heads": _top(effects.abs()), "patch_effects": effects.tolist(), "summary": summary, "runs": runs,
    }


def main() -> None:
    from interp.results import versions
    from interp.models import load_model

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--tasks", default="ioi,greater-than")
    ap.add_argument("--n", type=int, default=100, help="positive (= negative) prompts for the method")
    ap.add_argument("--n-patch", type=int, default=16, help="prompts for the activation-patching ground truth")
    ap.add_argument("--n-train", type=int, default=10, help="prompts the SAE trains on")
    ap.add_argument("--epochs", type=int, default=500)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--shares", default="0.5,0.8", help="shares of total |patching effect| defining the truth")
    ap.add_argument("--task-seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "bench/results/sae_circuits_smollm2.json"))
    args = ap.parse_args()
    args.shares = [float(s) for s in args.shares.split(",")]
    torch.set_num_threads(args.threads)
    model = load_model(args.model, device="cpu")
    out = {"method": "discrete-SAE circuit identification (O'Neill & Bui 2024, arXiv 2405.12522)",
           "model": args.model, "config": vars(args), "versions": versions(),
           "cpu": platform.processor() or platform.machine(), "tasks": {}}
    for name in args.tasks.split(","):
        out["tasks"][name] = run_task(model, name, args)
        Path(args.out).write_text(json.dumps(out, indent=1))
    print(json.dumps({k: {"summary": v["summary"], "patching_seconds": v["patching_seconds"],
                          "method_seconds_seed0": v["method_seconds_seed0"]} for k, v in out["tasks"].items()},
                     indent=1))


if __name__ == "__main__":
    main()
