"""The project's docs stand alone: nothing cites a file outside the repository, and every citation of
the methods reference by section name names a section that exists.

Citations take the form ``docs/methods.md, <Section>`` where ``<Section>`` is a heading of
docs/methods.md, so renaming a section breaks this test until its citations follow."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("interp", "tests", "bench", "docs", "notebooks", "circuits", "scripts", "README.md")
SKIP_DIRS = {"__pycache__", ".ipynb_checkpoints", ".pytest_cache"}
METHODS = ROOT / "docs" / "methods.md"
SELF = Path(__file__).resolve().relative_to(ROOT).as_posix()
# Split so that this file does not match itself.
FORBIDDEN = ("METHODS" + ".md", ".." + "/shared", "shared" + "/docs")
CITATION = re.compile(r"docs/methods\.md(,\s*|\s*(?:sections?\b|§))")
# What may follow a section name in a citation: the end of the text, whitespace or punctuation.
# Not '-' or a letter, so that a citation of "EAP-IG" does not pass on a heading "EAP".
END_OF_NAME = set(" \t\r\n).,;:]'\"`\\*")


def _text_files():
    for name in SCANNED:
        top = ROOT / name
        paths = [top] if top.is_file() else sorted(top.rglob("*")) if top.is_dir() else []
        for p in paths:
            if not p.is_file() or SKIP_DIRS & set(p.relative_to(ROOT).parts):
                continue
            data = p.read_bytes()
            if b"\0" in data:
                continue  # binary (safetensors fixtures)
            try:
                yield p.relative_to(ROOT).as_posix(), data.decode("utf-8")
            except UnicodeDecodeError:
                continue


def _headings() -> list[str]:
    out = []
    in_code = False
    for line in METHODS.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
        m = None if in_code else re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            out.append(m.group(1))
    return out


def _continued(lines: list[str], i: int, start: int) -> str:
    """The text after position ``start`` of line ``i``, joined with the next line (a citation may wrap
    in a docstring or a comment), whitespace and comment markers collapsed to single spaces."""
    nxt = lines[i + 1].strip().lstrip("#:").strip() if i + 1 < len(lines) else ""
    return re.sub(r"\s+", " ", lines[i][start:] + " " + nxt)


def _names_a_heading(text: str, headings: list[str]) -> bool:
    return any(text.startswith(h) and (len(text) == len(h) or text[len(h)] in END_OF_NAME) for h in headings)


def test_no_citation_outside_the_repository():
    """No project file cites the background notes outside the repository (users do not have them)."""
    bad = []
    for path, text in _text_files():
        for n, line in enumerate(text.splitlines(), 1):
            for pat in FORBIDDEN:
                if pat in line:
                    bad.append(f"{path}:{n}: cites {pat!r}: {line.strip()[:120]}")
    assert not bad, "citations of files outside the repository:\n" + "\n".join(bad)


def test_methods_citations_name_existing_sections():
    """Every ``docs/methods.md, <Section>`` names a heading of docs/methods.md; numbered citations
    (``section 1``, ``§7``) are refused because a renumbering would break them silently."""
    headings = _headings()
    assert headings, "docs/methods.md has no headings"
    dup = sorted({h for h in headings if headings.count(h) > 1})
    assert not dup, f"docs/methods.md repeats headings {dup}: a citation of one would be ambiguous"
    bad, n_cited = [], 0
    for path, text in _text_files():
        if path == SELF:
            continue  # the checker's own docstrings and examples are not citations
        lines = text.splitlines()
        for i, line in enumerate(lines):
            for m in CITATION.finditer(line):
                where = f"{path}:{i + 1}"
                if not m.group(1).startswith(","):
                    bad.append(f"{where}: numbered citation {line[m.start():m.end() + 12].strip()!r}; "
                               "cite a section by name: 'docs/methods.md, <Section>'")
                    continue
                n_cited += 1
                rest = _continued(lines, i, m.end())
                if not _names_a_heading(rest, headings):
                    bad.append(f"{where}: 'docs/methods.md, {rest[:40]}...' names no heading of docs/methods.md")
    assert not bad, "\n".join(bad) + "\nheadings: " + "; ".join(headings)
    assert n_cited >= 18, f"only {n_cited} citations of docs/methods.md found; the modules cite it"


def test_citation_matching_rules():
    """The matcher itself: a name must be followed by punctuation or the end, a wrapped name joins."""
    hs = ["EAP", "EAP and EAP-IG", "RelP", "Steering (GrAInS, mean-difference, feature steering)"]
    assert _names_a_heading("RelP) and more", hs)
    assert _names_a_heading("RelP", hs)
    assert _names_a_heading("EAP and EAP-IG)::", hs)
    assert _names_a_heading("Steering (GrAInS, mean-difference, feature steering).", hs)
    assert not _names_a_heading("RelPx", hs)
    assert not _names_a_heading("EAP-IG", hs)  # 'EAP' followed by '-' is not the heading 'EAP'
    assert not _names_a_heading("Relevance patching", hs)
    lines = ["x (docs/methods.md, EAP and", "    EAP-IG) y"]
    m = CITATION.search(lines[0])
    assert _names_a_heading(_continued(lines, 0, m.end()), hs)
    assert CITATION.search("see docs/methods.md section 1").group(1).strip().startswith("section")
    assert CITATION.search("docs/methods.md §7").group(1).strip() == "§"
