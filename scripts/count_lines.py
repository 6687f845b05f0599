#!/usr/bin/env python3
"""Count code lines of a Python tree: non-blank, non-comment, non-docstring.

Usage: ``python scripts/count_lines.py [PATH ...]`` (folders or files; default ``interp``); ``--per-file``
lists each file; ``--tokens`` also counts code tokens (names, operators, literals; docstrings, comments
and layout excluded), a size that joining lines cannot shrink.
A docstring is a string expression statement that opens a module, class or function body, or an
attribute docstring (a string right after an assignment in a module or class body); its lines are
not counted, nor are comment-only and blank lines. Everything else (code, including lines of a
multi-line expression) counts once per physical line.
"""

from __future__ import annotations

import argparse
import ast
import io
import sys
import tokenize
from pathlib import Path


def _is_string(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)


def docstring_lines(tree: ast.AST) -> set[int]:
    """Line numbers covered by docstrings: the string that opens a module / class / function body,
    and an attribute docstring (PEP 257: a string right after an assignment in a module or class
    body, e.g. under a dataclass field), which Sphinx and IDEs show as that attribute's doc."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = getattr(node, "body", [])
            if body and _is_string(body[0]):
                lines.update(range(body[0].lineno, body[0].end_lineno + 1))
            if isinstance(node, (ast.Module, ast.ClassDef)):
                for prev, stmt in zip(body, body[1:]):
                    if _is_string(stmt) and isinstance(prev, (ast.Assign, ast.AnnAssign)):
                        lines.update(range(stmt.lineno, stmt.end_lineno + 1))
    return lines


def code_size(source: str) -> tuple[int, int]:
    """(physical lines, tokens) of code: tokens other than comments, layout and docstrings, and the
    lines they touch."""
    skip = docstring_lines(ast.parse(source))
    counted: set[int] = set()
    n_tokens = 0
    ignore = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
              tokenize.ENCODING, tokenize.ENDMARKER}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type in ignore or tok.start[0] in skip:
            continue
        n_tokens += 1
        counted.update(range(tok.start[0], tok.end[0] + 1))
    return len(counted), n_tokens


def code_lines(source: str) -> int:
    """Physical lines that carry a token other than a comment, newline or docstring."""
    return code_size(source)[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dirs", nargs="*", default=["interp"], help="folders or .py files")
    ap.add_argument("--per-file", action="store_true", help="print each file's count")
    ap.add_argument("--tokens", action="store_true", help="also count code tokens")
    args = ap.parse_args(argv)
    lines = tokens = 0
    for d in args.dirs:
        paths = [Path(d)] if Path(d).is_file() else sorted(Path(d).rglob("*.py"))
        for path in paths:
            n, t = code_size(path.read_text())
            lines, tokens = lines + n, tokens + t
            if args.per_file:
                print(f"{n:6d}  {path}" + (f"  {t:7d} tokens" if args.tokens else ""))
    print(f"{lines} code lines in {', '.join(args.dirs)}" + (f"; {tokens} code tokens" if args.tokens else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
