"""A small offline concept dataset for comparing feature directions (SNMF, DiffMeans, SAE).

Five concepts x 12 sentences plus 12 neutral sentences, written for this project (no
download), and for each concept a handful of *concept words* whose next-token log
probability is the offline steering proxy (the paper uses an LLM judge instead).  Each
concept is a topic that a small LM represents: the words overlap little across concepts.

The data live in ``data/concepts.json`` (``{"concepts": {name: {"sentences": [...], "words": [...]}},
"neutral": [...]}``); here they are ``CONCEPTS[name]`` and the list ``NEUTRAL``.  Read once at import (a few kB).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

_DATA = json.loads((Path(__file__).resolve().parents[2] / "data" / "concepts.json").read_text())
CONCEPTS: dict[str, dict[str, list[str]]] = _DATA["concepts"]
NEUTRAL: list[str] = _DATA["neutral"]
SENTENCES: list[str] = [s for v in CONCEPTS.values() for s in v["sentences"]] + NEUTRAL
"""Every sentence, concept by concept, then the neutral ones (the default texts of SNMF and LIB)."""


def concept_split(part: slice) -> tuple[list[str], torch.Tensor]:
    """Sentences ``part`` of each concept, then of the neutral ones, with labels (the concept's index in
    :data:`CONCEPTS`; -1: neutral).  Deterministic split of the 12 sentences each: train ``slice(8)``, test
    ``slice(8, None)``."""
    groups = [v["sentences"][part] for v in CONCEPTS.values()] + [NEUTRAL[part]]
    labels = [c if c < len(CONCEPTS) else -1 for c, g in enumerate(groups) for _ in g]
    return [s for g in groups for s in g], torch.tensor(labels)
