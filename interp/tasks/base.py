"""The Task: a behaviour to explain, as clean prompts, corrupted prompts, answers and a metric.

A task is what every attribution method and circuit search in interp consumes.  It holds
token tensors of equal shape for the clean and the corrupted prompts (so activations line
up position by position), the answer token pair per prompt, and a metric that maps logits
``[B, T, V]`` to one number per prompt (``[B]``), read at the last position.

Define your own in a notebook with :meth:`Task.from_prompts`::

    task = Task.from_prompts(model, ["The capital of France is"], ["The capital of Italy is"],
                             answers=[(" Paris", " Rome")])

Validation (each a ``ValueError`` naming the offending prompt): an empty dataset, clean and
corrupted lists of different sizes, prompts whose token lengths differ (within the batch or
between a clean prompt and its corruption), and answers that are not exactly one token.

Memory: two ``[B, T]`` int64 tensors.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch


def logit_diff(logits: torch.Tensor, task: "Task") -> torch.Tensor:
    """logit(correct) - logit(incorrect) at the last position, per prompt."""
    pair = logits[:, -1].gather(-1, task.answers[:, :2].to(logits.device))
    return pair[:, 0] - pair[:, 1]


METRICS: dict[str, Callable] = {"logit_diff": logit_diff}
"""The metrics a task can name (``metric_name``): ``fn(logits [B, T, V], task) -> Tensor[B]`` by name; add
one with ``METRICS[name] = fn``."""


@dataclass
class Task:
    """Clean and corrupted prompts, answers and a metric (see the module docstring)."""

    name: str
    """Short name, used in reports (``ioi``, ``greater-than``, ...)."""
    prompts: list[str]
    """The clean prompts."""
    corrupt_prompts: list[str]
    """The corrupted prompts, one per clean prompt."""
    clean: torch.Tensor
    """LongTensor ``[B, T]``: tokens of the clean prompts (BOS included)."""
    corrupt: torch.Tensor
    """LongTensor ``[B, T]``: tokens of the corrupted prompts, same shape as ``clean``."""
    answers: torch.Tensor | None = None
    """LongTensor ``[B, 2]``: (correct, incorrect) answer token per prompt, if the metric uses them."""
    metric_name: str | Callable = "logit_diff"
    """A name in :data:`METRICS` or a callable ``fn(logits, task) -> Tensor[B]``."""
    positions: dict[str, torch.Tensor] = field(default_factory=dict)
    """Named token positions per prompt (e.g. IOI's ``IO``, ``S1``, ``S2``, ``END``), each ``[B]``."""
    data: dict[str, torch.Tensor] = field(default_factory=dict)
    """Other per-prompt tensors a metric needs (first dim ``B``), e.g. greater-than's start year."""
    meta: dict = field(default_factory=dict)
    """Free-form, JSON-serialisable description (templates, seed, metric definition)."""

    def __post_init__(self):
        if not self.clean.numel() or not self.prompts:  # no tokens or no prompts
            raise ValueError(f"task {self.name!r}: the dataset is empty (no prompts: n must be >= 1)")
        if len(self.prompts) != len(self.corrupt_prompts):
            raise ValueError(f"task {self.name!r}: {len(self.prompts)} clean prompts but "
                             f"{len(self.corrupt_prompts)} corrupted prompts; give one corruption per prompt")
        if self.clean.ndim != 2 or self.clean.shape != self.corrupt.shape:
            raise ValueError(
                f"task {self.name!r}: clean tokens {tuple(self.clean.shape)} and corrupted tokens "
                f"{tuple(self.corrupt.shape)} (e.g. {self.prompts[0]!r} vs {self.corrupt_prompts[0]!r}) must "
                "both be [B, T] with the same shape; patching needs aligned positions, so make each "
                "corruption the same token length as its prompt")
        if self.clean.shape[0] != len(self.prompts):
            raise ValueError(f"task {self.name!r}: {len(self.prompts)} prompts but {self.clean.shape[0]} token rows")
        if self.answers is not None and (self.answers.ndim != 2 or self.answers.shape[0] != len(self.prompts)):
            raise ValueError(f"task {self.name!r}: answers must be [B, 2] with B = {self.n} prompts, "
                             f"got {list(self.answers.shape)}")
        if isinstance(self.metric_name, str) and self.metric_name not in METRICS:
            raise ValueError(f"task {self.name!r}: unknown metric {self.metric_name!r}; choose from {sorted(METRICS)}")

    # -- construction ------------------------------------------------------------------
    @classmethod
    def from_prompts(
        cls,
        model,
        prompts: Sequence[str],
        corrupt_prompts: Sequence[str],
        answers: Sequence[tuple[str, str]] | None = None,
        metric: str | Callable = "logit_diff",
        name: str = "custom",
        prepend_bos: bool = True,
        **kw,
    ) -> "Task":
        """Tokenise ``prompts`` / ``corrupt_prompts`` with ``model``'s tokenizer and validate them.

        ``answers`` are strings that must each be exactly one token (include a leading
        space where the tokenizer needs it, e.g. ``" Mary"``).  ``prepend_bos=False`` tokenises without
        the BOS token (for analyses of models or positions that should not see it).
        """
        prompts, corrupt_prompts = list(prompts), list(corrupt_prompts)
        clean = tokenize_equal_length(model, prompts, prepend_bos, what="clean prompt")
        corrupt = tokenize_equal_length(model, corrupt_prompts, prepend_bos, what="corrupted prompt")
        # answers [len(answers), 2]: __post_init__ checks them, and the token shapes, against the prompts
        ans = None if answers is None else torch.tensor(
            [[single_token(model, a) for a in p] for p in answers])
        return cls(name=name, prompts=prompts, corrupt_prompts=corrupt_prompts, clean=clean,
                   corrupt=corrupt, answers=ans, metric_name=metric, **kw)

    # -- use ----------------------------------------------------------------------------
    def metric(self, logits: torch.Tensor) -> torch.Tensor:
        """Per-prompt metric ``[B]`` from logits ``[B, T, V]`` (or ``[k*B, T, V]`` for k stacked copies)."""
        fn = METRICS[self.metric_name] if isinstance(self.metric_name, str) else self.metric_name
        k, rest = divmod(logits.shape[0], self.n)
        return fn(logits, self.repeat(k) if k and not rest else self)

    def _map(self, rows: Callable, strings: Callable) -> "Task":
        """The task with ``rows`` applied to every per-prompt tensor and ``strings`` to the prompt lists."""
        return dataclasses.replace(
            self, prompts=strings(self.prompts), corrupt_prompts=strings(self.corrupt_prompts),
            clean=rows(self.clean), corrupt=rows(self.corrupt),
            answers=None if self.answers is None else rows(self.answers),
            positions={n: rows(p) for n, p in self.positions.items()},
            data={n: rows(p) for n, p in self.data.items()}, meta=dict(self.meta))

    def repeat(self, k: int) -> "Task":
        """The same task with every tensor tiled ``k`` times along the batch (for batched patching)."""
        if k == 1:
            return self
        return self._map(lambda t: t.repeat(k, *([1] * (t.ndim - 1))), lambda xs: xs * k)

    def subset(self, idx) -> "Task":
        """The task restricted to the prompts at ``idx`` (a slice, list or tensor of indices)."""
        idx = torch.arange(len(self.prompts))[idx] if isinstance(idx, slice) else torch.as_tensor(idx)
        return self._map(lambda t: t[idx], lambda xs: [xs[i] for i in idx.tolist()])

    @property
    def n(self) -> int:
        """Number of prompts."""
        return len(self.prompts)

    def to_json(self) -> dict:
        """A JSON-serialisable summary (prompts, answers as ids, metric name, meta)."""
        return {
            "name": self.name, "n": self.n, "seq_len": int(self.clean.shape[1]),
            "prompts": self.prompts, "corrupt_prompts": self.corrupt_prompts,
            "answers": None if self.answers is None else self.answers.tolist(),
            "metric": self.metric_name if isinstance(self.metric_name, str) else getattr(self.metric_name, "__name__", "custom"),
            "meta": self.meta,
        }


def tokenize_equal_length(model, prompts: Sequence[str], prepend_bos: bool = True,
                          what: str = "prompt") -> torch.Tensor:
    """``[B, T]`` tokens of ``prompts`` (BOS first if ``prepend_bos``); a ``ValueError`` names the first prompt
    whose length differs."""
    rows = [model.to_tokens(p, prepend_bos=prepend_bos)[0].cpu() for p in prompts]
    lengths = [len(r) for r in rows]
    if len(set(lengths)) > 1:
        j = next(i for i, n in enumerate(lengths) if n != lengths[0])
        raise ValueError(
            f"{what}s have unequal token lengths: {prompts[0]!r} has {lengths[0]} tokens but "
            f"{prompts[j]!r} has {lengths[j]}; all prompts of a task must have the same token length"
        )
    return torch.stack(rows) if rows else torch.zeros(0, 0, dtype=torch.long)  # no prompts: Task refuses it


def single_token(model, text: str) -> int:
    """The id of ``text`` if it is exactly one token for ``model``'s tokenizer, else a ``ValueError``."""
    ids = model.tokenizer.encode(text, add_special_tokens=False)
    if len(ids) != 1:
        pieces = [model.tokenizer.decode([i]) for i in ids]
        raise ValueError(
            f"answer {text!r} is {len(ids)} tokens ({pieces}) for this tokenizer; answers must be single "
            "tokens (try a leading space, or a different word)"
        )
    return ids[0]


def n_tokens(model, text: str) -> int:
    """How many tokens ``text`` is for ``model``'s tokenizer (no special tokens)."""
    return len(model.tokenizer.encode(text, add_special_tokens=False))


def equal_length_group(model, items: Sequence, text: Callable = lambda w: " " + w) -> list:
    """The largest group of ``items`` whose ``text(item)`` share one token length (so prompts built from
    any of them align position by position); the first such group on a tie."""
    groups: dict[int, list] = {}
    for w in items:
        groups.setdefault(n_tokens(model, text(w)), []).append(w)
    return max(groups.values(), key=len)
