"""Benchmark: our batched IG vs captum's LayerIntegratedGradients (same steps, method, baseline).

Targets (issue 3): agreement to numerical tolerance, >= 3x faster than captum, and completeness
delta <= 2% of F(x) - F(baseline) at our default step count.  Both run at ``hook_embed`` on IOI
prompts with the corrupted (ABC) prompt as the baseline; captum gets the whole expanded batch at
once (internal_batch_size=None), its fastest setting.

    python bench/bench_ig.py [--model smollm2-135m] [--n 4] [--steps 50]
"""

import argparse
import time

import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--hook", default="hook_embed")
    args = ap.parse_args()

    from interp.attribution.captum_ig import captum_layer_ig
    from interp.attribution.ig import DEFAULT_STEPS, layer_integrated_gradients
    from interp.circuits.pipeline import versions
    from interp.models import load_model
    from interp.tasks import ioi_task

    model = load_model(args.model, device="cpu" if not torch.cuda.is_available() else None)
    task = ioi_task(model, n=args.n)
    print(f"machine: {versions()}  load avg: {open('/proc/loadavg').read().split()[:3]}")
    print(f"IOI {task.n} prompts x {task.clean.shape[1]} tokens, hook {args.hook}, {args.steps} steps gausslegendre")
    kw = dict(hook=args.hook, steps=args.steps, method="gausslegendre")
    layer_integrated_gradients(model, task.clean[:1], task.subset([0]).metric, baseline=task.corrupt[:1], steps=2)  # warm-up
    t0 = time.perf_counter()
    ours = layer_integrated_gradients(model, task.clean, task.metric, baseline=task.corrupt, max_tokens=1 << 20, **kw)
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = captum_layer_ig(model, task.clean, task.metric, baseline_tokens=task.corrupt, **kw)
    t_cap = time.perf_counter() - t0
    diff = (ours.attributions - ref.attributions).abs().max().item()
    scale = ref.attributions.abs().max().item()
    print(f"ours   {t_ours:7.2f} s  relative completeness delta {ours.relative_delta:.4f}")
    print(f"captum {t_cap:7.2f} s  relative completeness delta {ref.relative_delta:.4f}")
    print(f"speed-up ours vs captum: {t_cap / t_ours:.2f}x (target >= 3x); max |diff| {diff:.2e} (max |attr| {scale:.2e})")
    t0 = time.perf_counter()
    d = layer_integrated_gradients(model, task.clean, task.metric, baseline=task.corrupt, hook=args.hook)
    print(f"default steps ({DEFAULT_STEPS}): {time.perf_counter() - t0:.2f} s, relative completeness delta "
          f"{d.relative_delta:.4f} (target <= 0.02); per prompt: {(d.delta / (d.f_input - d.f_baseline)).abs().tolist()}")


if __name__ == "__main__":
    main()
