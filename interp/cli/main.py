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
import json
import pkgutil
import sys

import interp.cli as _pkg
from interp.cli.common import HelpFormatter, command
from interp.results import Result, write_json


class UserError(Exception):
    """An error caused by the user's input; printed without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="interp", description="interp: a mechanistic-interpretability workbench.", formatter_class=HelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(_pkg.__path__), key=lambda i: i.name):
        if info.name.startswith("cmd_"):
            importlib.import_module(f"interp.cli.{info.name}").register(sub)
    return parser


CORRUPTION_HELP = ("the task's corruption: ioi abc (three fresh names) or s2 (the second S replaced by "
                   "the IO name, as in the RelP / TL attribution-patching demos); greater-than 01 "
                   "(None: the task's default, the first)")


def task_command(sub, name: str, help: str, func, n_help: str = "number of prompts", note: str = ""
                 ) -> argparse.ArgumentParser:
    """A command on one task running ``func``: ``command(...)`` with ``--out runs/<name>-<task>``,
    ``--model`` and ``--seed``, then the task and ``--n`` / ``--corruption`` (every corruption of every task,
    ``interp.tasks.CORRUPTIONS``; make_task checks the pair); their defaults come from the command's
    ``CONFIG_FLAGS`` (``config_defaults``)."""
    from interp.tasks import CORRUPTIONS

    p = command(sub, name, help=help, out=f"runs/{name}-<task>", model="smollm2-135m", seed=None, func=func)
    p.add_argument("task", choices=["ioi", "greater-than"])
    p.add_argument("--n", type=int, help=n_help)
    p.add_argument("--corruption", help=CORRUPTION_HELP + note,
                   choices=sorted({c for cs in CORRUPTIONS.values() for c in cs}))
    return p


def emit(args, payload: dict | Result, human: str) -> int:
    """Print ``payload`` (a dict, or a typed result as its JSON) as JSON when ``--json`` was given, else the
    human summary; returns exit status 0.

    For commands that only print (``--out`` defaults to None), ``--out FILE`` also writes the JSON document
    to FILE (:func:`interp.results.write_json`, which ``Result.save`` writes with)."""
    doc = payload.to_json() if isinstance(payload, Result) else payload
    if args._out_is_json and args.out:
        human += f"\nwrote {write_json(doc, args.out)}"
    print(json.dumps(doc, indent=2, default=str) if args.json else human)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (UserError, KeyError, ValueError, OSError) as e:  # OSError: FileNotFoundError, FileExistsError too
        if getattr(args, "debug", False):
            raise
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"interp {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # also the torchrun entry point (`-m interp.cli.main dist cache`)
    from interp.cli.main import main as _main  # the module the commands import (its UserError), not __main__
    from interp.parallel.launch import exit_worker

    exit_worker(_main())
