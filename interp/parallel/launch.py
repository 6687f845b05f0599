"""Process groups from ``torchrun``'s environment: init, query, tear down.

``torchrun`` (``torch.distributed.run``) starts one process per rank and sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` in each.  The store and
the trainer never launch anything themselves; they only ask ``torch.distributed`` who they
are (:func:`interp.store.cache_activations` writes shards ``k % world == rank``;
:func:`interp.dictionaries.train_sae` trains on this rank's slice of each global batch).  This
module is the one place that turns the environment into an initialised process group:

1. :func:`dist_env` reads the variables (a plain single process when ``WORLD_SIZE`` is unset).
2. :func:`distributed` picks the backend (``nccl`` when CUDA is available, else ``gloo``),
   binds the process to GPU ``LOCAL_RANK``, calls ``init_process_group`` with the ``env://``
   rendezvous and destroys the group in ``finally``, so an exception on one rank does not
   leave a dangling group behind.  On a normal exit every
   rank first meets the others at a barrier: a rank that destroys its gloo group while a
   peer is still working (rank 0 saving files) can abort at interpreter exit with
   "terminate called without an active exception" (gloo teardown; seen in CI).  The barrier
   makes that rare, not impossible (counts in docs/benchmarks.md, "Distributed").  After an
   exception there is no barrier (the other ranks may never arrive).

Memory: nothing (a process group holds a few sockets / NCCL communicators).
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistEnv:
    """Who this process is in a ``torchrun`` job."""

    rank: int
    """Global rank, ``0 <= rank < world_size``."""
    world_size: int
    """Number of processes in the job (all nodes)."""
    local_rank: int
    """Rank on this node; selects the GPU."""

    def __post_init__(self):
        if self.world_size < 1 or not 0 <= self.rank < self.world_size or self.local_rank < 0:
            raise ValueError(f"inconsistent distributed environment: rank={self.rank}, world_size={self.world_size}, "
                             f"local_rank={self.local_rank}")

    @property
    def is_main(self) -> bool:
        """True on rank 0 (the rank that prints and writes shared files)."""
        return self.rank == 0


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name) or str(default)
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not an integer (set by torchrun)") from None


def dist_env() -> DistEnv:
    """The ``torchrun`` environment of this process; rank 0 of 1 when it is not set."""
    return DistEnv(_int_env("RANK", 0), _int_env("WORLD_SIZE", 1), _int_env("LOCAL_RANK", 0))


def exit_worker(code: int | None) -> None:
    """Exit a process: ``os._exit`` after flushing when it is one of several torchrun ranks.

    Everything the worker wrote is flushed or closed before this is called (files are closed
    by their ``with`` blocks; stdout/stderr are flushed here).  ``atexit`` handlers do not run
    for a multi-rank worker.  One process (``WORLD_SIZE`` unset or 1) raises ``SystemExit``.
    """
    code = 0 if code is None else int(code)
    if dist_env().world_size > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise SystemExit(code)


@contextmanager
def distributed(backend: str | None = None):
    """``with distributed() as env:`` -- the default process group from the environment, always torn down.

    Yields the :class:`DistEnv`.  One process, or a group initialised already: nothing to set up or
    tear down.  With ``WORLD_SIZE > 1`` it needs ``MASTER_ADDR`` and ``MASTER_PORT`` (``torchrun`` sets
    them); a missing one is an error naming it.
    """
    env = dist_env()
    owned = env.world_size > 1 and not dist.is_initialized()
    if owned:
        missing = [v for v in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(v)]
        if missing:
            raise RuntimeError(f"WORLD_SIZE={env.world_size} but {missing} is not set: launch with torchrun "
                               "(e.g. torchrun --nproc_per_node=2 -m interp.cli.main dist cache ...)")
        # default: nccl on CUDA machines, gloo otherwise (CPU; also what the tests use)
        backend = backend or ("nccl" if torch.cuda.is_available() and dist.is_nccl_available() else "gloo")
        if backend == "nccl":
            torch.cuda.set_device(env.local_rank)
        dist.init_process_group(backend=backend, rank=env.rank, world_size=env.world_size,
                                timeout=timedelta(minutes=30))
    try:
        yield env
        if owned:  # not after an exception: the other ranks may never arrive
            dist.barrier()
    finally:
        if owned:
            dist.destroy_process_group()
