"""``interp compare ioi|greater-than``: every attribution method vs activation patching (Pearson r, time)."""

from __future__ import annotations

from interp.cli.main import CORRUPTION_HELP


def register(subparsers) -> None:
    p = subparsers.add_parser("compare", help="AtP, RelP, IG vs activation patching on one task (Pearson r, wall time)")
    p.add_argument("task", choices=["ioi", "greater-than"])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--n", type=int, default=8, help="number of prompts")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--corruption", default=None, help=CORRUPTION_HELP + " (s2 is the like-for-like RelP Table 1 setting)")
    p.add_argument("--methods", default="patch,atp,relp,relp-cp-lrp,ig",
                   help="comma list from patch, atp, relp (the RelP paper's default rules), relp-cp-lrp (adds the "
                        "AH-rule, CP-LRP on attention), ig (per-hook IG), ig-embed (EAP-IG node form)")
    p.add_argument("--components", default="resid,attn,attn_head,mlp",
                   help="comma list of component types: resid, attn (attention output per layer and position, "
                        "the RelP paper's column), attn_head, mlp")
    p.add_argument("--out", default=None, help="folder for results.json and report.html")
    p.add_argument("--device", default=None)
    p.add_argument("--json", action="store_true")
    p.add_argument("--debug", action="store_true")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from interp.circuits.compare import compare_methods
    from interp.cli.main import emit
    from interp.models import load_model

    if args.n < 1:
        raise ValueError("--n must be >= 1")
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    components = tuple(c.strip() for c in args.components.split(",") if c.strip())
    model = load_model(args.model, device=args.device)
    r = compare_methods(model, args.task, n=args.n, seed=args.seed, methods=methods, out=args.out, progress=True,
                         corruption=args.corruption, components=components)
    cts = list(r["config"]["components"])
    head = {"resid": "resid", "attn": "attn", "attn_head": "heads", "mlp": "mlp"}
    lines = [f"{args.task} on {args.model}, {r['n_prompts']} prompts, corruption {r['corruption']}; "
             "Pearson r with activation patching:",
             f"{'method':14s} " + " ".join(f"{head.get(c, c):>7s}" for c in cts) + f" {'seconds':>9s}"]

    def row(name, vals, secs=""):
        cells = " ".join(f"{vals[c]:7.3f}" if vals.get(c) is not None else f"{'':7s}" for c in cts)
        return f"{name:14s} {cells} {secs:>9s}"

    for m, c in r["pearson"].items():
        lines.append(row(m, c, f"{r['seconds'][m]:.2f}"))
    lines.append(row("patch", {}, f"{r['seconds']['patch']:.2f}"))
    if "paper" in r:
        lines.append(f"paper ({r['paper_source']}):")
        for m, c in r["paper"].items():
            lines.append(row(m, c))
    emit(args, {k: r[k] for k in ("pearson", "seconds", "speed", "paper") if k in r}, "\n".join(lines))
    return 0
