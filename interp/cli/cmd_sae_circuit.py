"""``interp sae-circuit ioi|greater-than``: discrete-SAE circuit identification (O'Neill & Bui 2024).

Calls :func:`interp.circuits.sae_circuits.run_sae_circuit` (node and edge scores of every head from
the codes of one small SAE; with ``--truth-n N`` also activation patching of every head on the first N
prompts and ROC-AUC / best F1 against the heads carrying each ``--shares`` of the total |effect|) and
writes its typed result (kind ``sae_circuit``) and report.
"""

from __future__ import annotations

from interp.cli.common import (
    config_defaults, flag_settings, model_of, parse_list, same, task_command, write_result)
from interp.circuits import sae_circuits as sc


def register(subparsers) -> None:
    p = task_command(subparsers, "sae-circuit", "discrete-SAE circuit identification (node/edge head scores)",
                     _run, n_help="positive (= negative) prompts")
    p.add_argument("--truth-n", type=int, help="prompts for the activation-patching ground truth (0: none)")
    p.add_argument("--shares", default="0.5,0.8", help="shares of total |patching effect| defining the truth")
    p.add_argument("--top", type=int, default=10, help="how many top heads to list")
    config_defaults(p, *CONFIG_FLAGS)


CONFIG_FLAGS = [(("sae-circuit",), "interp.circuits.sae_circuits:SAECircuitConfig",
                 {"sae_seed": "seed", "d_sae": "n_latents", **same("epochs", "n_train")}),
    (("sae-circuit",), "interp.circuits.sae_circuits:run_sae_circuit",
     {"seed": "task_seed", **same("n", "corruption", "truth_n")})]
"""(command path, config, flag dest -> field): checked by tests/test_cli_grammar.py."""


def _run(args) -> int:
    shares = parse_list(args.shares, "--shares", cast=float)
    cfg = sc.SAECircuitConfig(**flag_settings(args, CONFIG_FLAGS[0]))
    r = sc.run_sae_circuit(model_of(args), args.task, cfg,
                           **flag_settings(args, CONFIG_FLAGS[1]), shares=shares)
    top = r.top_heads(args.top)
    lines = [f"{'head':8s} {'unique codes':>12s} {'edge votes':>10s}"]
    lines += [f"{t['head']:8s} {t['unique_codes']:12d} {t['edge_votes']:10d}" for t in top]
    payload = {"task": args.task, "model": r.model, "n": args.n, "top": top, "seconds": r.seconds,
               "evaluation": r.evaluation}
    return write_result(args, r, "\n".join(lines), payload)
