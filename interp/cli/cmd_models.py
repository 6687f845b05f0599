"""``interp models``: list the models interp knows and whether each loads here."""

from __future__ import annotations

from dataclasses import asdict

from interp.cli.common import command, emit
from interp.models import list_models


def register(sub) -> None:
    command(sub, "models", help="list known models (bundled real models and tiny test models)", out=None,
            func=run)


def run(args) -> int:
    models = list_models()
    lines = [f"{'name':<14} {'here':<5} description"]
    for m in models:
        lines.append(f"{m.name:<14} {'yes' if m.available else 'no':<5} {m.description}")
    lines.append("Also accepted: a local Hugging Face checkpoint folder, or a hub id where a hub is reachable.")
    return emit(args, {"models": [asdict(m) for m in models]}, "\n".join(lines))
