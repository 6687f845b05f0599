"""Text corpora for caching: text files, JSONL, a Hugging Face dataset, and the offline default.

A corpus is a deterministic sequence of documents.  :func:`token_sequences` turns it into
fixed-length model inputs the way SAE-training pipelines do: documents are tokenized
without special tokens, concatenated with a separator token (EOS, else BOS) between them,
and cut into consecutive chunks of ``context_length`` tokens -- or ``context_length - 1``
tokens after a prepended BOS when ``prepend_bos``.  A short final chunk is dropped.  The
order depends only on the corpus and the tokenizer, so an interrupted caching run can skip
the sequences it already stored and resume with byte-identical results.

Corpus specs accepted by :func:`load_corpus`:

* ``default``: the offline default corpus shipped in ``data/corpus/`` (natural English prose;
  see ``data/corpus/make_default_corpus.py`` for how it is built and its size).
* a ``.txt``/``.md``/``.rst`` file, or a directory of them (recursive, sorted by path): one
  document per file.
* a ``.jsonl`` file (optionally ``.jsonl.gz``/``.jsonl.xz``): one document per line, text in
  the field ``text_field`` (default ``text``).  A malformed line raises an error naming it.
* ``hf:NAME[:CONFIG][:SPLIT]``: a Hugging Face dataset (needs the ``datasets`` package and a
  reachable hub or local cache; a clear error otherwise).

Memory: one document and one batch of token ids at a time (documents are streamed).
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import itertools
import json
import lzma
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

DATA_DIR = Path(__file__).resolve().parents[2] / "data" / "corpus"
DEFAULT_CORPUS = DATA_DIR / "default.jsonl.xz"
TEXT_SUFFIXES = (".txt", ".md", ".rst", ".text")


class CorpusError(ValueError):
    """A corpus cannot be read: missing, malformed, or too small for the request."""


@dataclass
class Corpus:
    """A deterministic, re-iterable sequence of documents."""

    description: dict
    """JSON-serialisable description stored in the manifest (kind, source, fingerprint)."""
    documents: Callable[[], Iterator[str]] = field(repr=False)
    """``corpus.documents()``: the documents, in the corpus's fixed order (a fresh iterator each call)."""


def _open_text(path: Path):
    return {".xz": lzma.open, ".gz": gzip.open}.get(path.suffix, open)(path, "rt", encoding="utf-8")


def _file_fingerprint(paths: list[Path]) -> str:
    """sha256 over (name, size, first and last MiB) of each file: cheap and content-sensitive."""
    h = hashlib.sha256()
    for p in paths:
        size = p.stat().st_size
        h.update(f"{p.name}:{size}".encode())
        with open(p, "rb") as f:
            h.update(f.read(1 << 20))
            if size > 2 << 20:
                f.seek(size - (1 << 20))
                h.update(f.read())
    return h.hexdigest()[:16]


