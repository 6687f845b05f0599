"""``interp edges ioi|greater-than``: EAP / EAP-IG scores for every edge; the top edges to results.json.

    interp edges ioi --model smollm2-135m --method eap-ig --ig-steps 5 --n 8 --top 50 --out runs/edges

Writes ``DIR/results.json`` (kind ``edges``: the top edges with their scores, the method, timings,
the configuration, |score| summed per (sender stage, receiver stage) block) and ``DIR/report.html``
(``--out``, default ``runs/edges-<task>``).
``--check K`` also patches the top K edges for real (edge_patching.py) and reports the Pearson r.
``--circuit N1,N2,...`` evaluates the top-N circuits (pruned to paths embeddings -> logits) by
faithfulness (edge_circuit.py: every edge outside the circuit carries the corrupted run) for
``--method`` and the ``--compare`` methods; ``--curve`` does so on a log grid of sizes for every
method (results key ``faithfulness_curve``, a figure with one curve per method in the report).

    interp edges ioi --method eap-ig --curve --out runs/edges_curve
"""

from __future__ import annotations

import time

from interp.cli.main import CORRUPTION_HELP, corruption_choices

METHOD_CHOICES = ("eap", "eap-ig", "clean-corrupted", "eap-ig-activations")
CURVE_GRID = (10, 30, 100, 300, 1000, 3000, 10000, 30000)


def register(subparsers) -> None:
    from interp.attribution.edges import edge_attribution
    from interp.cli.common import command, default_of, renamed
    from interp.tasks import make_task

    d = lambda f: default_of(edge_attribution, f)  # noqa: E731
    p = command(subparsers, "edges", help="EAP / EAP-IG edge attribution scores for every edge on one task",
                out="runs/edges-<task>", model="smollm2-135m", seed=default_of(make_task, "seed"))
    p.add_argument("task", choices=["ioi", "greater-than"])
    p.add_argument("--method", default=d("method"), choices=METHOD_CHOICES,
                   help="eap: gradient at the clean input; eap-ig: mean gradient over --ig-steps interpolations of "
                        "the input embeddings (Hanna et al. 2024); clean-corrupted: mean of the two ends; "
                        "eap-ig-activations: interpolate each sender group's output instead ((2L+1)*steps passes)")
    p.add_argument("--ig-steps", type=int, default=d("steps"), help="EAP-IG interpolation steps (left Riemann; paper: 5)")
    p.add_argument("--gradient-share", default=d("share"), choices=["own", "all"],
                   help="eap-ig-activations: score a sender with its own group's gradients (own) or their mean "
                        "over all groups (all, as hannamw/EAP-IG)")
    p.add_argument("--n", type=int, default=8, help="number of prompts")
    p.add_argument("--corruption", default=None, choices=corruption_choices(), help=CORRUPTION_HELP)
    p.add_argument("--top", type=int, default=50, help="how many top edges (by |score|) to list and store")
    p.add_argument("--check", type=int, default=0, help="also edge-patch the top K edges for real (ground truth)")
    p.add_argument("--circuit", default=None,
                   help="comma-separated circuit sizes N1,N2,...: faithfulness of the top-N edge circuits (pruned)")
    p.add_argument("--curve", action="store_true",
                   help=f"faithfulness curve: sizes {','.join(map(str, CURVE_GRID))} (and all edges) for every method")
    p.add_argument("--compare", default=None,
                   help="comma-separated extra methods for --circuit/--curve (None; with --curve: all others)")
    p.add_argument("--greedy", action="store_true",
                   help="also greedy circuits grown from the logits (curves named 'METHOD greedy')")
    p.add_argument("--no-prune", action="store_true", help="keep dead-end edges in --circuit/--curve circuits")
    p.add_argument("--max-tokens", type=int, default=d("max_tokens"), help="tokens per forward/backward pass")
    renamed(p, "--steps", "--ig-steps")
    renamed(p, "--share", "--gradient-share")
    p.set_defaults(func=_run)


CONFIG_FLAGS = [(("edges",), "interp.attribution.edges:edge_attribution", {
    "method": "method", "ig_steps": "steps", "gradient_share": "share", "max_tokens": "max_tokens"})]
"""(command path, config, flag dest -> field / parameter): checked by tests/test_cli_grammar.py."""


def _curve_args(args) -> tuple[list[int] | None, list[str]]:
    """``(sizes or None, extra methods)`` from --circuit / --curve / --compare, with clear errors."""
    sizes = None
    if args.circuit:
        try:
            sizes = [int(x) for x in args.circuit.split(",") if x.strip()]
        except ValueError:
            raise ValueError(f"--circuit expects comma-separated edge counts like 10,100,1000, got {args.circuit!r}")
        if not sizes or min(sizes) < 0:
            raise ValueError(f"--circuit sizes must be >= 0, got {args.circuit!r}")
    if args.curve:
        sizes = sorted(set(sizes or []) | set(CURVE_GRID) | {10 ** 9})  # 10**9: all edges
    if args.compare:
        compare = [m.strip() for m in args.compare.split(",") if m.strip()]
        bad = [m for m in compare if m not in METHOD_CHOICES]
        if bad:
            raise ValueError(f"--compare: unknown methods {bad}; choose from {METHOD_CHOICES}")
        if sizes is None:
            raise ValueError("--compare needs --circuit or --curve")
    else:
        compare = [m for m in METHOD_CHOICES if m != "eap-ig-activations"] if args.curve else []
    return sizes, [m for m in dict.fromkeys(compare) if m != args.method]


