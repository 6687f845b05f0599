"""TopK SAE training throughput: interp's trainer vs SAELens's SAETrainer (and a plain PyTorch loop), same data.

    python bench/bench_sae_train.py --store runs/sae_store_l15 --hook blocks.15.hook_resid_post \
        --rows 65536 --expansion 8 --k 32 --batch 4096 --steps 30 \
        --saelens-python /work/venv-saelens/bin/python

Every trainer sees the same rows (read once from the store into memory and saved to
``runs/bench_rows.safetensors``), the same d_sae, k, batch size, number of steps and thread
count, and reports tokens/s over the whole ``fit``/``train`` call (data shuffling, optimiser,
decoder normalisation and dead-latent bookkeeping included).  FVU and L0 on held-out rows are
printed beside the speed so a speed-up is not bought with quality.

Contenders:

* ``interp``         -- ``interp.dictionaries.train_sae`` (sparse TopK kernels on).
* ``interp-dense``   -- the same with ``INTERP_REFERENCE=1`` (dense references).
* ``plain-pytorch``  -- a minimal TopK loop: dense encode, scatter, dense decode, Adam, renorm.
* ``saelens``        -- ``sae_lens.SAETrainer`` + ``TopKTrainingSAE`` (default dense decode),
* ``saelens-sparse`` -- the same with ``use_sparse_activations=True`` (its COO sparse decode).

SAELens runs in a separate interpreter (``--saelens-python``; sae-lens 6.x pins
transformer-lens < 4, so it lives in its own venv that reuses our torch through a .pth file).
Results go to ``runs/bench_sae_train.json`` with machine and versions.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[1]


def load_rows(args) -> tuple[torch.Tensor, torch.Tensor]:
    if args.store:
        from interp.store import ActivationStore

        store = ActivationStore.open(args.store)
        n = min(args.rows + args.held, store.n_rows)
        x = torch.cat(list(store.stream(args.hook, 8192, dtype=torch.float32)))[:n] if n > 0 else None
    else:  # synthetic stand-in: planted sparse directions in d=576
        g = torch.Generator().manual_seed(0)
        D = torch.nn.functional.normalize(torch.randn(8192, 576, generator=g), dim=-1)
        n = args.rows + args.held
        idx = torch.randint(0, 8192, (n, 48), generator=g)
        x = (torch.rand(n, 48, generator=g)[..., None] * D[idx]).sum(1)
    x = x[torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(1))]
    return x[: -args.held].contiguous(), x[-args.held:].contiguous()


def held_metrics(sae, held) -> dict:
    from interp.dictionaries.metrics import evaluate_rows
    from interp.dictionaries.source import TensorSource

    m = evaluate_rows(sae, TensorSource({sae.cfg.hook_in: held}), n_rows=held.shape[0])
    return {"fvu": m.fvu, "l0": m.l0}


def run_interp(train, held, args, sparse: bool) -> dict:
    from interp.dictionaries import SAEConfig, TensorSource, TrainConfig, train_sae

    os.environ["INTERP_REFERENCE"] = "0" if sparse else "1"
    cfg = SAEConfig(arch="topk", d_in=train.shape[1], d_sae=args.expansion * train.shape[1], k=args.k, hook_in="h")
    tc = TrainConfig(n_tokens=args.steps * args.batch, batch_size=args.batch, lr=4e-4,
                     warmup_steps=min(100, args.steps // 10), progress=False, device=args.device,
                     dead_after_tokens=max(args.batch, args.rows // 2))
    r = train_sae(TensorSource({"h": train}), cfg, tc)
    os.environ.pop("INTERP_REFERENCE", None)
    return {"tokens_per_s": r.tokens_per_s, "seconds": r.seconds, **held_metrics(r.sae.cpu(), held)}


def run_plain(train, held, args) -> dict:
    """The smallest honest TopK trainer: what one would write by hand in PyTorch.  On ``--device cuda``
    each batch is copied from host memory, as interp's trainer reads its batches from a host source."""
    torch.manual_seed(0)
    dev = torch.device(args.device)
    d, n = train.shape[1], args.expansion * train.shape[1]
    W_dec = torch.nn.functional.normalize(torch.randn(n, d), dim=-1).to(dev).requires_grad_()
    W_enc = W_dec.detach().T.clone().requires_grad_()
    b_enc = torch.zeros(n, device=dev, requires_grad=True)
    b_dec = train[:4096].mean(0).to(dev).clone().requires_grad_()
    opt = torch.optim.Adam([W_enc, W_dec, b_enc, b_dec], lr=4e-4)
    g = torch.Generator().manual_seed(0)
    _sync()
    t0 = time.perf_counter()
    perm = torch.randperm(train.shape[0], generator=g)
    for step in range(args.steps):
        s = (step * args.batch) % (train.shape[0] - args.batch + 1)
        x = train[perm[s:s + args.batch]].to(dev)
        pre = (x - b_dec) @ W_enc + b_enc
        v, i = pre.topk(args.k, dim=-1)
        f = torch.zeros_like(pre).scatter(1, i, v.relu())
        xh = f @ W_dec + b_dec
        loss = (xh - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            W_dec /= W_dec.norm(dim=-1, keepdim=True)
    _sync()
    secs = time.perf_counter() - t0
    W_enc, W_dec, b_enc, b_dec = (t.detach().cpu() for t in (W_enc, W_dec, b_enc, b_dec))
    with torch.no_grad():
        pre = (held - b_dec) @ W_enc + b_enc
        v, i = pre.topk(args.k, dim=-1)
        xh = torch.zeros_like(pre).scatter(1, i, v.relu()) @ W_dec + b_dec
        fvu = float((held - xh).pow(2).sum() / (held - held.mean(0)).pow(2).sum())
    return {"tokens_per_s": args.steps * args.batch / secs, "seconds": secs, "fvu": fvu, "l0": float(args.k)}


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def run_saelens(rows_path: Path, train, args, sparse: bool) -> dict:
    out = ROOT / "runs" / f"bench_saelens_{int(sparse)}.json"
    cmd = [args.saelens_python, str(ROOT / "bench" / "_saelens_topk.py"), str(rows_path),
           str(args.expansion * train.shape[1]), str(args.k), str(args.batch), str(args.steps),
           str(torch.get_num_threads()), str(int(sparse)), str(out)]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd="/tmp")
    if p.returncode != 0:
        errs = [ln for ln in p.stderr.splitlines() if "Error" in ln or "error:" in ln]
        return {"error": " | ".join(errs[-3:]) or p.stderr[-500:]}
    return json.loads(out.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", default=None, help="activation store (default: synthetic planted rows, d=576)")
    ap.add_argument("--hook", default="blocks.15.hook_resid_post")
    ap.add_argument("--rows", type=int, default=65536)
    ap.add_argument("--held", type=int, default=8192)
    ap.add_argument("--expansion", type=int, default=8)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1, help="runs per contender (best kept; the machine is shared)")
    ap.add_argument("--saelens-python", default="/work/venv-saelens/bin/python")
    ap.add_argument("--skip", default="", help="comma-separated contenders to skip")
    ap.add_argument("--device", default="cpu", help="where interp's and the plain loop train (cuda on a GPU machine)")
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench_sae_train.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    train, held = load_rows(args)
    rows_path = ROOT / "runs" / "bench_rows.safetensors"
    rows_path.parent.mkdir(exist_ok=True)
    save_file({"train": train, "held": held}, rows_path)
    contenders = {
        "interp": lambda: run_interp(train, held, args, True),
        "interp-dense": lambda: run_interp(train, held, args, False),
        "plain-pytorch": lambda: run_plain(train, held, args),
        "saelens": lambda: run_saelens(rows_path, train, args, False),
        "saelens-sparse": lambda: run_saelens(rows_path, train, args, True),
    }
    skip = set(filter(None, args.skip.split(",")))
    if not Path(args.saelens_python).exists():
        skip |= {"saelens", "saelens-sparse"}
        print(f"note: {args.saelens_python} not found; SAELens not benchmarked")
    results: dict = {}
    for rep in range(args.repeats):
        for name, fn in contenders.items():
            if name in skip:
                continue
            r = fn()
            if "error" in r or name not in results or r["tokens_per_s"] > results[name]["tokens_per_s"]:
                results[name] = r
    from importlib.metadata import version

    meta = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores visible, "
                       f"{args.threads} torch threads, shared with other jobs", "python": platform.python_version(),
            "torch": torch.__version__, "transformer_lens": version("transformer-lens"),
            "data": f"{args.store or 'synthetic'}:{args.hook} {train.shape[0]} rows x {train.shape[1]}",
            "config": {k: getattr(args, k) for k in ("expansion", "k", "batch", "steps", "threads", "repeats", "device")}}
    print(json.dumps(meta, indent=1))
    print(f"{'trainer':<16}{'tokens/s':>12}{'seconds':>10}{'held FVU':>10}{'L0':>7}")
    for name, r in results.items():
        if "error" in r:
            print(f"{name:<16} ERROR {r['error'][-300:]}")
            continue
        print(f"{name:<16}{r['tokens_per_s']:>12,.0f}{r['seconds']:>10.1f}{r['fvu']:>10.4f}{r['l0']:>7.1f}")
    ours = results.get("interp", {}).get("tokens_per_s")
    for other in ("saelens", "saelens-sparse", "plain-pytorch", "interp-dense"):
        if ours and "tokens_per_s" in results.get(other, {}):
            print(f"interp / {other}: {ours / results[other]['tokens_per_s']:.2f}x")
    Path(args.out).write_text(json.dumps({"meta": meta, "results": results}, indent=1))


if __name__ == "__main__":
    sys.exit(main())
