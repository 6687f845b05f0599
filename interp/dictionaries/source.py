"""In-memory activation rows behind the activation store's batch interface.

:class:`TensorSource` holds ``{hook: Tensor[n_rows, d]}`` and yields mini-batches exactly like
``ActivationStore.batches`` (a hook or a list of hooks, ``batch_size``, and the settings of
:class:`interp.store.reader.Batching` as keywords or ``config=``), so the
trainer never cares whether rows come from memory (tests, synthetic data) or from a store on
disk.  The order is a function of ``(seed, epoch)`` only, which makes resumed training
reproducible.

Memory: the tensors given (no copies besides each yielded batch).
"""

from __future__ import annotations

from dataclasses import astuple
from typing import Sequence

import torch

from interp.config import takes_config
from interp.store.reader import Batching, batch_request


class TensorSource:
    """Rows of one or more hooks held in memory; rows with the same index are aligned across hooks."""

    def __init__(self, tensors: dict[str, torch.Tensor]):
        n = {h: t.shape[0] for h, t in tensors.items()}
        if len(set(n.values())) != 1:  # also refuses no hooks at all
            raise ValueError(f"TensorSource needs one or more hooks with the same number of rows, got {n}")
        for h, t in tensors.items():
            if t.ndim != 2:
                raise ValueError(f"rows for {h!r} must be 2-D [n_rows, d], got shape {tuple(t.shape)}")
        self._t = dict(tensors)
        self.hooks = list(tensors)
        self.n_rows = next(iter(n.values()))

    def d(self, hook: str) -> int:
        self._check(hook)
        return self._t[hook].shape[1]

    def _check(self, hook: str):
        if hook not in self._t:
            raise KeyError(f"hook {hook!r} is not in the source; it holds {self.hooks}")

    @takes_config(Batching)
    def batches(self, hook_or_hooks: str | Sequence[str], batch_size: int, *, config: Batching):
        multi, hooks = batch_request(hook_or_hooks, batch_size, config, self._check)
        shuffle, seed, device, dtype, rank, world_size, epochs = astuple(config)
        for epoch in range(epochs):
            g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
            order = torch.randperm(self.n_rows, generator=g) if shuffle else torch.arange(self.n_rows)
            order = order[rank::world_size]
            for s in range(0, len(order), batch_size):
                sel = order[s:s + batch_size]
                out = tuple(self._t[h][sel].to(device=device, dtype=dtype) for h in hooks)
                yield out if multi else out[0]
