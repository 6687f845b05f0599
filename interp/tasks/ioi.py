"""Indirect object identification (IOI), after Wang et al. 2022 ("Interpretability in the Wild").

Prompts such as "When Mary and John went to the store, John gave a drink to" (answer: " Mary",
the indirect object IO; the distractor is the repeated subject S).  Both name orders are
generated: ABBA ("IO and S ..., S gave ... to") and BABA ("S and IO ..., S gave ... to"),
alternating.  Two corruptions (``corruption=``):

* ``"abc"`` (default): the paper's p_ABC, the same template with three fresh, distinct names,
  so no name is repeated and the IO is no longer identifiable.  Every name position differs
  between the clean and the corrupted prompt; the corrupted logit difference is near zero.
* ``"s2"``: the second mention of S replaced by the IO name ("..., Mary gave a drink to"), the
  corruption of TransformerLens's Attribution Patching demo and of the RelP demo
  (``demos/lrp_patching.ipynb``: adjacent prompts of a pair swapped), used for the RelP
  paper's Table 1 comparison.  Only the S2 token differs; the corrupted prompt's answer is S,
  so its logit difference is negative (the metric's span is about twice the ABC one).

Names, places and objects are filtered for the loaded tokenizer: a name must be a single
token with its leading space (" Mary"); places and objects are kept in the largest group of
equal token length, and only templates of one token length are used together, so every
prompt of the task has the same length.  A char-level tokenizer (the tiny test models) has
no single-token names, so there the names are single capital letters and the prompt ends
in "to " (documented fallback; the task is then only a shape-correct stand-in).

Metric: logit difference logit(IO) - logit(S) at the last position.

Positions recorded per prompt (``task.positions``): ``IO``, ``S1``, ``S2``, ``END``.

Cost: tokenising ``2n`` prompts; memory: two ``[n, T]`` token tensors.
"""

from __future__ import annotations

import random

import torch

from .base import Task, equal_length_group, n_tokens

NAMES = [
    "Mary", "John", "Alice", "Bob", "Tom", "James", "David", "Sarah", "Emma", "Michael", "Anna",
    "Paul", "Mark", "Kate", "Laura", "Peter", "Lisa", "Daniel", "Jack", "Rachel", "Adam", "Chris",
    "Lucy", "Sam", "Ben", "Eric", "Kevin", "Jane", "Linda", "Susan", "Mike", "Steve", "Amy",
    "Robert", "George", "Henry", "Jessica", "Emily", "Andrew", "Brian", "Jason", "Ryan", "Victoria",
]
PLACES = ["store", "park", "school", "office", "hospital", "restaurant", "garden", "station",
          "library", "beach", "house", "market", "church", "bank", "hotel", "kitchen"]
OBJECTS = ["drink", "book", "ring", "gift", "letter", "ball", "bag", "key", "card", "flower",
           "computer", "necklace", "basketball", "snack", "bottle", "box"]
TEMPLATES = [
    "When {A} and {B} went to the {PLACE}, {S} gave a {OBJECT} to",
    "Then, {A} and {B} went to the {PLACE}. {S} gave a {OBJECT} to",
    "After {A} and {B} went to the {PLACE}, {S} gave a {OBJECT} to",
    "While {A} and {B} were working at the {PLACE}, {S} gave a {OBJECT} to",
    "When {A} and {B} got a {OBJECT} at the {PLACE}, {S} decided to give it to",
    "Friends {A} and {B} found a {OBJECT} at the {PLACE}. {S} gave it to",
]


def ioi_names(model, names: list[str] | None = None) -> tuple[list[str], str]:
    """Names for ``model``'s tokenizer and the separator before a name (" " or ""): ``names`` (each must be
    one token with its leading space), else those of :data:`NAMES` that are, else (a char-level tokenizer)
    single capital letters; at least 5, since IO, S and three corruption names must differ."""
    ok = [x for x in (NAMES if names is None else names) if n_tokens(model, " " + x) == 1]
    if names is not None and len(ok) < len(names):
        raise ValueError(f"ioi_task: names {[x for x in names if x not in ok]} are not single tokens "
                         "(with a leading space) for this tokenizer")
    if len(ok) >= 5:
        return ok, " "
    letters = [c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if n_tokens(model, c) == 1 and n_tokens(model, " " + c) == 2]
    if names is None and len(letters) >= 5:
        return letters, ""  # char-level tokenizer: "... to" + " " + "A"
    raise ValueError(f"IOI needs at least 5 names that are single tokens for this tokenizer; found {len(ok)} "
                     f"({ok}). Pass names=[...] with 5 or more single-token names.")


CORRUPTIONS = {"abc": "ABC (three fresh names)", "s2": "S2 -> IO (the second S replaced by the IO name)"}


def ioi_task(model, n: int = 16, seed: int = 0, names: list[str] | None = None,
             corruption: str = "abc") -> Task:
    """``n`` IOI prompts (alternating ABBA / BABA) with ``abc`` or ``s2`` corruptions (module docstring)."""
    if corruption not in CORRUPTIONS:
        raise ValueError(f"ioi_task: unknown corruption {corruption!r}; choose from {sorted(CORRUPTIONS)}")
    rng = random.Random(seed)
    names, sep = ioi_names(model, names)
    places = equal_length_group(model, PLACES)
    objects = equal_length_group(model, OBJECTS)

    def fill(t, a, b, s, place, obj):
        text = t.format(A=a, B=b, S=s, PLACE=place, OBJECT=obj)
        return text + (" " if sep == "" else "")  # char tokenizer: the answer follows "to "

    templates = equal_length_group(model, TEMPLATES,
                                   lambda t: fill(t, names[0], names[1], names[1], places[0], objects[0]))

    prompts, corrupts, answers = [], [], []
    for i in range(n):
        t = templates[i % len(templates)]
        io, s, c1, c2, c3 = rng.sample(names, 5)
        place, obj = rng.choice(places), rng.choice(objects)
        a, b = (io, s) if i % 2 == 0 else (s, io)  # ABBA, BABA, ...
        prompts.append(fill(t, a, b, s, place, obj))
        corrupts.append(fill(t, c1, c2, c3, place, obj) if corruption == "abc" else fill(t, a, b, io, place, obj))
        answers.append((sep + io, sep + s))
    kinds = [("ABBA", "BABA")[i % 2] for i in range(n)]
    task = Task.from_prompts(model, prompts, corrupts, answers, name="ioi", meta={
        "templates": templates, "kinds": kinds, "seed": seed, "corruption": CORRUPTIONS[corruption],
        "metric": "logit(IO) - logit(S) at the last position"})
    is_s = task.clean == task.answers[:, 1:]
    s1 = is_s.int().argmax(1)  # argmax: the first hit
    hits = {"IO": task.clean == task.answers[:, :1], "S1": is_s,
            "S2": is_s & (torch.arange(task.clean.shape[1]) > s1[:, None])}
    if not all(bool(h.any(1).all()) for h in hits.values()):
        raise ValueError("IOI: a name token is missing from a prompt (tokenizer merges it with its neighbours?)")
    task.positions = {**{k: h.int().argmax(1) for k, h in hits.items()},
                      "END": torch.full_like(s1, task.clean.shape[1] - 1)}
    return task
