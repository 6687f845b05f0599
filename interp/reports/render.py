"""``render_results``: a ``results.json`` (or its dict) -> the :class:`Report` of its typed result.

Every result interp writes is typed (:mod:`interp.results`): ``render_results`` reads the file
(:func:`interp.results.read_results`), dispatches on ``kind`` and returns that type's own ``report()``.
There is no shape-guessing fallback: an unknown kind, no kind, a newer schema, or a file of a known kind
without ``schema_version`` is a :class:`interp.results.ResultSchemaError` naming the known kinds; a
missing, empty, non-UTF-8 or malformed file is a ``ValueError`` / ``FileNotFoundError`` saying which.

Cost: one JSON parse of the file and the result's own report.
"""

from __future__ import annotations

from pathlib import Path

from interp.reports.report import Report
from interp.results import load_result


def render_results(results: dict | str | Path) -> Report:
    """The report of a results dict or ``results.json`` path (a folder means its ``results.json``)."""
    return load_result(results).report()
