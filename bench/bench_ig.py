"""Benchmark: our batched IG vs captum's LayerIntegratedGradients (same steps, method, baseline).

Targets (issue 3): agreement to numerical tolerance, >= 3x faster than captum, and completeness
delta <= 2% of F(x) - F(baseline) at our default step count.  On IOI prompts with the corrupted
(ABC) prompt as the baseline, in one run:

1. ``hook_embed``: ours (fast path: last-position logits only; nothing before the hook to skip)
   vs captum (whole expanded batch at once, internal_batch_size=None, its fastest setting), same
   steps: the equal-steps speed-up.
2. A mid-layer hook (``--mid-hook``): captum's LayerIG cannot run there on a TransformerBridge
   (it swaps a steps*B layer output into a B-batch forward), so ours fast vs our plain reference
   path (``fast=False``: the full model per step, what captum computes) -- the prefix-replay gain.
3. Equal accuracy: the fewest Gauss-Legendre steps whose completeness delta is within the
   ``--steps`` run's, timed: a separate number, not the equal-steps speed-up.

    python bench/bench_ig.py [--model smollm2-135m] [--n 4] [--steps 32] [--mid-hook blocks.20.hook_resid_pre]

Writes bench/results/bench_ig.json with the machine, versions and load average.
"""

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch


def _time(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--mid-hook", default="blocks.20.hook_resid_pre")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_ig.json"))
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from interp.attribution.captum_ig import captum_layer_ig
    from interp.attribution.ig import DEFAULT_STEPS, layer_integrated_gradients
    from interp.circuits.pipeline import versions
    from interp.models import load_model
    from interp.tasks import ioi_task

    model = load_model(args.model, device="cpu" if not torch.cuda.is_available() else None)
    task = ioi_task(model, n=args.n)
    res = {"model": args.model, "n": task.n, "tokens": task.clean.shape[1], "steps": args.steps,
           "method": "gausslegendre", "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                                                  "torch_threads": torch.get_num_threads(),
                                                  "loadavg_start": open("/proc/loadavg").read().split()[:3]},
           "versions": versions()}
    print(f"{res['machine']}  {res['versions']}")
    print(f"IOI {task.n} prompts x {task.clean.shape[1]} tokens, {args.steps} steps gausslegendre")
    kw = dict(baseline=task.corrupt, steps=args.steps, method="gausslegendre", max_tokens=1 << 20)
    layer_integrated_gradients(model, task.clean[:1], task.subset([0]).metric, baseline=task.corrupt[:1], steps=2)
    captum_layer_ig(model, task.clean[:1], task.subset([0]).metric, baseline_tokens=task.corrupt[:1], steps=2)  # warm-up

    ours, t_ours = _time(lambda: layer_integrated_gradients(model, task.clean, task.metric, hook="hook_embed", **kw))
    ref, t_cap = _time(lambda: captum_layer_ig(model, task.clean, task.metric, hook="hook_embed",
                                               baseline_tokens=task.corrupt, steps=args.steps))
    diff = (ours.attributions - ref.attributions).abs().max().item()
    scale = ref.attributions.abs().max().item()
    res["hook_embed"] = {"ours_s": t_ours, "captum_s": t_cap, "speedup": t_cap / t_ours, "max_abs_diff": diff,
                         "max_abs_attr": scale, "ours_rel_delta": ours.relative_delta,
                         "captum_rel_delta": ref.relative_delta}
    print(f"hook_embed: ours {t_ours:.2f} s, captum {t_cap:.2f} s -> {t_cap / t_ours:.2f}x (target >= 3x); "
          f"max|diff| {diff:.2e} of max|attr| {scale:.2e}; rel. delta ours {ours.relative_delta:.4f} "
          f"captum {ref.relative_delta:.4f}")

    mid_fast, t_fast = _time(lambda: layer_integrated_gradients(model, task.clean, task.metric, hook=args.mid_hook, **kw))
    mid_ref, t_plain = _time(lambda: layer_integrated_gradients(model, task.clean, task.metric, hook=args.mid_hook,
                                                                fast=False, **kw))
    d = (mid_fast.attributions - mid_ref.attributions).abs().max().item()
    res["mid_hook"] = {"hook": args.mid_hook, "fast_s": t_fast, "plain_s": t_plain, "speedup": t_plain / t_fast,
                       "max_abs_diff": d, "rel_delta": mid_fast.relative_delta}
    print(f"{args.mid_hook}: fast {t_fast:.2f} s, plain (captum's algorithm) {t_plain:.2f} s -> "
          f"{t_plain / t_fast:.2f}x; max|diff| {d:.2e}; rel. delta {mid_fast.relative_delta:.4f}")

    target = max(ref.relative_delta, 1e-4)
    eq = None
    for s in (2, 4, 6, 8, 12, 16, 24, args.steps):
        r, t = _time(lambda: layer_integrated_gradients(model, task.clean, task.metric, hook="hook_embed",
                                                        **{**kw, "steps": s}))
        if r.relative_delta <= target or s == args.steps:
            eq = {"steps": s, "seconds": t, "rel_delta": r.relative_delta, "captum_steps": args.steps,
                  "captum_s": t_cap, "captum_rel_delta": ref.relative_delta, "speedup": t_cap / t}
            break
    res["equal_accuracy_hook_embed"] = eq
    print(f"equal accuracy at hook_embed: ours {eq['steps']} steps {eq['seconds']:.2f} s (rel. delta "
          f"{eq['rel_delta']:.4f}) vs captum {args.steps} steps {t_cap:.2f} s ({ref.relative_delta:.4f}) -> "
          f"{eq['speedup']:.2f}x")
    dflt, t_d = _time(lambda: layer_integrated_gradients(model, task.clean, task.metric, hook="hook_embed",
                                                         baseline=task.corrupt))
    res["default_steps"] = {"steps": DEFAULT_STEPS, "seconds": t_d, "rel_delta": dflt.relative_delta,
                            "per_prompt": (dflt.delta / (dflt.f_input - dflt.f_baseline)).abs().tolist()}
    print(f"default steps ({DEFAULT_STEPS}): {t_d:.2f} s, relative completeness delta {dflt.relative_delta:.4f} "
          f"(target <= 0.02)")
    res["machine"]["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))
    print("wrote", args.out)


if __name__ == "__main__":
    main()
