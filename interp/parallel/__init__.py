"""Running the workbench on several processes, GPUs or machines with ``torch.distributed``.

Launch with ``torchrun`` (no home-made scheduler).  :mod:`interp.parallel.launch` turns
torchrun's environment into a process group; the caching job and the SAE trainer are
already rank-aware (see :func:`interp.store.cache_activations` and
:func:`interp.dictionaries.train_sae`).  :mod:`interp.parallel.ddp_train` is the entry point
for data-parallel dictionary training; ``interp dist cache ...`` runs the caching CLI under
torchrun.  docs/distributed.md has the commands.
"""

from .launch import DistEnv, dist_env, distributed, exit_worker, init_distributed


def __getattr__(name):  # lazy, so `python -m interp.parallel.ddp_train` runs without a runpy warning
    if name == "train_sae_ddp":
        from .ddp_train import train_sae_ddp

        return train_sae_ddp
    raise AttributeError(f"module 'interp.parallel' has no attribute {name!r}")

__all__ = ["DistEnv", "dist_env", "distributed", "exit_worker", "init_distributed", "train_sae_ddp"]
