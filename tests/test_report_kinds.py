"""Every registered result kind has a browser test (issue 15: each report kind rendered from a real
small run in headless Chromium).

A browser test declares its kinds with ``@report_test("kind")`` (tests/browser.py), which makes the
test fail unless it ran ``check_result_report`` on a result of each declared kind; here the
declarations are read from the test sources, so the check holds whichever subset of tests runs and
in whatever order."""

from __future__ import annotations

import ast
from pathlib import Path

from interp.results import known_kinds

TESTS = Path(__file__).parent
PENDING: set[str] = set()
"""Kinds whose browser test lands from another branch (issue 15); this test fails once such a kind
has its test, so the entry is removed when it lands."""


def declared_kinds() -> dict[str, list[str]]:
    """kind -> the tests that declare it with ``@report_test(...)``."""
    out: dict[str, list[str]] = {}
    for path in sorted(TESTS.glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.FunctionDef):
                continue
            for dec in node.decorator_list:
                func = dec.func if isinstance(dec, ast.Call) else None
                if getattr(func, "id", getattr(func, "attr", None)) == "report_test":
                    for arg in dec.args:
                        out.setdefault(arg.value, []).append(f"{path.name}::{node.name}")
    return out


def test_every_result_kind_has_a_browser_test():
    declared = declared_kinds()
    kinds = set(known_kinds())
    missing = kinds - set(declared) - PENDING
    assert not missing, f"result kind(s) without a browser test (@report_test in tests/): {sorted(missing)}"
    assert not PENDING & set(declared), f"remove {sorted(PENDING & set(declared))} from PENDING: their test landed"
    assert not set(declared) - kinds, f"browser tests of unregistered kinds: {sorted(set(declared) - kinds)}"
    assert {"attribution", "compare", "steering_comparison"} <= set(declared)
