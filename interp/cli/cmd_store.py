"""``interp store info DIR``: summarise (and optionally verify) an activation store."""

from __future__ import annotations

from interp.cli.main import emit


def register(sub) -> None:
    p = sub.add_parser("store", help="inspect activation stores")
    ssub = p.add_subparsers(dest="store_command", metavar="SUBCOMMAND")
    ssub.required = True
    q = ssub.add_parser("info", help="summarise a store: model, hooks, rows, size, completeness")
    q.add_argument("dir", help="store directory")
    q.add_argument("--verify", action="store_true", help="check the CRC-32 of every shard file")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q.set_defaults(func=run_info)


def run_info(args) -> int:
    from interp.store import ActivationStore

    store = ActivationStore.open(args.dir, verify="size")
    info = store.info()
    if args.verify:
        info["verify"] = store.verify()
    hooks = "\n".join(f"  {h:<40} d={v['d']:<6} row_shape={tuple(v['row_shape'])}" for h, v in info["hooks"].items())
    status = "complete" if info["complete"] else f"PARTIAL ({info['n_rows']:,} of {info['n_rows_target']:,} rows)"
    human = (
        f"store {info['path']}: {status}\n"
        f"  model {info['model']} (weights {info['weight_hash']}), dtype {info['dtype']}, "
        f"context {info['context_length']}, {info['n_rows']:,} rows in {info['n_shards']} shards of "
        f"{info['shard_rows']:,}, {info['bytes'] / 2**20:.1f} MiB\n"
        f"  corpus {info['corpus']}\n  hooks:\n{hooks}"
        + ("\n  verify: all files match their CRC-32" if args.verify else "")
    )
    emit(args, info, human)
    return 0
