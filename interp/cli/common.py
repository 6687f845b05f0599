"""The one CLI grammar every ``interp`` subcommand is built from.

* :func:`command` makes a subparser whose ``--help`` shows every default
  (:class:`HelpFormatter`) and adds the shared flags with one help text each:
  ``--json``, ``--debug`` and ``--out`` everywhere; ``--model`` where a model is loaded; ``--seed``
  where prompts are drawn or something is initialised at random; ``--device`` with either (a model is
  loaded, or built and trained).
* One name per idea: ``--n`` counts prompts / sequences / texts, ``--n-tokens`` is a token (store
  row) budget, ``--seq-len`` is tokens per sequence, ``--ig-steps`` are integrated-gradient
  interpolation steps, ``--train-steps`` optimiser steps.
* ``--out``: commands that write files default it to ``runs/<command>[-<task>]`` (``<task>`` is
  filled in from the positional task; :func:`out_path`) and name it in their summary; commands
  that only print take ``--out FILE`` to also write their JSON document there (:func:`emit`).
* Flags that mirror a config dataclass field take its default from the module's :data:`CONFIG_FLAGS`
  table (:func:`config_defaults`), which also adds each such flag the command does not declare itself
  (type and help from the field: :func:`field_flag`), and the config is built from the same table
  (:func:`flag_settings`); tests/test_cli_grammar.py checks the mapping of every module.
* A command that computes a typed result ends in :func:`write_result` (results.json, report.html, the
  summary or ``--json``); :func:`model_of` loads ``--model`` on ``--device``.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import json
import pkgutil
import re
import sys
from pathlib import Path

import torch

from interp.config import field_default
from interp.results import Result, write_json

HELP = {
    "json": "print one JSON document on stdout instead of the human summary",
    "debug": "show the full traceback on errors",
    "out": ("where the command writes: its output folder or file (see the description), named in the summary; "
            "commands that only print write their JSON document there"),
    "model": "model name or checkpoint folder (see `interp models`); None: the model named by the input",
    "device": "torch device for the model, e.g. cpu, cuda, cuda:1 (None: cuda when available, else cpu)",
    "seed": "random seed of the prompts / data drawn and of any random initialisation",
}
"""The help text of each shared flag, the same under every command."""


class UserError(ValueError):
    """An error caused by the user's input; printed without a traceback (``main`` catches it as a ValueError)."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: X)`` after every option that has a default (not for None / off switches)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def command(sub, name: str, help: str, *, out: str | None, model: str | None | bool = False,
            seed: int | None | bool = False, func=None, **kw) -> argparse.ArgumentParser:
    """Add subcommand ``name`` with the shared flags.

    ``out``: the ``--out`` default (``runs/...``, may hold ``<task>``), ``None`` for commands that
    only print (``--out FILE`` then also receives the JSON).  ``model``: the ``--model`` default,
    or ``False`` for commands that load no model (then no ``--model``).  ``seed``: the ``--seed``
    default, or ``False`` for commands that draw nothing at random.  ``--device`` comes with ``--model``
    or ``--seed``: every command that loads a model, or builds and trains one (``interp sae train``,
    ``interp bigram-backcopy``), runs it somewhere.  ``func``: the function ``main`` runs with the parsed
    arguments.  ``kw`` goes to ``add_parser`` (``description`` defaults to ``help``).
    """
    p = sub.add_parser(name, help=help, formatter_class=HelpFormatter, **{"description": help, **kw})
    g = p.add_argument_group("shared options")
    g.add_argument("--json", action="store_true", help=HELP["json"])
    g.add_argument("--debug", action="store_true", help=HELP["debug"])
    g.add_argument("--out", default=out, metavar="PATH", help=HELP["out"])
    if model is not False:
        g.add_argument("--model", default=model, help=HELP["model"])
    if model is not False or seed is not False:
        g.add_argument("--device", type=device_arg, help=HELP["device"])
    if seed is not False:
        g.add_argument("--seed", type=int, default=seed, help=HELP["seed"])
    p.set_defaults(_out_is_json=out is None, func=func)
    return p


def group(sub, name: str, help: str):
    """``interp NAME SUBCOMMAND``: a command made of subcommands; returns the parsers' set to add them to."""
    return sub.add_parser(name, help=help).add_subparsers(metavar="SUBCOMMAND", required=True)


