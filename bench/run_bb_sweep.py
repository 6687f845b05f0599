"""Sweep training settings of the Bigram-Backcopy toy and track the mechanism during training.

For each setting, trains with :func:`interp.toy.bigram_backcopy.bb_training` (``train_bb``'s loop)
(in memory, no checkpoints) and every ``--every`` steps measures, per layer, on 64 held-out
sequences with plain Hugging Face forward hooks (not the bridge, for speed):

* sink: mean attention to ⟨s⟩ at non-trigger queries q >= 1, and attention to q-1 at triggers;
* value drain: ‖v(⟨s⟩)‖ / mean_{i>=1} ‖v(i)‖;
* residual peak: ‖h^ℓ(⟨s⟩)‖ / mean_{i>=1} ‖h^ℓ(i)‖ and / max_{i>=1} (block output, before ln_f);
* massive ratio: top-1 |h^ℓ| / median |h^ℓ| per sequence (what ``interp massive`` fits).

With ``--full DIR`` it instead runs what the slow test runs: :func:`train_bb` with checkpoints
in DIR, :func:`bb_mechanism` (through the TransformerBridge) at the first and last checkpoint,
and ``interp massive --checkpoints DIR`` (the five-parameter dynamics fit per layer).

Writes ``bench/results/bb_sweep_<name>.json`` (or ``bb_full_<name>.json``) with the machine,
load average, versions and the command line.  Usage::

    .venv/bin/python bench/run_bb_sweep.py --name s0 --seed 0 --steps 2000
    .venv/bin/python bench/run_bb_sweep.py --name default_s0 --seed 0 --full /tmp/bb_s0
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from interp.toy.bigram_backcopy import BBTask, BBTrainConfig, bb_training  # noqa: E402


@torch.no_grad()
def measure(model, task: BBTask, x: torch.Tensor) -> dict:
    """Per-layer mechanism numbers of a Hugging Face GPT-2/Llama BB model on tokens ``x``."""
    model.eval()
    blocks = model.transformer.h if hasattr(model, "transformer") else model.model.layers
    outs, vals = {}, {}
    hs = []
    for i, b in enumerate(blocks):
        hs.append(b.register_forward_hook(lambda m, a, o, i=i: outs.__setitem__(i, o[0] if isinstance(o, tuple) else o)))
        if hasattr(b, "attn"):  # GPT-2: c_attn input is ln_1(h)
            hs.append(b.attn.c_attn.register_forward_hook(
                lambda m, a, o, i=i: vals.__setitem__(i, o[..., 2 * o.shape[-1] // 3:])))
        else:
            hs.append(b.self_attn.v_proj.register_forward_hook(lambda m, a, o, i=i: vals.__setitem__(i, o)))
    try:
        res = model(x, output_attentions=True)
    finally:
        for h in hs:
            h.remove()
    model.train()
    trig = task.trigger_mask(x)[:, 1:]
    out = {"sink_other": [], "prev_trig": [], "value_drain": [], "peak_mean": [], "peak_max": [], "norm_s": [],
           "massive_ratio": [], "argmax_pos0": []}
    T = x.shape[1]
    q = torch.arange(1, T)
    for i in range(len(blocks)):
        a = res.attentions[i][:, 0].float()  # [B, T, T]
        out["sink_other"].append(float(a[:, 1:, 0][~trig].mean()))
        out["prev_trig"].append(float(a[:, q, q - 1][trig].mean()))
        vn = vals[i].float().norm(dim=-1)
        out["value_drain"].append(float((vn[:, 0] / vn[:, 1:].mean(1)).mean()))
        h = outs[i].float()
        hn = h.norm(dim=-1)
        out["norm_s"].append(float(hn[:, 0].mean()))
        out["peak_mean"].append(float((hn[:, 0] / hn[:, 1:].mean(1)).mean()))
        out["peak_max"].append(float((hn[:, 0] / hn[:, 1:].max(1).values).mean()))
        ab = h.abs().reshape(h.shape[0], -1)
        out["massive_ratio"].append(float((ab.max(1).values / ab.median(1).values).mean()))
        out["argmax_pos0"].append(float((ab.argmax(1) // h.shape[-1] == 0).float().mean()))
    return {k: [round(v, 4) for v in vs] for k, vs in out.items()}


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--name", required=True)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--every", type=int, default=250)
    p.add_argument("--threads", type=int, default=1)
    for k, v in vars(BBTrainConfig()).items():
        if k in ("checkpoint_steps", "steps"):
            continue
        p.add_argument("--" + k.replace("_", "-"), type=type(v) if not isinstance(v, tuple) else str, default=v)
    p.add_argument("--seq-len", type=int, default=32)
    p.add_argument("--full", default=None, help="checkpoint folder: run train_bb + bb_mechanism + interp massive")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    kw = {k: getattr(args, k) for k in vars(BBTrainConfig()) if k not in ("checkpoint_steps", "steps")}
    if isinstance(kw.get("betas"), str):
        kw["betas"] = tuple(float(b) for b in kw["betas"].strip("()").split(","))
    cfg = BBTrainConfig(steps=args.steps, checkpoint_steps=(), **kw)
    task = BBTask(seq_len=args.seq_len)
    if args.full:
        return full(args, task, BBTrainConfig(steps=args.steps, **kw))
    xe = task.sample(64, torch.Generator().manual_seed(12345))
    log = []
    t0 = time.time()
    for step, model, loss in bb_training(task, cfg):
        if step == 0:
            log.append({"step": 0, **measure(model, task, xe)})
        elif step % args.every == 0 or step == cfg.steps:
            m = measure(model, task, xe)
            log.append({"step": step, "loss": round(loss, 4), **m})
            print(f"{step:5d} {time.time() - t0:6.0f}s loss {loss:.3f} sink {m['sink_other']} prev "
                  f"{m['prev_trig']} vdrain {m['value_drain']} peak/mean {m['peak_mean']} peak/max {m['peak_max']} "
                  f"|h0| {m['norm_s']} massive {m['massive_ratio']} pos0 {m['argmax_pos0']}", flush=True)
    write(args, "sweep", {"task": {"seq_len": task.seq_len, "n_triggers": task.n_triggers},
                          "config": {k: v for k, v in vars(cfg).items()}, "log": log}, t0)


def write(args, kind: str, payload: dict, t0: float) -> None:
    import transformers

    rec = {"name": args.name, "command": " ".join(sys.argv), "machine": platform.machine(),
           "processor": platform.processor(), "loadavg": os.getloadavg(), "torch": torch.__version__,
           "transformers": transformers.__version__, "threads": args.threads, "seconds": round(time.time() - t0, 1), **payload}
    out = Path(__file__).resolve().parent / "results" / f"bb_{kind}_{args.name}.json"
    out.write_text(json.dumps(rec, indent=1, default=str))
    print("wrote", out)


def full(args, task: BBTask, cfg: BBTrainConfig) -> None:
    """The slow test's pipeline on the real code paths, recorded."""
    from dataclasses import asdict

    from interp.cli.main import main as cli
    from interp.models import load_model
    from interp.toy.bigram_backcopy import bb_mechanism, train_bb

    t0 = time.time()
    run = train_bb(args.full, task, cfg, device="cpu")
    t_train = time.time() - t0
    mech = {}
    for s in (run.steps[0], run.steps[-1]):
        m = bb_mechanism(load_model(f"{args.full}/step_{s:06d}", device="cpu"), task)
        mech[s] = {**asdict(m), "peak_over_mean": [a / b for a, b in zip(m.resid_norm_sink, m.resid_norm_rest_mean)]}
        print(s, json.dumps({k: [round(x, 3) for x in v] if isinstance(v, list) else round(v, 3)
                             for k, v in mech[s].items()}), flush=True)
    t1 = time.time()
    assert cli(["massive", "--checkpoints", args.full, "--out", f"{args.full}/massive", "--device", "cpu"]) == 0
    dyn = json.loads(Path(f"{args.full}/massive/results.json").read_text())["dynamics"]
    write(args, "full", {"task": {"seq_len": task.seq_len, "n_triggers": task.n_triggers}, "config": asdict(cfg),
                         "train_seconds": round(t_train, 1), "massive_seconds": round(time.time() - t1, 1),
                         "final_loss": run.losses[-1], "mechanism": mech, "dynamics": dyn}, t0)


if __name__ == "__main__":
    main()
