"""``interp store info DIR``: summarise (and optionally verify) an activation store: prints the
summary of its :class:`~interp.store.summary.StoreSummary` (kind ``store``), or its JSON; ``--out FILE``
also writes that JSON (a results file: ``interp report FILE`` renders it).

``interp store sinks DIR``: attention-sink score and row entropy per (layer, head), rebuilt from
stored post-rotary queries and keys (:func:`interp.phenomena.sinks.sink_scores_from_store`).
"""

from __future__ import annotations

from interp.cli.main import emit


def register(sub) -> None:
    from interp.cli.common import command, config_defaults

    p = sub.add_parser("store", help="inspect activation stores")
    ssub = p.add_subparsers(dest="store_command", metavar="SUBCOMMAND", required=True)
    q = command(ssub, "info", help="summarise a store: model, hooks, rows, size, completeness, row norms", out=None,
                description="summarise a store: model, hooks, rows, size, completeness, row norms; "
                            "--out FILE receives the typed result (render it with `interp report FILE`)")
    q.add_argument("dir", help="store directory")
    q.add_argument("--verify", action="store_true", help="check the CRC-32 of every shard file")
    q.add_argument("--n-tokens", type=int,
                   help="token budget: rows per hook, spread over the store, for the row norms")
    config_defaults(q, CONFIG_FLAGS[0])
    q.set_defaults(func=run_info)
    q = command(ssub, "sinks", help="sink score / row entropy per head from stored blocks.L.attn.hook_rot_q/k rows",
                out=None)
    q.add_argument("dir", help="store directory (cached with skip_bos off, hooks blocks.*.attn.hook_rot_q/k)")
    q.add_argument("--layers", nargs="+", default=None, help="layers, e.g. 3,4,5 or 3-5 or 3 4 5 (None: every layer stored)")
    q.add_argument("--scale", type=float, default=None, help="attention scale (None: 1/sqrt(d_head))")
    q.add_argument("--n", type=int, default=None, help="use at most this many sequences (None: all)")
    q.add_argument("--threshold", type=float, default=0.8, help="sink score at which a head is listed")
    q.set_defaults(func=run_sinks)


CONFIG_FLAGS = [(("store", "info"), "interp.store.summary:summarize_store", {"n_tokens": "n_norm_rows"})]
"""(command path, function, flag dest -> parameter): checked by tests/test_cli_grammar.py."""


def run_info(args) -> int:
    from interp.store import ActivationStore
    from interp.store.summary import summarize_store

    res = summarize_store(ActivationStore.open(args.dir, verify="size"), verify=args.verify,
                          n_norm_rows=args.n_tokens)
    emit(args, res.to_json(), res.summary())
    return 0


def run_sinks(args) -> int:
    from interp.cli.common import parse_layers
    from interp.models.hooks import head_hook, head_label
    from interp.phenomena.sinks import sink_scores_from_store
    from interp.store import ActivationStore

    store = ActivationStore.open(args.dir, verify="size")
    layers = None if args.layers is None else list(parse_layers(args.layers))
    res = sink_scores_from_store(store, layers=layers, scale=args.scale, max_seqs=args.n)
    layers = res["layers"].tolist()
    sink = res["sink_score"]
    heads = [(L, h, float(sink[i, h])) for i, L in enumerate(layers) for h in range(sink.shape[1])
             if sink[i, h] >= args.threshold]
    info = {"store": str(store.path), "model": store.manifest.get("model"), "n_seqs": int(res["n_seqs"]),
            "layers": layers, "sink_score": sink.tolist(), "row_entropy": res["row_entropy"].tolist(),
            "threshold": args.threshold, "sink_heads": [head_hook(L, h) for L, h, _ in heads]}
    lines = [f"sinks from store {store.path}: {info['n_seqs']} sequences, layers {layers[0]}..{layers[-1]}",
             f"  heads with sink score >= {args.threshold}: {len(heads)} of {sink.numel()}"]
    lines += [f"  {head_label(L, h)}  {s:.3f}" for L, h, s in sorted(heads, key=lambda t: -t[2])[:20]]
    emit(args, info, "\n".join(lines))
    return 0
