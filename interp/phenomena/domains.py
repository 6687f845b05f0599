"""Input domains for per-domain head analyses: small built-in text sets, and user-defined ones.

Active-dormant heads (Guo et al. 2024, arXiv 2410.13835) are dormant on one kind of text and
active on another, so sink statistics and ablations are computed per *domain*: a named set of
texts.  Three domains ship with interp, kept as package data (``domain_texts.json``):

* ``prose``: public-domain English prose (Austen, Melville, Carroll, Dickens, Twain openings).
* ``code``: short Python functions and classes.
* ``numbers``: numbered lists, tables of figures and comma-separated values (generated once from a
  fixed seed).

A user domain is any ``Domain(name, texts)``; :func:`domains_from_dir` reads one domain per
``*.txt`` file of a folder.  :func:`domain_tokens` turns a domain into a ``[n_seqs, seq_len]``
LongTensor: the texts are concatenated (newline separated), tokenised without special tokens,
cut into ``seq_len - 1`` token windows and each window gets the first token (BOS) prepended,
so every row has the same length (no padding) and position 0 is the sink token ⟨s⟩.

Memory: the texts (a few KB each) and ``n_seqs * seq_len`` token ids.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Domain:
    """A named set of texts that a per-domain analysis treats as one input distribution."""

    name: str
    """Short name used as a key in results (``prose``, ``code``, ...)."""
    texts: tuple[str, ...]
    """The texts; concatenated with newlines before tokenising."""

    def __post_init__(self):
        if not self.name or not isinstance(self.name, str):
            raise ValueError("a Domain needs a non-empty string name")
        if isinstance(self.texts, str):
            raise ValueError(f"Domain {self.name!r}: texts must be a sequence of strings, not one string")
        object.__setattr__(self, "texts", tuple(self.texts))
        if not any(t.strip() for t in self.texts):
            raise ValueError(f"Domain {self.name!r} has no non-empty text")


_TEXTS = json.loads((Path(__file__).parent / "domain_texts.json").read_text())
"""The built-in domains' texts by name, in order: six opening paragraphs of public-domain novels
(``prose``), eight short Python snippets (``code``), eleven numbered lists, tables of figures and
comma-separated values (``numbers``, generated once from a fixed seed)."""


def default_domains() -> list[Domain]:
    """The three built-in domains: ``prose``, ``code``, ``numbers``."""
    return [Domain(name, texts) for name, texts in _TEXTS.items()]


def domains_from_dir(path: str | Path) -> list[Domain]:
    """One domain per ``*.txt`` file of ``path`` (name = file stem; texts split on blank lines)."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"domain folder {str(path)!r} does not exist or is not a folder")
    files = sorted(path.glob("*.txt"))
    if not files:
        raise ValueError(f"domain folder {str(path)!r} holds no *.txt files (one file per domain)")
    return [Domain(f.stem, [t for t in f.read_text().split("\n\n") if t.strip()]) for f in files]


def domain_tokens(model, domain: Domain, seq_len: int = 64, n_seqs: int = 8) -> torch.Tensor:
    """``[n_seqs, seq_len]`` LongTensor of BOS + ``seq_len - 1`` tokens of ``domain``.

    The domain's texts are cycled if they are too short to fill ``n_seqs`` windows.
    """
    if seq_len < 3:
        raise ValueError(f"seq_len must be >= 3 (BOS and at least two text tokens), got {seq_len}")
    if n_seqs < 1:
        raise ValueError(f"n_seqs must be >= 1, got {n_seqs}")
    bos = getattr(model.tokenizer, "bos_token_id", None)  # the token put at position 0
    if bos is None:
        raise ValueError(
            f"model {getattr(model, 'interp_name', '?')!r} has no BOS token; sink analyses need a fixed "
            "first token: pass token tensors whose position 0 is the token you want to study"
        )
    ids = model.tokenizer("\n".join(domain.texts), add_special_tokens=False)["input_ids"]
    ids = [i for i in ids if i != bos]
    need = n_seqs * (seq_len - 1)
    ids = (ids * (need // len(ids) + 1))[:need]  # cycle the text; windows differ (its length rarely divides)
    return F.pad(torch.tensor(ids, dtype=torch.long).view(n_seqs, seq_len - 1), (1, 0), value=int(bos))
