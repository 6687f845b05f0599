"""Corpora: text files, JSONL (clear errors naming the line), the offline default, and sequence packing."""

from __future__ import annotations

import importlib.util
import json

import pytest

from interp.store import CorpusError, load_corpus, token_sequences
from interp.store.corpus import DEFAULT_CORPUS


def test_jsonl_documents_and_malformed_line(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text(json.dumps({"text": "first doc"}) + "\n\n" + json.dumps("second doc") + "\n"
                 + json.dumps({"body": "x", "text": "third"}) + "\n")
    assert list(load_corpus(p).documents()) == ["first doc", "second doc", "third"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "ok"}) + "\n" + '{"text": "unterminated\n')
    with pytest.raises(CorpusError, match=r"bad\.jsonl, line 2: malformed JSON"):
        list(load_corpus(bad).documents())
    nofield = tmp_path / "nofield.jsonl"
    nofield.write_text(json.dumps({"text": "ok"}) + "\n" + json.dumps({"content": "y"}) + "\n")
    with pytest.raises(CorpusError, match=r"line 2: expected an object with a string field 'text'.*content"):
        list(load_corpus(nofield).documents())
    with pytest.raises(CorpusError, match="line 1"):
        list(load_corpus(nofield, text_field="content").documents())


def test_text_folder_order_and_errors(tmp_path):
    (tmp_path / "b.txt").write_text("bee")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.md").write_text("ay")
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "skip.bin").write_bytes(b"\x00")
    c = load_corpus(tmp_path)
    assert list(c.documents()) == ["a", "bee", "ay"]  # sorted by path: a.txt, b.txt, sub/a.md
    assert c.description["files"] == 3 and len(c.description["fingerprint"]) == 16
    with pytest.raises(CorpusError, match="not found"):
        load_corpus(tmp_path / "nope.txt")
    (tmp_path / "x.csv").write_text("a,b")
    with pytest.raises(CorpusError, match="unknown type"):
        load_corpus(tmp_path / "x.csv")
    with pytest.raises(CorpusError, match="no .txt"):
        (tmp_path / "empty").mkdir()
        load_corpus(tmp_path / "empty")


def test_token_sequences_pack_documents_with_separators(tiny_llama, tmp_path):
    tok = tiny_llama.tokenizer
    p = tmp_path / "c.jsonl"
    docs = ["abcdefg", "hij", "klmnopqrstu"]
    p.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    ids = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    stream = ids(docs[0]) + [tok.eos_token_id] + ids(docs[1]) + [tok.eos_token_id] + ids(docs[2])
    seqs = list(token_sequences(load_corpus(p), tok, 5, prepend_bos=True))
    assert seqs == [[tok.bos_token_id] + stream[i : i + 4] for i in range(0, len(stream) - 3, 4)]
    seqs = list(token_sequences(load_corpus(p), tok, 5, prepend_bos=False))
    assert seqs == [stream[i : i + 5] for i in range(0, len(stream) - 4, 5)]


def test_hf_spec_without_network_or_package_is_clear(monkeypatch):
    with pytest.raises(CorpusError, match="hf:NAME"):
        load_corpus("hf:")
    if importlib.util.find_spec("datasets") is None:
        with pytest.raises(CorpusError, match="needs the 'datasets' package"):
            load_corpus("hf:wikitext:wikitext-2-raw-v1:train")
        return
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # this machine has no hub; fail fast and clearly
    c = load_corpus("hf:wikitext:wikitext-2-raw-v1:train")
    assert c.description == {"kind": "hf", "name": "wikitext", "config": "wikitext-2-raw-v1", "split": "train",
                             "text_field": "text"}
    with pytest.raises(CorpusError, match="cannot load Hugging Face dataset 'wikitext'.*--corpus default"):
        next(c.documents())


def test_default_corpus_is_natural_english_text():
    c = load_corpus("default")
    assert c.description["kind"] == "default" and DEFAULT_CORPUS.exists()
    docs = list(c.documents())
    text = "\n".join(docs)
    assert len(docs) > 1000 and len(text) > 5_000_000  # ~4.2 chars per SmolLM2 token: > 1M tokens
    words = text.lower().split()
    # natural English: the commonest words are function words, letters dominate
    common = {w for w, _ in __import__("collections").Counter(words).most_common(10)}
    assert {"the", "of", "to", "a", "is"} <= common
    assert sum(ch.isalpha() or ch.isspace() for ch in text) / len(text) > 0.9
    assert docs == list(load_corpus("default").documents())[: len(docs)]  # deterministic order


@pytest.mark.slow
def test_default_corpus_has_over_a_million_smollm2_tokens(smollm2):
    from interp.store import count_tokens

    n = count_tokens(load_corpus("default"), smollm2.tokenizer)
    assert n > 1_000_000, n
