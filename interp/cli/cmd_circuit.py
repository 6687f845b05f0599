"""``interp circuit ioi|greater-than``: score components, find and verify a circuit, write a report."""

from __future__ import annotations

from interp.cli.main import CORRUPTION_HELP


def register(subparsers) -> None:
    p = subparsers.add_parser("circuit", help="find a circuit (IOI / greater-than) and write results.json + report.html")
    p.add_argument("task", choices=["ioi", "greater-than"])
    p.add_argument("--model", default="smollm2-135m", help="model name for interp.models.load_model")
    p.add_argument("--method", default="relp", choices=["patch", "atp", "relp", "ig"])
    p.add_argument("--out", required=True, help="output folder (results.json, report.html)")
    p.add_argument("--n", type=int, default=8, help="number of prompts")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--corruption", default=None, help=CORRUPTION_HELP)
    p.add_argument("--share", type=float, default=0.8, help="share of the metric the circuit must keep")
    p.add_argument("--rules", default="default",
                   help="RelP LRP rule set: default (the RelP paper's: LN, Identity, Half rules) | default+cp-lrp "
                        "(adds the AH-rule, CP-LRP on attention) | default+cp-lrp+epsilon; 'all' is an old name "
                        "of default+cp-lrp")
    p.add_argument("--search", default="greedy", choices=["greedy", "topk"],
                   help="greedy: prune by real patching, the method's scores order the tries (default); "
                        "topk: smallest top-k of the method's ranking")
    p.add_argument("--source", default="corrupt", choices=["corrupt", "mean"],
                   help="what components outside the circuit get: corrupted-run activations or the clean mean")
    p.add_argument("--margin", type=float, default=0.05,
                   help="greedy search keeps F >= share + margin on the discovery prompts")
    p.add_argument("--heldout-n", type=int, default=16,
                   help="held-out prompts (seed + 1) on which the final circuit's F is re-measured; 0 skips")
    p.add_argument("--device", default=None)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--debug", action="store_true")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from interp.circuits import run_circuit
    from interp.cli.main import emit
    from interp.models import load_model

    if args.n < 1:
        raise ValueError("--n must be >= 1")
    if not 0 < args.share <= 1:
        raise ValueError("--share must be in (0, 1]")
    if args.margin < 0 or args.heldout_n < 0:
        raise ValueError("--margin and --heldout-n must be >= 0")
    model = load_model(args.model, device=args.device)
    r = run_circuit(model, args.task, args.method, out=args.out, n=args.n, seed=args.seed, share=args.share,
                    rules=args.rules, progress=True, search=args.search, source=args.source, margin=args.margin,
                    heldout_n=args.heldout_n, corruption=args.corruption)
    c = r["circuit"]
    ho = c.get("heldout")
    summary = {"out": args.out, "n_components": c["n_components"], "n_total": c["n_total"],
               "fraction": c["fraction"], "faithfulness": c["faithfulness"],
               "denoise_recovered": c["denoise_recovered"], "search": args.search, "source": args.source,
               "heldout_faithfulness": None if ho is None else ho["F"], "timings": r["timings"], "roles": r["roles"]}
    held = "" if ho is None else f"; held-out ({ho['n']} prompts, seed {ho['seed']}): {100 * ho['F']:.1f}%"
    human = (f"{args.task} on {args.model} ({args.method}, {args.search}, outside patched from {args.source}): "
             f"{c['n_components']}/{c['n_total']} components ({100 * c['fraction']:.1f}%) keep "
             f"{100 * c['faithfulness']:.1f}% of the metric{held} (denoising check "
             f"{100 * c['denoise_recovered']:.1f}%); wrote {args.out}/results.json and report.html")
    emit(args, summary, human)
    return 0
