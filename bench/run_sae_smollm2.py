"""Train and evaluate a residual-stream TopK SAE and a transcoder on SmolLM2-135M from a cached store.

    python bench/run_sae_smollm2.py --store runs/sae_store_l15 --layer 15 --epochs 4

The store holds ``blocks.L.hook_resid_post``, ``blocks.L.ln2.hook_normalized`` and
``blocks.L.hook_mlp_out`` (cache it with ``interp cache``).  Rows at position 0 (BOS: the
attention-sink outliers, ~100x the norm of other rows) are left out of training and of the
FVU, as SAELens's evals do; the spliced CE leaves position 0 unreplaced.  The last
``--held`` sequences are held out for FVU/L0 and for the spliced CE / KL.

Rows are held in RAM in the store's dtype (fp16: 1.2 KB per row per hook, 1.3 GB per hook for
1.1M rows) and cast to fp32 per batch; the held-out split and the BOS filter need row indices,
which is why this bench reads the store into memory instead of streaming ``store.batches``.

Prints one JSON document (also written to ``runs/sae_smollm2{tag}.json``, or ``--out``), with
the exact command, the machine and the library versions.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    from interp.dictionaries import SAEConfig, TensorSource, TrainConfig, load_sae, save_sae, train_sae
    from interp.dictionaries.metrics import evaluate_rows, spliced_ce
    from interp.dictionaries.transcoder import transcoder_config, transcoder_hooks
    from interp.models import load_model
    from interp.store import ActivationStore

    ap = argparse.ArgumentParser()
    ap.add_argument("--store", default="runs/sae_store_l15")
    ap.add_argument("--layer", type=int, default=15)
    ap.add_argument("--epochs", type=float, default=4)
    ap.add_argument("--expansion", type=int, default=8)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--held", type=int, default=48, help="held-out sequences")
    ap.add_argument("--tc-l1", type=float, default=None, help="ReLU transcoder L1 (default: TopK transcoder)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dead-after", type=int, default=None, help="dead-latent window in tokens (default max(50 batches, rows/2))")
    ap.add_argument("--tag", default="", help="suffix for the output names")
    ap.add_argument("--skip", default="", help="sae,transcoder")
    ap.add_argument("--tc-init", default="regression", help="transcoder encoder init: regression, centre or random")
    ap.add_argument("--checkpoint-every", type=int, default=100, help="steps between checkpoints")
    ap.add_argument("--eval-only", action="store_true",
                    help="evaluate the latest checkpoint of each run (runs/smollm2_<name><tag>/checkpoint) without training")
    ap.add_argument("--rows", type=int, default=None,
                    help="use only the store's first ROWS rows (e.g. to evaluate a run trained while the store grew)")
    ap.add_argument("--out", default=None, help="JSON output path (default runs/sae_smollm2{tag}.json)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    store = ActivationStore.open(args.store)
    resid = f"blocks.{args.layer}.hook_resid_post"
    tin, tout = transcoder_hooks(args.layer)
    sp = store.seq_pos[:]
    T = int(sp[:, 1].max()) + 1
    n_seq = min(store.n_rows, args.rows or store.n_rows) // T
    n_rows = n_seq * T
    held_from = (n_seq - args.held) * T
    keep = sp[:n_rows, 1] != 0
    train_idx = torch.arange(held_from)[keep[:held_from]]
    held_idx = torch.arange(held_from, n_rows)[keep[held_from:]]
    t0 = time.perf_counter()
    need = ([] if "sae" in args.skip else [resid]) + ([] if "transcoder" in args.skip else [tin, tout])
    data = {h: torch.cat(list(store.stream(h, 16384, dtype=torch.float16)))[:n_rows] for h in need}
    load_s = time.perf_counter() - t0
    train = TensorSource({h: v[train_idx] for h, v in data.items()})
    held = TensorSource({h: v[held_idx] for h, v in data.items()})
    del data
    toks = store.tokens[held_from:n_rows].long().view(args.held, T)
    model = load_model(store.manifest["model"], device="cpu")
    from importlib.metadata import version

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    out: dict = {"command": "python " + " ".join(sys.argv), "git_commit": commit,
                 "machine": f"{platform.machine()} {platform.processor() or ''}, {args.threads} torch thread(s), "
                            f"{__import__('os').cpu_count()} cores shared with other jobs",
                 "torch": torch.__version__, "transformer_lens": version("transformer-lens"),
                 "transformers": version("transformers"), "python": platform.python_version(),
                 "tag": args.tag, "store": args.store, "store_rows": n_rows, "store_complete": store.complete and n_rows == store.n_rows,
                 "store_dtype": store.manifest["dtype"],
                 "train_rows": len(train_idx), "held_rows": len(held_idx), "held_sequences": args.held,
                 "load_seconds": load_s}
    n_tokens = int(args.epochs * len(train_idx))
    tcfg = dict(n_tokens=n_tokens, batch_size=args.batch, lr=args.lr, warmup_steps=50, progress=True,
                dead_after_tokens=args.dead_after or max(args.batch * 50, len(train_idx) // 2), device="cpu",
                checkpoint_every=args.checkpoint_every, transcoder_init=args.tc_init)
    runs = []
    if "sae" not in args.skip:
        runs.append(("sae", SAEConfig(arch="topk", d_in=576, d_sae=args.expansion * 576, k=args.k, hook_in=resid,
                                      model_name="smollm2-135m", context_length=T)))
    if "transcoder" not in args.skip:
        kw = dict(arch="relu", l1_coeff=args.tc_l1) if args.tc_l1 else dict(arch="topk", k=args.k)
        runs.append(("transcoder", transcoder_config(args.layer, d_model=576, expansion=args.expansion,
                                                     model_name="smollm2-135m", context_length=T, **kw)))
    out["train_config"] = tcfg
    for name, cfg in runs:
        run_dir = ROOT / "runs" / f"smollm2_{name}{args.tag}"
        if args.eval_only:  # the latest checkpoint, as written by the trainer (possibly mid-run)
            sae = load_sae(run_dir / "checkpoint")
            meta = json.loads((run_dir / "checkpoint" / "trainer_state.json").read_text())
            info = {"checkpoint": str(run_dir / "checkpoint"), "train_tokens": meta["tokens"], "steps": meta["step"],
                    "planned_tokens": meta["train_config"]["n_tokens"]}
        else:
            r = train_sae(train, cfg, TrainConfig(**tcfg, checkpoint_dir=str(run_dir)))
            sae = r.sae
            save_sae(sae, run_dir / "sae")
            info = {"train_tokens": r.tokens, "steps": r.steps, "train_seconds": r.seconds,
                    "train_tokens_per_s": r.tokens_per_s, "train_fvu_last": r.fvu,
                    "dead_fraction_train_window": r.dead_fraction}
        rows = evaluate_rows(sae, held, n_rows=len(held_idx))
        sp_m = spliced_ce(model, sae, toks, batch_size=8)
        out[name] = {"config": asdict(cfg), **info, "held": rows.to_json(), "spliced": sp_m.to_json()}
        print(json.dumps({name: out[name]["held"] | {"ce_recovered": sp_m.ce_recovered, "kl": sp_m.kl_dict}}))
    dest = Path(args.out) if args.out else ROOT / "runs" / f"sae_smollm2{args.tag}.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(out, indent=1, default=str))
    print(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
