"""``interp compare ioi|greater-than``: every attribution method vs activation patching (Pearson r, time)."""

from __future__ import annotations

from interp.cli.main import CORRUPTION_HELP, corruption_choices


def register(subparsers) -> None:
    from interp.circuits.compare import COMPONENTS, METHOD_SPECS, compare_methods
    from interp.cli.common import command, default_of

    d = lambda f: default_of(compare_methods, f)  # noqa: E731
    p = command(subparsers, "compare", help="AtP, RelP, IG vs activation patching on one task (Pearson r, wall time)",
                out="runs/compare-<task>", model="smollm2-135m", seed=d("seed"))
    p.add_argument("task", choices=["ioi", "greater-than"])
    p.add_argument("--n", type=int, default=d("n"), help="number of prompts")
    p.add_argument("--corruption", default=d("corruption"), choices=corruption_choices(),
                   help=CORRUPTION_HELP + "; s2 is the like-for-like RelP Table 1 setting")
    p.add_argument("--methods", default=",".join(m for m in METHOD_SPECS if m != "ig-embed"),
                   help=f"comma list from {', '.join(METHOD_SPECS)} (relp: the RelP paper's default rules; relp-cp-lrp "
                        "adds the AH-rule, CP-LRP on attention; ig: per-hook IG; ig-embed: EAP-IG node form)")
    p.add_argument("--components", default=",".join(d("components")),
                   help=f"comma list of component types from {', '.join(COMPONENTS)} (attn: attention output per "
                        "layer and position, the RelP paper's column)")
    p.set_defaults(func=_run)


CONFIG_FLAGS = [(("compare",), "interp.circuits.compare:compare_methods", {
    "n": "n", "seed": "seed", "corruption": "corruption"})]
"""(command path, config, flag dest -> field / parameter): checked by tests/test_cli_grammar.py."""


def _run(args) -> int:
    from interp.circuits.compare import COMPONENTS, METHOD_SPECS, compare_methods
    from interp.cli.common import out_path, parse_list
    from interp.cli.main import emit
    from interp.models import load_model

    if args.n < 1:
        raise ValueError("--n must be >= 1")
    methods = parse_list(args.methods, "--methods", METHOD_SPECS)
    components = parse_list(args.components, "--components", COMPONENTS)
    out = out_path(args)
    model = load_model(args.model, device=args.device)
    r = compare_methods(model, args.task, n=args.n, seed=args.seed, methods=methods, out=out, progress=True,
                         corruption=args.corruption, components=components)
    cts = list(r["config"]["components"])
    head = {"resid": "resid", "attn": "attn", "attn_head": "heads", "mlp": "mlp"}
    lines = [f"{args.task} on {args.model}, {r['n_prompts']} prompts, corruption {r['corruption']}; "
             "Pearson r with activation patching:",
             f"{'method':14s} " + " ".join(f"{head.get(c, c):>7s}" for c in cts) + f" {'seconds':>9s}"]

    undefined = r.get("pearson_undefined") or {}

    def row(name, vals, secs="", undef=()):
        cells = " ".join(f"{vals[c]:7.3f}" if vals.get(c) is not None else f"{'undef' if c in undef else '':>7s}"
                         for c in cts)
        return f"{name:14s} {cells} {secs:>9s}"

    for m, c in r["pearson"].items():
        lines.append(row(m, c, f"{r['seconds'][m]:.2f}", undefined.get(m, {})))
    lines.append(row("patch", {}, f"{r['seconds']['patch']:.2f}"))
    for m, d in undefined.items():
        for c, why in d.items():
            lines.append(f"WARNING: r of {m} on {head.get(c, c)} is undefined: {why}")
    if "paper" in r:
        lines.append(f"paper ({r['paper_source']}):")
        for m, c in r["paper"].items():
            lines.append(row(m, c))
    if out:
        lines.append(f"wrote {out}/results.json and report.html")
    payload = {k: r[k] for k in ("pearson", "pearson_undefined", "seconds", "speed", "paper") if k in r}
    emit(args, {**payload, "out": out}, "\n".join(lines))
    return 0
