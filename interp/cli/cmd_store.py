"""``interp store info DIR``: summarise (and optionally verify) an activation store: prints the
summary of its :class:`~interp.store.summary.StoreSummary` (kind ``store``), or its JSON; ``--out FILE``
also writes that JSON (a results file: ``interp report FILE`` renders it).

``interp store sinks DIR``: attention-sink score and row entropy per (layer, head), rebuilt from
stored post-rotary queries and keys (:func:`interp.phenomena.sinks.sink_scores_from_store`): its typed
:class:`~interp.phenomena.sinks.StoreSinks` (kind ``store_sinks``) summary and strongest heads, or its JSON;
``--out FILE`` also saves it there.
"""

from __future__ import annotations

from interp.cli.common import command, config_defaults, emit, flag_settings, group, parse_layers
from interp.models.hooks import head_label
from interp.phenomena.sinks import sink_scores_from_store
from interp.store import ActivationStore
from interp.store.summary import summarize_store


def register(sub) -> None:
    ssub = group(sub, "store", "inspect activation stores")
    typed = "; --out FILE receives the typed result (render it with `interp report FILE`)"
    what = "summarise a store: model, hooks, rows, size, completeness, row norms"
    q = command(ssub, "info", help=what, description=what + typed, out=None, func=run_info)
    q.add_argument("dir", help="store directory")
    q.add_argument("--verify", action="store_true", help="check the CRC-32 of every shard file")
    q.add_argument("--n-tokens", type=int,
                   help="token budget: rows per hook, spread over the store, for the row norms")
    config_defaults(q, CONFIG_FLAGS[0])
    what = "sink score / row entropy per head from stored blocks.L.attn.hook_rot_q/k rows"
    q = command(ssub, "sinks", help=what, description=what + typed, out=None, func=run_sinks)
    q.add_argument("dir", help="store directory (cached with skip_bos off, hooks blocks.*.attn.hook_rot_q/k)")
    q.add_argument("--layers", nargs="+",
                   help="layers, e.g. 3,4,5 or 3-5 or 3 4 5 (None: every layer stored)")
    q.add_argument("--scale", type=float, help="attention scale (None: 1/sqrt(d_head))")
    q.add_argument("--n", type=int, help="use at most this many sequences (None: all)")
    q.add_argument("--threshold", type=float, help="sink score at which a head is listed")
    config_defaults(q, CONFIG_FLAGS[1])


CONFIG_FLAGS = [(("store", "info"), "interp.store.summary:summarize_store", {"n_tokens": "n_norm_rows"}),
                (("store", "sinks"), "interp.phenomena.sinks:sink_scores_from_store",
                 {"scale": "scale", "n": "max_seqs", "threshold": "sink_threshold"})]
"""(command path, function, flag dest -> parameter): checked by tests/test_cli_grammar.py."""


def run_info(args) -> int:
    res = summarize_store(ActivationStore.open(args.dir, verify="size"), verify=args.verify,
                          n_norm_rows=args.n_tokens)
    return emit(args, res, res.summary())


def run_sinks(args) -> int:
    layers = None if args.layers is None else list(parse_layers(args.layers))
    res = sink_scores_from_store(ActivationStore.open(args.dir, verify="size"), layers=layers,
                                 **flag_settings(args, CONFIG_FLAGS[1]))
    top = [f"  {head_label(L, h)}  {s:.3f}" for L, h, s in res.sink_heads()[:20]]
    return emit(args, res, "\n".join([res.summary().replace("**", ""), *top]))
