"""``interp compare ioi|greater-than``: every attribution method vs activation patching (Pearson r, time)."""

from __future__ import annotations

from interp.circuits.compare import COMPONENTS, METHOD_SPECS, compare_methods
from interp.cli.common import (
    config_defaults, default_of, flag_settings, model_of, out_path, parse_list, same, task_command,
    write_result)


def register(subparsers) -> None:
    p = task_command(subparsers, "compare",
                     "AtP, RelP, IG vs activation patching on one task (Pearson r, wall time)", _run,
                     note="; s2 is the like-for-like RelP Table 1 setting")
    p.add_argument("--methods", default=",".join(m for m in METHOD_SPECS if m != "ig-embed"),
                   help=f"comma list from {', '.join(METHOD_SPECS)} (relp: the RelP paper's default rules; relp-cp-lrp "
                        "adds the AH-rule, CP-LRP on attention; ig: per-hook IG; ig-embed: EAP-IG node form)")
    p.add_argument("--components", default=",".join(default_of(compare_methods, "components")),
                   help=f"comma list of component types from {', '.join(COMPONENTS)} (attn: attention output per "
                        "layer and position, the RelP paper's column)")
    config_defaults(p, *CONFIG_FLAGS)


CONFIG_FLAGS = [(("compare",), "interp.circuits.compare:compare_methods", same("n", "seed", "corruption"))]
"""(command path, config, flag dest -> field / parameter): checked by tests/test_cli_grammar.py."""


def _run(args) -> int:
    methods = parse_list(args.methods, "--methods", METHOD_SPECS)
    components = parse_list(args.components, "--components", COMPONENTS)
    r = compare_methods(model_of(args), args.task, **flag_settings(args, CONFIG_FLAGS[0]), methods=methods,
                        progress=True,
                        components=components)
    cts = r.config["components"]
    lines = [f"{'method':14s} " + " ".join(f"{c:>9s}" for c in cts) + f" {'seconds':>9s}"]
    for m, secs in r.seconds.items():
        vals = r.pearson.get(m, {})
        cells = " ".join(f"{vals[c]:9.3f}" if vals.get(c) is not None else f"{'undef' if vals else '':>9s}" for c in cts)
        lines.append(f"{m:14s} {cells} {secs:9.2f}")
    lines += [f"WARNING: r of {m} on {c} is undefined: {why}"
              for m, d in r.pearson_undefined.items() for c, why in d.items()]
    payload = {"summary": r.summary(), "pearson": r.pearson, "pearson_undefined": r.pearson_undefined,
               "seconds": r.seconds, "out": out_path(args)}
    return write_result(args, r, "\n".join(lines), payload)
