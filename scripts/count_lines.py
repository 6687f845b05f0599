#!/usr/bin/env python3
"""Count code lines of a Python tree: non-blank, non-comment, non-docstring.

Usage: ``python scripts/count_lines.py [DIR ...]`` (default ``interp``); ``--per-file`` lists each file.
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


def code_lines(source: str) -> int:
    """Physical lines that carry a token other than a comment, newline or docstring."""
    skip = docstring_lines(ast.parse(source))
    counted: set[int] = set()
    ignore = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
              tokenize.ENCODING, tokenize.ENDMARKER}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type in ignore:
            continue
        for line in range(tok.start[0], tok.end[0] + 1):
            if line not in skip:
                counted.add(line)
    return len(counted)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dirs", nargs="*", default=["interp"])
    ap.add_argument("--per-file", action="store_true", help="print each file's count")
    args = ap.parse_args(argv)
    total = 0
    for d in args.dirs:
        for path in sorted(Path(d).rglob("*.py")):
            n = code_lines(path.read_text())
            total += n
            if args.per_file:
                print(f"{n:6d}  {path}")
    print(f"{total} code lines in {', '.join(args.dirs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