def _run(args) -> int:
    from interp.attribution.edge_patching import edge_patching
    from interp.attribution.edge_stages import stage_matrix
    from interp.attribution.edges import edge_attribution
    from interp.circuits.pipeline import make_task, write_outputs
    from interp.results import versions
    from interp.models import load_model, model_name

    if args.n < 1:
        raise ValueError("--n must be >= 1")
    if args.top < 1:
        raise ValueError("--top must be >= 1")
    if args.check < 0:
        raise ValueError("--check must be >= 0")
    if args.method in ("eap-ig", "eap-ig-activations") and args.ig_steps < 1:
        raise ValueError("--ig-steps must be >= 1")
    sizes, compare = _curve_args(args)
    model = load_model(args.model, device=args.device)
    task = make_task(args.task, model, n=args.n, seed=args.seed, corruption=args.corruption)
    res = edge_attribution(model, task, args.method, steps=args.ig_steps, max_tokens=args.max_tokens, share=args.gradient_share)
    top = res.top(args.top)
    span = res.metric_clean - res.metric_corrupt
    for e in top:
        e["normalized"] = e["score"] / span if span else None
    seconds = {args.method: res.seconds}
    check = None
    if args.check:
        k = min(args.check, len(top))
        p = edge_patching(model, task, [e["edge"] for e in top[:k]], max_tokens=args.max_tokens)
        for e, eff in zip(top, p.effects.tolist()):
            e["patch"] = eff
        seconds["edge_patching"] = p.seconds
        import math

        import torch

        from interp.results import pearson

        r = pearson(torch.tensor([e["score"] for e in top[:k]]), p.effects) if k > 2 else None
        r = None if r is None or math.isnan(r) else r
        check = {"n_edges": k, "pearson": r, "seconds": p.seconds}
    curve = None
    if sizes is not None:
        from interp.attribution.edge_circuit import faithfulness_curve

        scores = [res] + [edge_attribution(model, task, mth, steps=args.ig_steps, max_tokens=args.max_tokens,
                                           share=args.gradient_share) for mth in compare]
        for sc in scores[1:]:
            seconds[sc.method] = sc.seconds
        sizes = sorted({min(n, res.graph.n_edges) for n in sizes})
        fc = faithfulness_curve(model, task, scores, sizes, prune=not args.no_prune, max_tokens=args.max_tokens,
                                selection="both" if args.greedy else "top-n")
        seconds["faithfulness"] = fc.seconds
        curve = {**fc.to_json(), "sizes": sizes,
                 "caption": "F_norm = (m(C) - m(corrupt)) / (m(clean) - m(corrupt)) of the top-n edge circuit of each "
                            "method (x: edges after pruning dead ends); every edge outside C carries the corrupted run"}
    matrix, rows, cols = stage_matrix(res)
    results = {
        "kind": "edges",
        "title": f"Edge attribution ({args.method}): {args.task} on {model_name(model)}",
        "model": model_name(model), "task": args.task, "n_prompts": task.n,
        "corruption": task.meta.get("corruption"),
        "config": {"method": args.method, "steps": res.config["steps"], "share": res.config.get("share"),
                   "n": args.n, "seed": args.seed,
                   "top": args.top, "check": args.check, "max_tokens": args.max_tokens, "fast": res.config["fast"],
                   "direction": res.config["direction"]},
        "metric_clean": res.metric_clean, "metric_corrupt": res.metric_corrupt,
        "n_senders": len(res.graph.senders), "n_receivers": len(res.graph.receivers), "n_edges": res.graph.n_edges,
        "seconds": seconds, "timings": res.timings,
        "top_edges": top,
        "abs_score_by_stage": {"z": matrix, "rows": rows, "columns": cols,
                               "caption": "sum of |score| over the edges from a sender stage (row) to a receiver stage (column)"},
        "check": check,
        "faithfulness_curve": curve,
        "prompts": task.to_json(), "versions": versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    from interp.cli.common import out_path

    paths = None
    if out_path(args):
        paths = write_outputs(results, out_path(args))
    lines = [f"{args.method} on {args.task} ({model_name(model)}, {task.n} prompts): {res.graph.n_edges} edges "
             f"in {res.seconds:.1f} s; metric clean {res.metric_clean:.3f}, corrupt {res.metric_corrupt:.3f}",
             f"{'edge':28s} {'score':>9s}" + (f" {'patch':>9s}" if check else "")]
    for e in top:
        lines.append(f"{e['edge']:28s} {e['score']:9.4f}" + (f" {e['patch']:9.4f}" if "patch" in e else ""))
    if check:
        lines.append(f"Pearson r with edge patching over the top {check['n_edges']}: {check['pearson']}")
    if curve:
        lines.append(f"faithfulness (F_norm) of top-n circuits, pruned; n = {curve['sizes']}:")
        for mth, c in curve["curves"].items():
            lines.append(f"  {mth:16s} " + " ".join(f"{e}:{f:.3f}" for e, f in zip(c["n_edges"], c["f_norm"])))
    if paths:
        lines.append(f"wrote {paths[0]}" + (f" and {paths[1]}" if paths[1] else ""))
    payload = {k: results[k] for k in ("config", "metric_clean", "metric_corrupt", "n_edges", "seconds", "top_edges",
                                       "check", "faithfulness_curve")}
    if paths:
        payload["results"] = str(paths[0])
    from interp.cli.main import emit

    emit(args, payload, "\n".join(lines))
    return 0
