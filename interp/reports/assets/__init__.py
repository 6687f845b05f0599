"""The reports' static assets: the CSS and JavaScript that every standalone report, token view and
attention viewer inlines (kept as .css / .js files, not Python strings, so editors and linters see them).
``report_draw.js`` and ``attention.js`` are %-format templates (``%s`` / ``%(id)s``); ``%%`` is a literal %."""

from functools import cache
from pathlib import Path


@cache
def asset(name: str) -> str:
    """The text of ``name`` in this folder (read once)."""
    return (Path(__file__).parent / name).read_text(encoding="utf-8")
