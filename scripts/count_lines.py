#!/usr/bin/env python3
"""Count code lines of a Python tree: non-blank, non-comment, non-docstring.

Usage: ``python scripts/count_lines.py [DIR ...]`` (default ``interp``); ``--per-file`` lists each file.
A docstring is a string expression statement that opens a module, class or function body; its lines
are not counted, nor are comment-only and blank lines. Everything else (code, including lines of a
multi-line expression) counts once per physical line.
"""

from __future__ import annotations

import argparse
import ast
import io
import sys
import tokenize
from pathlib import Path


def docstring_lines(tree: ast.AST) -> set[int]:
    """Line numbers covered by module / class / function docstrings."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = getattr(node, "body", [])
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                    and isinstance(body[0].value.value, str):
                lines.update(range(body[0].lineno, body[0].end_lineno + 1))
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
