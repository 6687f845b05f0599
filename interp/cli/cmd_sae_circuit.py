"""``interp sae-circuit ioi|greater-than``: discrete-SAE circuit identification (O'Neill & Bui 2024).

Scores every attention head from the codes of one small SAE trained on per-head outputs of clean
(positive) and corrupted (negative) prompts; see :mod:`interp.circuits.sae_circuits`.  With
``--truth-n N`` it also runs activation patching of every head on the first N prompts and reports
ROC-AUC / best F1 of the node and edge scores against the heads carrying each ``--shares`` of the
total |effect|, with both wall times.
"""

from __future__ import annotations

import json
from pathlib import Path


def register(subparsers) -> None:
    from interp.circuits.sae_circuits import SAECircuitConfig
    from interp.cli.common import command, default_of, renamed
    from interp.cli.main import CORRUPTION_HELP, corruption_choices
    from interp.tasks import make_task

    d = lambda f: default_of(SAECircuitConfig, f)  # noqa: E731
    p = command(subparsers, "sae-circuit", help="discrete-SAE circuit identification (node/edge head scores)",
                out="runs/sae-circuit-<task>", model="smollm2-135m", seed=default_of(make_task, "seed"))
    p.add_argument("task", choices=["ioi", "greater-than"])
    p.add_argument("--n", type=int, default=32, help="positive (= negative) prompts")
    p.add_argument("--corruption", default=None, choices=corruption_choices(), help=CORRUPTION_HELP)
    p.add_argument("--sae-seed", type=int, default=d("seed"), help="seed of the SAE initialisation and training draw")
    p.add_argument("--d-sae", type=int, default=d("n_latents"), help="latents of the shared SAE")
    p.add_argument("--epochs", type=int, default=d("epochs"), help="full-batch training steps")
    p.add_argument("--n-train", type=int, default=d("n_train"), help="prompts the SAE trains on")
    p.add_argument("--truth-n", type=int, default=0, help="prompts for the activation-patching ground truth (0: none)")
    p.add_argument("--shares", default="0.5,0.8", help="shares of total |patching effect| defining the truth")
    p.add_argument("--top", type=int, default=10, help="how many top heads to list")
    renamed(p, "--latents", "--d-sae")
    p.set_defaults(func=_run)


CONFIG_FLAGS = [(("sae-circuit",), "interp.circuits.sae_circuits:SAECircuitConfig", {
    "sae_seed": "seed", "d_sae": "n_latents", "epochs": "epochs", "n_train": "n_train"})]
"""(command path, config, flag dest -> field): checked by tests/test_cli_grammar.py."""


def _run(args) -> int:
    from interp.circuits import sae_circuits as sc
    from interp.cli.main import emit
    from interp.models import load_model
    from interp.tasks import make_task

    if args.n < 1 or args.truth_n < 0:
        raise ValueError("--n must be >= 1 and --truth-n >= 0")
    from interp.cli.common import out_path, parse_list

    shares = parse_list(args.shares, "--shares", cast=float)
    model = load_model(args.model, device=args.device)
    task = make_task(args.task, model, n=max(args.n, args.truth_n), seed=args.seed, corruption=args.corruption)
    cfg = sc.SAECircuitConfig(n_latents=args.d_sae, epochs=args.epochs, n_train=args.n_train, seed=args.sae_seed)
    r = sc.sae_circuit(model, task.subset(slice(0, args.n)), cfg)
    H = model.cfg.n_heads
    order = r.unique_codes.flatten().argsort(descending=True)[:args.top].tolist()
    top = [{"head": f"L{i // H}H{i % H}", "unique_codes": int(r.unique_codes.flatten()[i]),
            "edge_votes": int(r.edge_votes.flatten()[i])} for i in order]
    payload = {"kind": "sae_circuit", "task": args.task, "model": args.model, "n": args.n, "top": top,
               "seconds": r.seconds, "result": r.to_json()}
    lines = [f"{args.task} on {args.model}: {args.n} positive + {args.n} negative prompts, "
             f"{r.seconds['total']:.1f} s (SAE training {r.seconds['train']:.1f} s)",
             f"{'head':8s} {'unique codes':>12s} {'edge votes':>10s}"]
    lines += [f"{t['head']:8s} {t['unique_codes']:12d} {t['edge_votes']:10d}" for t in top]
    if args.truth_n:
        from interp.attribution import activation_patching

        ap = activation_patching(model, task.subset(slice(0, args.truth_n)), components=("attn_head",), progress=True)
        ev = {}
        for s in shares:
            truth = sc.ground_truth_heads(ap.scores["attn_head"], s)
            ev[str(s)] = {"n_truth": int(truth.sum()), "node": sc.evaluate_scores(r.node_scores, truth),
                          "edge": sc.evaluate_scores(r.edge_scores, truth)}
            lines.append(f"truth = heads with {s:.0%} of |patching effect| ({int(truth.sum())} heads): node AUC "
                         f"{ev[str(s)]['node']['roc_auc']:.3f} F1 {ev[str(s)]['node']['best_f1']:.3f}; edge AUC "
                         f"{ev[str(s)]['edge']['roc_auc']:.3f} F1 {ev[str(s)]['edge']['best_f1']:.3f}")
        lines.append(f"activation patching: {ap.seconds:.1f} s on {args.truth_n} prompts")
        payload.update(evaluation=ev, patching_seconds=ap.seconds, patching=ap.scores["attn_head"].tolist())
    if out_path(args):
        out = Path(out_path(args))
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(payload, indent=1, default=str))
        lines.append(f"wrote {out / 'results.json'}")
    emit(args, {k: v for k, v in payload.items() if k != "result"}, "\n".join(lines))
    return 0