def device_arg(spec: str) -> str:
    """``--device`` value check: a torch device string whose backend is available here."""
    try:
        dev = torch.device(spec)
    except (RuntimeError, TypeError):
        raise argparse.ArgumentTypeError(f"{spec!r} is not a torch device (e.g. cpu, cuda, cuda:1, mps)") from None
    if dev.type == "cuda" and (dev.index or 0) >= torch.cuda.device_count():  # 0 devices: no CUDA here
        raise argparse.ArgumentTypeError(f"{spec!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise argparse.ArgumentTypeError(f"{spec!r}: MPS is not available on this machine")
    if dev.type == "meta":
        raise argparse.ArgumentTypeError(f"{spec!r}: meta tensors hold no data; the commands need real weights")
    return spec


def out_path(args) -> str:
    """``--out`` with ``<task>`` (the placeholder in an ``--out`` default such as ``runs/circuit-<task>``) filled
    in from the positional task."""
    return args.out.replace("<task>", getattr(args, "task", "") or "")


def default_of(cls, name: str):
    """The default of field ``name`` of dataclass ``cls`` (or of parameter ``name`` of a function)."""
    if dataclasses.is_dataclass(cls):
        return field_default({f.name: f for f in dataclasses.fields(cls)}[name])
    return inspect.signature(cls).parameters[name].default


def config_defaults(p, *entries, choices: dict | None = None) -> None:
    """Flags of parser ``p`` from the :data:`CONFIG_FLAGS` ``entries`` ``(path, "module:Target",
    {dest: field})``: each ``dest`` that ``p`` does not declare itself becomes ``--dest``
    (:func:`field_flag`, with ``choices[dest]``), and every ``dest`` takes its field's default (``--help``
    shows it): one table names each mapping."""
    have = {a.dest for a in p._actions}
    for _, target, fields in entries:
        cls = pkgutil.resolve_name(target)  # "module:Name"
        for dest, field in fields.items():
            if dest not in have:
                p.add_argument("--" + dest.replace("_", "-"), **field_flag(cls, field),
                               choices=(choices or {}).get(dest))
        p.set_defaults(**{dest: default_of(cls, field) for dest, field in fields.items()})


@functools.cache
def _field_docs(module: str) -> dict[str, dict[str, str]]:
    """The attribute docstring (the string under the field in the class body) of each field of every
    top-level class of ``module``: its source parsed once per process (``inspect.getsource`` re-parsed the
    whole module for each class, ~4 ms each at every CLI start)."""
    tree = ast.parse(Path(sys.modules[module].__file__).read_text(encoding="utf-8"))
    return {c.name: {a.target.id: s.value.value for a, s in zip(c.body, c.body[1:]) if isinstance(a, ast.AnnAssign)
                     and isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant)}
            for c in tree.body if isinstance(c, ast.ClassDef)}


def field_flag(cls, name: str) -> dict:
    """``add_argument`` keywords for field ``name`` of dataclass ``cls``: the type its annotation names
    (``int``, ``float`` or ``str``, maybe ``| None``) and, as help, its attribute docstring (reST markup
    removed)."""
    ann = next(f.type for f in dataclasses.fields(cls) if f.name == name)
    doc = " ".join(_field_docs(cls.__module__)[cls.__qualname__][name].split())
    doc = re.sub(r"(:\w+:)?`+([^`]*)`+", r"\2", doc).rstrip(".")
    return {"type": {"int": int, "float": float, "str": str}[str(ann).split(" |")[0]],
            "help": doc.replace("%", "%%")}


def flag_settings(args, entry) -> dict:
    """``{field: args.<dest>}`` for a :data:`CONFIG_FLAGS` entry ``(path, target, {dest: field})``: the
    settings a command passes on, named once (the same mapping tests/test_cli_grammar.py checks)."""
    return {field: getattr(args, dest) for dest, field in entry[2].items()}


def parse_list(spec: str, flag: str, choices=None, cast=str) -> tuple:
    """A comma-separated flag value -> tuple, each item cast and checked against ``choices``."""
    try:
        items = tuple(cast(x.strip()) for x in spec.split(",") if x.strip())
    except ValueError:
        raise ValueError(f"{flag} expects a comma-separated list, got {spec!r}") from None
    if not items:
        raise ValueError(f"{flag} is empty")
    if choices is not None:
        bad = [x for x in items if x not in choices]
        if bad:
            raise ValueError(f"{flag}: unknown {bad}; choose from {list(choices)}")
    return items


def parse_layers(spec) -> tuple[int, ...]:
    """``3,4,5`` / ``3-5`` / ``3 4 5`` (a list of such) -> sorted unique layer indices."""
    out: set[int] = set()
    for item in parse_list(",".join([spec] if isinstance(spec, str) else map(str, spec)), "--layers"):
        first, _, last = item.partition("-")
        try:
            out.update(range(int(first), int(last or first) + 1))
        except ValueError:
            raise ValueError(f"--layers must look like 3,4,5 or 3-5, got {spec!r}") from None
    if not out:  # a range such as 5-3
        raise ValueError(f"--layers is empty, got {spec!r}")
    return tuple(sorted(out))


def same(*names: str) -> dict[str, str]:
    """``{name: name}``: the part of a :data:`CONFIG_FLAGS` mapping whose flag dest is the field's name."""
    return {n: n for n in names}


def model_of(args):
    """The model named by ``--model``, on ``--device``."""
    from interp.models import load_model  # looked up at call time (tests/test_cli_grammar.py patches it)

    return load_model(args.model, device=args.device)


def write_result(args, result, extra: str = "", payload: dict | None = None) -> int:
    """A command's typed result: ``results.json`` and ``report.html`` in ``--out`` (:func:`out_path`), then
    its summary sentence (and ``extra`` lines) or, with ``--json``, ``payload`` (default: the result's JSON)
    on stdout.  Under ``interp dist`` only rank 0 writes: every rank holds the same result once the run's
    closing barrier has passed."""
    from interp.parallel import dist_env

    if not dist_env().is_main:
        return 0
    rj, html = result.write(out_path(args))
    lines = [result.summary().replace("**", ""), extra, f"  wrote {rj}, {html}"]
    return emit(args, result.to_json() if payload is None else payload, "\n".join(x for x in lines if x))


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
