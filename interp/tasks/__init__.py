"""Tasks: the behaviours attribution methods explain (clean prompts, corruptions, metric)."""

from .base import METRICS, Task, single_token, tokenize_equal_length
from .greater_than import greater_than_task
from .ioi import CORRUPTIONS as IOI_CORRUPTIONS
from .ioi import ioi_task

TASKS = {"ioi": ioi_task, "greater-than": greater_than_task}
CORRUPTIONS = {"ioi": tuple(IOI_CORRUPTIONS), "greater-than": ("01",)}
"""The corruptions each task offers; the first is its default."""


def make_task(name: str, model, n: int = 16, seed: int = 0, corruption: str | None = None) -> Task:
    """Build the named task (``ioi`` or ``greater-than``) for ``model``.

    ``corruption``: one of ``CORRUPTIONS[name]`` (None: the task's default, the first).
    """
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose from {sorted(TASKS)}")
    if corruption not in (None, *CORRUPTIONS[name]):
        raise ValueError(f"task {name!r} has no corruption {corruption!r}; choose from {list(CORRUPTIONS[name])}")
    kw = {} if corruption in (None, CORRUPTIONS[name][0]) else {"corruption": corruption}
    return TASKS[name](model, n=n, seed=seed, **kw)

__all__ = ["CORRUPTIONS", "METRICS", "TASKS", "Task", "greater_than_task", "ioi_task", "make_task", "single_token",
           "tokenize_equal_length"]
