"""``interp circuit ioi|greater-than``: score components, find and verify a circuit, write a report."""

from __future__ import annotations

from interp.attribution.lrp_rules import RULE_SETS
from interp.circuits import CircuitRunConfig, run_circuit
from interp.circuits.pipeline import METHODS
from interp.cli.common import (
    config_defaults, flag_settings, model_of, out_path, same, task_command, write_result)


def register(subparsers) -> None:
    p = task_command(subparsers, "circuit",
                     "find a circuit (IOI / greater-than) and write results.json + report.html", _run)
    p.add_argument("--rules", choices=sorted(RULE_SETS),
                   help="RelP LRP rule set: default (the RelP paper's: LN, Identity, Half rules) | default+cp-lrp "
                        "(adds the AH-rule, CP-LRP on attention) | default+cp-lrp+epsilon")
    p.add_argument("--no-patching-check", action="store_true",
                   help="skip activation patching of every head and MLP beside the method's scores")
    p.add_argument("--no-edges", action="store_true", help="skip EAP edge scores between circuit members")
    config_defaults(p, *CONFIG_FLAGS, choices={"method": METHODS, "source": ["corrupt", "mean"]})


CONFIG_FLAGS = [(("circuit",), "interp.circuits.pipeline:CircuitRunConfig",
                 same("method", "n", "seed", "corruption", "share", "rules", "search", "source", "margin",
                      "heldout_n"))]
"""(command path, config, flag dest -> field / parameter): checked by tests/test_cli_grammar.py."""


def _run(args) -> int:
    cfg = CircuitRunConfig(**flag_settings(args, CONFIG_FLAGS[0]), check_patching=not args.no_patching_check,
                           edges=not args.no_edges)  # checks every setting before the model loads
    r = run_circuit(model_of(args), args.task, cfg, progress=True)
    c = r.circuit
    ho = c.get("heldout")
    keys = ("n_components", "n_total", "fraction", "faithfulness", "denoise_recovered")
    summary = {"out": out_path(args), **{k: c[k] for k in keys},
               "search": args.search, "source": args.source, "heldout_faithfulness": None if ho is None else ho["F"],
               "timings": r.timings, "roles": r.roles, "n_edges": len(r.edges)}
    return write_result(args, r, payload=summary)
