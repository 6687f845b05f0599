"""Input domains for per-domain head analyses: small built-in text sets, and user-defined ones.

Active-dormant heads (Guo et al. 2024, arXiv 2410.13835) are dormant on one kind of text and
active on another, so sink statistics and ablations are computed per *domain*: a named set of
texts.  Three domains ship with interp, built offline from text written into this file:

* ``prose``: public-domain English prose (Austen, Melville, Carroll, Dickens, Twain openings).
* ``code``: short Python functions and classes.
* ``numbers``: numbered lists, tables of figures and comma-separated values, generated from a
  fixed seed.

A user domain is any ``Domain(name, texts)``; :func:`domains_from_dir` reads one domain per
``*.txt`` file of a folder.  :func:`domain_tokens` turns a domain into a ``[n_seqs, seq_len]``
LongTensor: the texts are concatenated (newline separated), tokenised without special tokens,
cut into ``seq_len - 1`` token windows and each window gets the first token (BOS) prepended,
so every row has the same length (no padding) and position 0 is the sink token ⟨s⟩.

Memory: the texts (a few KB each) and ``n_seqs * seq_len`` token ids.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import torch


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
        if not self.texts or not any(t.strip() for t in self.texts):
            raise ValueError(f"Domain {self.name!r} has no non-empty text")


PROSE = (
    "It is a truth universally acknowledged, that a single man in possession of a good fortune, "
    "must be in want of a wife. However little known the feelings or views of such a man may be on "
    "his first entering a neighbourhood, this truth is so well fixed in the minds of the surrounding "
    "families, that he is considered the rightful property of some one or other of their daughters.",
    "Call me Ishmael. Some years ago, never mind how long precisely, having little or no money in my "
    "purse, and nothing particular to interest me on shore, I thought I would sail about a little and "
    "see the watery part of the world. It is a way I have of driving off the spleen and regulating the "
    "circulation. Whenever I find myself growing grim about the mouth; whenever it is a damp, drizzly "
    "November in my soul; whenever I find myself involuntarily pausing before coffin warehouses, and "
    "bringing up the rear of every funeral I meet, then I account it high time to get to sea as soon "
    "as I can.",
    "Alice was beginning to get very tired of sitting by her sister on the bank, and of having nothing "
    "to do: once or twice she had peeped into the book her sister was reading, but it had no pictures "
    "or conversations in it, and what is the use of a book, thought Alice, without pictures or "
    "conversations? So she was considering in her own mind, as well as she could, for the hot day made "
    "her feel very sleepy and stupid, whether the pleasure of making a daisy-chain would be worth the "
    "trouble of getting up and picking the daisies, when suddenly a White Rabbit with pink eyes ran "
    "close by her.",
    "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of "
    "foolishness, it was the epoch of belief, it was the epoch of incredulity, it was the season of "
    "Light, it was the season of Darkness, it was the spring of hope, it was the winter of despair, we "
    "had everything before us, we had nothing before us, we were all going direct to Heaven, we were "
    "all going direct the other way.",
    "You don't know about me without you have read a book by the name of The Adventures of Tom Sawyer; "
    "but that ain't no matter. That book was made by Mr. Mark Twain, and he told the truth, mainly. "
    "There was things which he stretched, but mainly he told the truth. That is nothing. I never seen "
    "anybody but lied one time or another, without it was Aunt Polly, or the widow, or maybe Mary.",
    "The family of Dashwood had long been settled in Sussex. Their estate was large, and their "
    "residence was at Norland Park, in the centre of their property, where, for many generations, they "
    "had lived in so respectable a manner as to engage the general good opinion of their surrounding "
    "acquaintance. The late owner of this estate was a single man, who lived to a very advanced age, "
    "and who for many years of his life, had a constant companion and housekeeper in his sister.",
)

CODE = (
    "def fibonacci(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n",
    "import os\nimport json\n\n\ndef load_config(path):\n    if not os.path.exists(path):\n"
    "        raise FileNotFoundError(path)\n    with open(path) as f:\n        return json.load(f)\n",
    "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, item):\n"
    "        self.items.append(item)\n\n    def pop(self):\n        if not self.items:\n"
    "            raise IndexError('pop from empty stack')\n        return self.items.pop()\n\n"
    "    def __len__(self):\n        return len(self.items)\n",
    "def binary_search(xs, target):\n    lo, hi = 0, len(xs) - 1\n    while lo <= hi:\n"
    "        mid = (lo + hi) // 2\n        if xs[mid] == target:\n            return mid\n"
    "        elif xs[mid] < target:\n            lo = mid + 1\n        else:\n            hi = mid - 1\n"
    "    return -1\n",
    "for i in range(10):\n    if i % 2 == 0:\n        print(i, 'is even')\n    else:\n"
    "        print(i, 'is odd')\n",
    "def word_counts(text):\n    counts = {}\n    for word in text.lower().split():\n"
    "        counts[word] = counts.get(word, 0) + 1\n    return sorted(counts.items(), key=lambda kv: -kv[1])\n",
    "import numpy as np\n\n\ndef softmax(x, axis=-1):\n    x = x - x.max(axis=axis, keepdims=True)\n"
    "    e = np.exp(x)\n    return e / e.sum(axis=axis, keepdims=True)\n",
    "class Node:\n    def __init__(self, value, left=None, right=None):\n        self.value = value\n"
    "        self.left = left\n        self.right = right\n\n\ndef depth(node):\n    if node is None:\n"
    "        return 0\n    return 1 + max(depth(node.left), depth(node.right))\n",
)


def _numbers_texts(seed: int = 0) -> tuple[str, ...]:
    """Numbered lists, tables and CSV rows from a fixed seed (deterministic, offline)."""
    rng = random.Random(seed)
    out = []
    items = ["apples", "pears", "plums", "eggs", "flour", "sugar", "milk", "rice", "beans", "salt"]
    for _ in range(3):
        out.append("\n".join(f"{i + 1}. {rng.choice(items)}: {rng.randint(1, 99)}" for i in range(12)))
    for _ in range(3):
        rows = ["year,revenue,cost,profit"]
        for y in range(2001, 2013):
            r, c = rng.randint(100, 999), rng.randint(50, 500)
            rows.append(f"{y},{r},{c},{r - c}")
        out.append("\n".join(rows))
    for _ in range(3):
        out.append(", ".join(str(rng.randint(0, 1000)) for _ in range(40)))
    for _ in range(2):
        out.append("\n".join(f"- item {i}: {rng.uniform(0, 100):.2f}" for i in range(1, 13)))
    return tuple(out)


def default_domains() -> list[Domain]:
    """The three built-in domains: ``prose``, ``code``, ``numbers``."""
    return [Domain("prose", PROSE), Domain("code", CODE), Domain("numbers", _numbers_texts())]


def domains_from_dir(path: str | Path) -> list[Domain]:
    """One domain per ``*.txt`` file of ``path`` (name = file stem; texts split on blank lines)."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"domain folder {str(path)!r} does not exist or is not a folder")
    files = sorted(path.glob("*.txt"))
    if not files:
        raise ValueError(f"domain folder {str(path)!r} holds no *.txt files (one file per domain)")
    return [Domain(f.stem, [t for t in f.read_text().split("\n\n") if t.strip()]) for f in files]


