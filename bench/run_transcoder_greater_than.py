"""Transcoder feature circuit of greater-than on SmolLM2-135M (exploratory; small, quickly trained transcoder).

    python bench/run_transcoder_greater_than.py --store runs/sae_store_l15_1m --layer 15 --rows 300000

1. Train a TopK transcoder (``blocks.L.ln2.hook_normalized`` -> ``blocks.L.hook_mlp_out``) on the
   first ``--rows`` non-BOS rows of a store holding both hooks; held-out FVU on the next 8192 rows.
2. For each greater-than prompt "The {noun} lasted from the year 17Y9 to the year 17", the target
   is the prob-diff direction in logit space: mean_{d>Y} logit(d) - mean_{d<=Y} logit(d) at the
   last position, as a residual vector with the final norm's scale frozen
   (mean of :func:`logit_direction` over the digit pairs, which is linear).
3. :func:`decompose` splits it exactly into embedding, per-(head, source position) OV terms,
   whole-MLP nodes for layers without a transcoder (``missing="mlp"``), and the transcoder's
   features, bias and error at layer L; :func:`greedy_paths` traces the top paths.

Only one layer has a transcoder, so MLP paths through other layers stop at a whole-MLP node.
Writes ``bench/results/transcoder_greater_than_smollm2.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter, defaultdict
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _name(c) -> str:
    if c.kind == "feature":
        return f"tc{c.layer}[{c.index}]@{c.position}"
    if c.kind == "head":
        return f"L{c.layer}H{c.index}<-{c.position}"
    return f"{c.kind}{c.layer}@{c.position}"


def main() -> None:
    from interp.dictionaries import TensorSource, TrainConfig, fvu, train_sae
    from interp.circuits import feature_circuits as fc
    from interp.dictionaries.transcoder import transcoder_config, transcoder_hooks
    from interp.models import load_model
    from interp.store import ActivationStore
    from interp.tasks import greater_than_task

    ap = argparse.ArgumentParser()
    ap.add_argument("--store", default="runs/sae_store_l15_1m")
    ap.add_argument("--layer", type=int, default=15)
    ap.add_argument("--rows", type=int, default=300_000)
    ap.add_argument("--expansion", type=int, default=4)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=1, help="passes over the training rows")
    ap.add_argument("--n", type=int, default=8, help="greater-than prompts")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "bench/results/transcoder_greater_than_smollm2.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    store = ActivationStore.open(args.store)
    tin, tout = transcoder_hooks(args.layer)
    held_n = 8192
    pos = store.seq_pos[: args.rows + held_n + 4096][:, 1]
    idx = torch.arange(len(pos))[pos != 0]
    tr, he = idx[: args.rows], idx[args.rows: args.rows + held_n]
    t0 = time.perf_counter()
    src = TensorSource({h: store.rows(h, tr) for h in (tin, tout)})
    cfg = transcoder_config(args.layer, d_model=store.d(tin), expansion=args.expansion, arch="topk", k=args.k,
                            model_name="smollm2-135m")
    res = train_sae(src, cfg, TrainConfig(n_tokens=args.epochs * len(tr), batch_size=1024, lr=1e-3, warmup_steps=50,
                                          dead_after_tokens=len(tr) // 2, progress=False, device="cpu"))
    tc = res.sae.eval()
    with torch.no_grad():
        xh, yh = store.rows(tin, he), store.rows(tout, he)
        held_fvu = float(fvu(tc(xh), yh))
        l0 = float((tc.encode(xh).acts > 0).float().sum(-1).mean())
    train_s = time.perf_counter() - t0
    print(f"transcoder L{args.layer}: {len(tr)} rows, {train_s:.0f} s, held FVU {held_fvu:.3f}, L0 {l0:.1f}, "
          f"dead {res.dead_fraction:.2f}", flush=True)

    model = load_model("smollm2-135m", device="cpu")
    task = greater_than_task(model, n=args.n, seed=0)
    digits = task.data["digit_ids"][0].tolist()
    tcs = {args.layer: tc}
    L = model.cfg.n_layers
    per_prompt, first_hops, feats, heads_total = [], Counter(), Counter(), defaultdict(float)
    for i in range(args.n):
        cc = fc.run_cache(model, task.clean[i])
        Y = int(task.data["tens"][i])
        above, below = [d for d in range(10) if d > Y], [d for d in range(10) if d <= Y]
        u = torch.stack([fc.logit_direction(model, cc, digits[g], digits[b]) for g in above for b in below]).mean(0)
        with torch.no_grad():
            logits = model(task.clean[i: i + 1])[0, -1]
        want = float(logits[[digits[g] for g in above]].mean() - logits[[digits[b] for b in below]].mean())
        terms = fc.decompose(model, tcs, cc, u, L, "pre", -1, missing="mlp")
        total = sum(c.value for c in terms)
        by_kind = defaultdict(float)
        for c in terms:
            by_kind[c.kind] += c.value
            if c.kind == "head":
                heads_total[f"L{c.layer}H{c.index}"] += c.value / args.n
        mlp_by_layer = {c.layer: c.value for c in terms if c.kind == "mlp"}
        paths = fc.greedy_paths(model, tcs, cc, u, L, "pre", -1, n_iters=3, n_branches=4, beam=12, missing="mlp")
        for p in paths:
            if len(p.nodes) == 1:
                first_hops[_name(p.nodes[0]).split("<-")[0].split("@")[0]] += 1
            for nd in p.nodes:
                if nd.kind == "feature":
                    feats[f"tc{nd.layer}[{nd.index}]"] += 1
        top_mlp = sorted(mlp_by_layer.items(), key=lambda kv: -abs(kv[1]))[:5]
        per_prompt.append({
            "prompt": task.prompts[i], "target_logit_diff": want, "decomposition_sum": total,
            "by_kind": dict(by_kind), "top_mlp_layers": top_mlp,
            "tc_layer_total": by_kind["feature"] + by_kind["tc_bias"] + by_kind["tc_error"],
            "paths": [{"nodes": [_name(n) for n in p.nodes], "value": p.value} for p in paths[:8]],
        })
        print(f"[{i}] {task.prompts[i]!r}: target {want:.3f} = sum {total:.3f}; heads {by_kind['head']:.2f}, "
              f"MLPs {by_kind['mlp']:.2f}, tc{args.layer} features {by_kind['feature']:.2f} error "
              f"{by_kind['tc_error']:.2f}, embed {by_kind['embed']:.2f}; top path "
              f"{[_name(n) for n in paths[0].nodes] if paths else None}", flush=True)
    out = {"transcoder": {"layer": args.layer, "rows": len(tr), "epochs": args.epochs, "d_sae": cfg.d_sae, "k": args.k,
                          "held_fvu": held_fvu, "l0": l0, "dead_fraction": res.dead_fraction, "seconds": train_s,
                          "store": args.store},
           "top_heads_mean_direct_contribution": sorted(heads_total.items(), key=lambda kv: -abs(kv[1]))[:12],
           "first_hop_counts": first_hops.most_common(15), "features_on_paths": feats.most_common(15),
           "prompts": per_prompt}
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(json.dumps({k: out[k] for k in ("transcoder", "top_heads_mean_direct_contribution", "first_hop_counts",
                                          "features_on_paths")}, indent=1))


if __name__ == "__main__":
    main()
