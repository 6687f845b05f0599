"""``interp edges ioi|greater-than``: EAP / EAP-IG scores for every edge, edge circuits, a typed result.

    interp edges ioi --model smollm2-135m --method eap-ig --ig-steps 5 --n 8 --top 50 --out runs/edges
    interp edges ioi --method eap-ig --curve --out runs/edges_curve

Calls :func:`interp.circuits.edge_circuits.run_edges` and writes ``DIR/results.json`` (kind ``edges``)
and ``DIR/report.html`` (``--out``, default ``runs/edges-<task>``).  ``--check K`` edge-patches the top
K edges for real; ``--circuit N1,N2,...`` measures the faithfulness of the top-N edge circuits for
``--method`` and the ``--compare`` methods; ``--curve`` does so on a log grid of sizes for every method.
"""

from __future__ import annotations

from interp.attribution.edges import METHODS, SHARES
from interp.circuits.edge_circuits import EdgeRunConfig, run_edges
from interp.cli.common import (
    config_defaults, flag_settings, model_of, parse_list, same, task_command, write_result)

CURVE_GRID = (10, 30, 100, 300, 1000, 3000, 10000, 30000, 10 ** 9)  # 10**9: all edges


def register(subparsers) -> None:
    p = task_command(subparsers, "edges", "EAP / EAP-IG edge attribution scores for every edge on one task",
                     _run)
    p.add_argument("--method", choices=METHODS,
                   help="eap: gradient at the clean input; eap-ig: mean gradient over --ig-steps interpolations of "
                        "the input embeddings (Hanna et al. 2024); clean-corrupted: mean of the two ends; "
                        "eap-ig-activations: interpolate each sender group's output instead ((2L+1)*steps passes)")
    p.add_argument("--circuit",
                   help="comma-separated circuit sizes N1,N2,...: faithfulness of the top-N edge circuits (pruned)")
    p.add_argument("--curve", action="store_true",
                   help=f"faithfulness curve: sizes {','.join(map(str, CURVE_GRID[:-1]))} (and all edges) for every method")
    p.add_argument("--compare",
                   help="comma-separated extra methods for --circuit/--curve (None; with --curve: all others)")
    p.add_argument("--greedy", action="store_true",
                   help="also greedy circuits grown from the logits (curves named 'METHOD greedy')")
    p.add_argument("--no-prune", action="store_true", help="keep dead-end edges in --circuit/--curve circuits")
    config_defaults(p, *CONFIG_FLAGS, choices={"gradient_share": SHARES})


_RUN = {"ig_steps": "steps", "gradient_share": "share",
        **same("method", "max_tokens", "n", "seed", "corruption", "top", "check")}
CONFIG_FLAGS = [(("edges",), "interp.circuits.edge_circuits:EdgeRunConfig", _RUN)]
"""(command path, config, flag dest -> field / parameter): checked by tests/test_cli_grammar.py."""


def _run(args) -> int:
    sizes = parse_list(args.circuit, "--circuit", cast=int) if args.circuit else ()
    sizes = tuple(sorted(set(sizes) | set(CURVE_GRID))) if args.curve else sizes
    compare = (parse_list(args.compare, "--compare", choices=METHODS) if args.compare else
               tuple(m for m in METHODS if m != "eap-ig-activations") if args.curve else ())
    cfg = EdgeRunConfig(**flag_settings(args, CONFIG_FLAGS[0]), sizes=sizes, compare=compare,  # checks every
                        selection="both" if args.greedy else "top-n", prune=not args.no_prune)  # setting first
    r = run_edges(model_of(args), args.task, cfg, progress=True)
    lines = [f"{'edge':28s} {'score':>9s}" + (f" {'patch':>9s}" if r.check else "")]
    lines += [f"{e['edge']:28s} {e['score']:9.4f}" + (f" {e['patch']:9.4f}" if "patch" in e else "")
              for e in r.top_edges]
    for mth, c in (r.curve or {}).get("curves", {}).items():
        lines.append(f"  {mth:16s} " + " ".join(f"{e}:{f:.3f}" for e, f in zip(c["n_edges"], c["f_norm"])))
    payload = {k: getattr(r, k) for k in ("config", "metric_clean", "metric_corrupt", "n_edges", "timings",
                                          "top_edges", "check", "curve", "circuit")}
    return write_result(args, r, "\n".join(lines), payload)