def bos_id(model) -> int:
    """The token id put at position 0 (the tokenizer's BOS)."""
    tok = model.tokenizer
    bos = getattr(tok, "bos_token_id", None)
    if bos is None:
        raise ValueError(
            f"model {getattr(model, 'interp_name', '?')!r} has no BOS token; sink analyses need a fixed "
            "first token: pass token tensors whose position 0 is the token you want to study"
        )
    return int(bos)


def domain_tokens(model, domain: Domain, seq_len: int = 64, n_seqs: int = 8) -> torch.Tensor:
    """``[n_seqs, seq_len]`` LongTensor of BOS + ``seq_len - 1`` tokens of ``domain``.

    The domain's texts are cycled if they are too short to fill ``n_seqs`` windows.
    """
    if seq_len < 3:
        raise ValueError(f"seq_len must be >= 3 (BOS and at least two text tokens), got {seq_len}")
    if n_seqs < 1:
        raise ValueError(f"n_seqs must be >= 1, got {n_seqs}")
    bos = bos_id(model)
    ids = model.tokenizer("\n".join(domain.texts), add_special_tokens=False)["input_ids"]
    ids = [i for i in ids if i != bos]
    need = n_seqs * (seq_len - 1)
    ids = (ids * (need // len(ids) + 1))[:need]  # cycle the text; windows differ (its length rarely divides)
    body = torch.tensor(ids, dtype=torch.long).view(n_seqs, seq_len - 1)
    return torch.cat([torch.full((n_seqs, 1), bos, dtype=torch.long), body], dim=1)
