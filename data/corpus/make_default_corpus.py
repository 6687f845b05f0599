"""Build the offline default corpus: English prose from Python docstrings, deduplicated.

No machine here reaches a dataset hub, yet caching must work out of the box on natural
text (not random tokens).  The default corpus is prose written by people: the docstrings of
the Python standard library and of widely used open-source packages (transformers, torch,
numpy, scipy, scikit-learn, ...).  It is built once by this script and shipped as
``data/corpus/default.jsonl.xz`` (one JSON object per source module: ``{"text", "source"}``),
so every machine reads the same bytes; ``data/corpus/NOTICE.md`` lists the sources and their
licenses (PSF, BSD, Apache-2.0, MIT: all permit redistribution with attribution).

Algorithm:

1. Walk the ``.py`` files of each source in sorted path order (tests excluded), parse each
   with :mod:`ast` and take every module / class / function docstring.
2. Split docstrings into paragraphs at blank lines; join each paragraph's lines.  Keep a
   paragraph if it reads as prose: >= 8 words, >= 85 % letters and spaces, a sentence end
   (``word.``), no doctest (``>>>``), not a list/table/field line or section underline, not a parameter entry
   (``name : type``).
3. Drop exact duplicates (case-insensitive), then write one document per module.
4. Stop once ``target_chars`` characters are collected.

Size: 6.0 MB of text in 3,404 documents, 1.36 MB compressed; 1,432,367 tokens with the
SmolLM2 tokenizer as built (``python data/corpus/make_default_corpus.py --count`` recounts).

Regenerate with ``python data/corpus/make_default_corpus.py`` (the output depends on the
installed package versions, recorded in NOTICE.md).
"""

from __future__ import annotations

import argparse
import ast
import importlib.metadata as md
import importlib.util
import json
import lzma
import re
import sys
import sysconfig
from collections import Counter
from pathlib import Path

from interp.store.corpus import DATA_DIR, DEFAULT_CORPUS

# (source name, distribution for version/license, import package) in build order
SOURCES = [
    ("stdlib", None, None),
    ("transformers", "transformers", "transformers"),
    ("torch", "torch", "torch"),
    ("numpy", "numpy", "numpy"),
    ("scipy", "scipy", "scipy"),
    ("sklearn", "scikit-learn", "sklearn"),
    ("pandas", "pandas", "pandas"),
    ("matplotlib", "matplotlib", "matplotlib"),
]
_SKIP_DIRS = {"test", "tests", "testing", "idlelib", "site-packages", "__pycache__", "_vendor", "vendored"}
_RULE = re.compile(r"^[-=~^]{3,}$")
_SENTENCE = re.compile(r"[a-z][.!?](\s|$)")
_PARAM = re.compile(r"^\w+\s*(\(|:)\s*[\w\[\], |.]*\)?\s*:?")


def _prose(par: str) -> bool:
    """>= 8 words, >= 85 % letters and spaces, a sentence end, no doctest."""
    return (">>>" not in par and "..." not in par[:4] and len(par.split()) >= 8
            and sum(c.isalpha() or c.isspace() for c in par) / len(par) >= 0.85
            and bool(_SENTENCE.search(par)))


def _paragraphs(doc: str):
    for par in re.split(r"\n\s*\n", doc):
        lines = [ln.strip() for ln in par.splitlines() if ln.strip()]
        if not lines or lines[0].startswith(("-", "*", "+", "|", "=", ":", ".. ", "#")):
            continue
        if any(_RULE.match(ln) for ln in lines):
            continue  # a section header underline (numpydoc "Parameters\n----------")
        if len(lines) > 1 and _PARAM.match(lines[0]) and len(lines[0].split()) <= 6:
            continue  # numpydoc / google-style parameter entry
        text = " ".join(lines)
        if _prose(text):
            yield text


def _source_root(pkg: str | None) -> Path | None:
    if pkg is None:
        return Path(sysconfig.get_paths()["stdlib"])
    spec = importlib.util.find_spec(pkg)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def iter_documents(target_chars: int):
    """Yield ``{"text", "source"}`` documents until ``target_chars`` characters."""
    seen: set[str] = set()
    total = 0
    for name, _dist, pkg in SOURCES:
        root = _source_root(pkg)
        if root is None:
            continue
        for f in sorted(root.rglob("*.py")):
            rel = f.relative_to(root)
            if _SKIP_DIRS & set(rel.parts[:-1]) or rel.name.startswith("test_"):
                continue
            try:
                tree = ast.parse(f.read_text(encoding="utf-8"))
            except (SyntaxError, UnicodeDecodeError, ValueError):
                continue
            pars = []
            for node in ast.walk(tree):
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                    doc = ast.get_docstring(node)
                    for p in _paragraphs(doc or ""):
                        if p.lower() not in seen:
                            seen.add(p.lower())
                            pars.append(p)
            if pars:
                text = "\n\n".join(pars)
                yield {"text": text, "source": f"{name}:{rel.as_posix()}"}
                total += len(text)
                if total >= target_chars:
                    return


def build(out: Path = DEFAULT_CORPUS, target_chars: int = 6_000_000) -> dict:
    """Write the default corpus and its NOTICE; returns a summary."""
    out.parent.mkdir(parents=True, exist_ok=True)
    n_docs = n_chars = 0
    used: Counter[str] = Counter()
    tmp = out.with_name(out.name + ".tmp")
    with lzma.open(tmp, "wt", encoding="utf-8", preset=9) as f:
        for doc in iter_documents(target_chars):
            f.write(json.dumps(doc, ensure_ascii=False) + "\n")
            n_docs += 1
            n_chars += len(doc["text"])
            src = doc["source"].split(":", 1)[0]
            used[src] += len(doc["text"])
    tmp.replace(out)
    lines = ["# Default corpus: sources and licenses", "",
             f"Built by `python data/corpus/make_default_corpus.py` ({n_docs} documents, {n_chars:,} characters).",
             "Each document is the prose paragraphs of the docstrings of one module, deduplicated.", "",
             "| source | version | license | characters |", "| --- | --- | --- | --- |"]
    for name, dist, _ in SOURCES:
        if name not in used:
            continue
        if dist is None:
            ver, lic = sys.version.split()[0], "PSF-2.0 (Python Software Foundation License)"
        else:
            meta = md.metadata(dist)
            ver = md.version(dist)
            lic = meta.get("License-Expression") or (meta.get("License") or "").split("\n")[0][:60] or "see package"
        lines.append(f"| {name} | {ver} | {lic} | {used[name]:,} |")
    (out.parent / "NOTICE.md").write_text("\n".join(lines) + "\n")
    return {"path": str(out), "documents": n_docs, "characters": n_chars, "by_source": used}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--target-chars", type=int, default=6_000_000)
    ap.add_argument("--count", action="store_true", help="only count tokens of the existing corpus (SmolLM2 tokenizer)")
    args = ap.parse_args(argv)
    if not args.count:
        print(json.dumps(build(args.out, args.target_chars), indent=1))
    from interp.models import load_model

    from .corpus import count_tokens, load_corpus

    tok = load_model("smollm2-135m", device="cpu").tokenizer
    print(json.dumps({"smollm2_tokens": count_tokens(load_corpus(args.out), tok), "data_dir": str(DATA_DIR)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
