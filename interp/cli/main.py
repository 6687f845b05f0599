"""``interp`` entry point.

Every module ``interp/cli/cmd_<topic>.py`` defines ``register(subparsers)``, which adds its
subcommand(s) (with :func:`interp.cli.common.command`: the shared flags and their help) and sets
``func`` on the parser; this file discovers and wires them.  Each
command calls the same public Python function a notebook would, and prints either a human
summary or, with ``--json``, one JSON document on stdout.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import interp.cli as _pkg
from interp.cli.common import HelpFormatter


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="interp", description="interp: a mechanistic-interpretability workbench.", formatter_class=HelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(_pkg.__path__), key=lambda i: i.name):
        if info.name.startswith("cmd_"):
            importlib.import_module(f"interp.cli.{info.name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (KeyError, ValueError, OSError) as e:  # ValueError: UserError too; OSError: FileNotFoundError ...
        if getattr(args, "debug", False):
            raise
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"interp {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # also the torchrun entry point (`-m interp.cli.main dist cache`)
    from interp.parallel.launch import exit_worker

    exit_worker(main())
