"""Tasks: the behaviours attribution methods explain (clean prompts, corruptions, metric)."""

from .base import METRICS, Task, register_metric, single_token, tokenize_equal_length
from .greater_than import greater_than_task
from .ioi import ioi_task

TASKS = {"ioi": ioi_task, "greater-than": greater_than_task}


def make_task(name: str, model, n: int = 16, seed: int = 0) -> Task:
    """Build the named task (``ioi`` or ``greater-than``) for ``model``."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose from {sorted(TASKS)}")
    return TASKS[name](model, n=n, seed=seed)


__all__ = ["METRICS", "TASKS", "Task", "greater_than_task", "ioi_task", "make_task", "register_metric",
           "single_token", "tokenize_equal_length"]
