"""``render_results``: a ``results.json`` (or its dict) -> the :class:`Report` of its typed result.

Every result interp writes is typed (:mod:`interp.results`): ``render_results`` reads the file,
dispatches on ``kind`` and returns that type's own ``report()``.  There is no shape-guessing
fallback: an unknown kind, no kind, a newer schema, or a file of a known kind without
``schema_version`` is a :class:`interp.results.ResultSchemaError` naming the known kinds; a missing,
empty, non-UTF-8 or malformed file is a ``ValueError`` / ``FileNotFoundError`` saying which.

Cost: one JSON parse of the file and the result's own report.
"""

from __future__ import annotations

import json
from pathlib import Path

from interp.reports.report import Report


def load_results(results: dict | str | Path) -> tuple[dict, str]:
    """The results as a dict, and a name for messages.  Clear ``ValueError`` on bad input."""
    if isinstance(results, dict):
        data, src = results, "results"
    elif isinstance(results, (str, Path)):
        p = Path(results)
        if p.is_dir():
            p = p / "results.json"
        if not p.exists():
            raise FileNotFoundError(f"results file {p} does not exist")
        src = str(p)
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"{src} is not UTF-8 text (byte {e.start}); expected a results.json") from None
        if not text.strip():
            raise ValueError(f"{src} is empty; expected a JSON object")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{src} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}") from None
        except RecursionError:
            raise ValueError(f"{src}: JSON nested too deeply to read") from None
    else:
        raise ValueError(f"render_results expects a dict or a path to a results.json, got {type(results).__name__}")
    if not isinstance(data, dict):
        raise ValueError(f"{src}: expected a JSON object at the top level (with a \"kind\" field such as "
                         f"\"circuit\"), got a JSON {type(data).__name__}")
    return data, src


def render_results(results: dict | str | Path, title: str | None = None) -> Report:
    """The report of a results dict or ``results.json`` path (a folder means its ``results.json``)."""
    from interp.results import ResultSchemaError, known_kinds, load_result

    data, src = load_results(results)
    kind = data.get("kind")
    if not isinstance(kind, str) or kind not in known_kinds():
        raise ResultSchemaError(f"{src}: unknown results kind {kind!r:.60}; known kinds: "
                                f"{', '.join(sorted(known_kinds()))}")
    rep = load_result(data).report()  # already read above: no second parse of the file
    rep.title = title or rep.title
    return rep