def jsonl_documents(path: Path, text_field: str = "text") -> Iterator[str]:
    """Documents of a JSONL file; a malformed line raises :class:`CorpusError` naming it."""
    with _open_text(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise CorpusError(f"{path}, line {lineno}: malformed JSON ({e.msg} at column {e.colno})") from None
            text = obj.get(text_field) if isinstance(obj, dict) else obj
            if not isinstance(text, str):
                keys = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
                raise CorpusError(
                    f"{path}, line {lineno}: expected an object with a string field {text_field!r} "
                    f"(or a JSON string); got {keys}"
                )
            if text:
                yield text


def _text_documents(paths: list[Path]) -> Iterator[str]:
    for p in paths:
        with _open_text(p) as f:
            text = f.read()
        if text.strip():
            yield text


def _hf_corpus(spec: str, text_field: str) -> Corpus:
    parts = spec.split(":")[1:]
    if not parts[0]:  # spec starts with "hf:", so there is a part after it
        raise CorpusError(f"corpus {spec!r}: expected hf:NAME[:CONFIG][:SPLIT]")
    name = parts[0]
    config = parts[1] if len(parts) > 2 else None
    split = parts[-1] if len(parts) > 1 else "train"
    if importlib.util.find_spec("datasets") is None:
        raise CorpusError(f"corpus {spec!r} needs the 'datasets' package (pip install datasets)")

    def docs():
        import datasets

        try:
            ds = datasets.load_dataset(name, config, split=split, streaming=True)
        except Exception as e:  # noqa: BLE001 - report any hub/cache failure clearly
            raise CorpusError(
                f"cannot load Hugging Face dataset {name!r} (config {config}, split {split}): the hub or "
                f"local cache could not provide it ({type(e).__name__}: {str(e)[:200]}). Use --corpus "
                "default, a text file, or a JSONL file on machines without network."
            ) from e
        for row in ds:
            if text_field not in row:
                raise CorpusError(f"dataset {name!r} has no field {text_field!r}; fields: {sorted(row)}")
            if row[text_field]:
                yield row[text_field]

    return Corpus({"kind": "hf", "name": name, "config": config, "split": split, "text_field": text_field}, docs)


def load_corpus(spec: str | Path = "default", text_field: str = "text") -> Corpus:
    """Resolve a corpus spec (``default``, a path, or ``hf:NAME``) to a :class:`Corpus`."""
    spec_s = str(spec)
    if spec_s == "default":
        if not DEFAULT_CORPUS.exists():
            raise CorpusError(
                f"the default corpus {DEFAULT_CORPUS} is missing; rebuild it with "
                "`python data/corpus/make_default_corpus.py` or pass --corpus PATH"
            )
        c = load_corpus(DEFAULT_CORPUS, "text")
        c.description = {**c.description, "kind": "default"}
        return c
    if spec_s.startswith("hf:"):
        return _hf_corpus(spec_s, text_field)
    path = Path(spec_s)
    if not path.exists():
        raise CorpusError(
            f"corpus {spec_s!r} not found: give 'default', an existing .txt/.jsonl file or folder, or hf:NAME"
        )
    files = (sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(TEXT_SUFFIXES))
             if path.is_dir() else [path])
    if not files:
        raise CorpusError(f"corpus folder {path} holds no {'/'.join(TEXT_SUFFIXES)} files")
    desc = {"path": str(path.resolve()), "fingerprint": _file_fingerprint(files)}
    name = path.name.removesuffix(".xz").removesuffix(".gz")
    if path.is_file() and name.endswith((".jsonl", ".json", ".ndjson")):
        return Corpus({"kind": "jsonl", **desc, "text_field": text_field},
                      lambda: jsonl_documents(path, text_field))
    if path.is_dir() or name.endswith(TEXT_SUFFIXES):
        return Corpus({"kind": "text", **desc, "files": len(files)}, lambda: _text_documents(files))
    raise CorpusError(f"corpus file {path}: unknown type; use .txt/.md/.rst text or .jsonl (optionally .gz/.xz)")


def _token_ids(corpus: Corpus, tokenizer, doc_batch: int) -> Iterator[list[int]]:
    """Each document's token ids (no special tokens), tokenized ``doc_batch`` documents at a time."""
    docs = corpus.documents()
    while batch := list(itertools.islice(docs, doc_batch)):
        yield from tokenizer(batch, add_special_tokens=False)["input_ids"]


def token_sequences(
    corpus: Corpus, tokenizer, context_length: int, prepend_bos: bool = True, doc_batch: int = 64
) -> Iterator[list[int]]:
    """Consecutive fixed-length token sequences from ``corpus`` (see module docstring)."""
    bos = tokenizer.bos_token_id
    if prepend_bos and bos is None:
        raise ValueError("prepend_bos=True but the tokenizer has no BOS token; pass prepend_bos=False")
    head = [bos] if prepend_bos else []
    body = context_length - len(head)
    if body < 1:
        raise ValueError(f"context_length={context_length} leaves no room for text after BOS")
    sep = next((int(t) for t in (tokenizer.eos_token_id, bos) if t is not None), None)  # EOS, else BOS
    buf: list[int] = []
    for i, ids in enumerate(_token_ids(corpus, tokenizer, doc_batch)):
        if i and sep is not None:
            buf.append(sep)
        buf.extend(ids)
        pos = 0
        while len(buf) - pos >= body:
            yield head + buf[pos : pos + body]
            pos += body
        del buf[:pos]


def count_tokens(corpus: Corpus, tokenizer, doc_batch: int = 256) -> int:
    """Total tokens of ``corpus`` under ``tokenizer`` (no special tokens, no separators)."""
    return sum(map(len, _token_ids(corpus, tokenizer, doc_batch)))
