"""Running the workbench on several processes, GPUs or machines with ``torch.distributed``.

Launch with ``torchrun`` (no home-made scheduler).  :mod:`interp.parallel.launch` turns
torchrun's environment into a process group; the caching job and the SAE trainer are
already rank-aware (see :func:`interp.store.cache_activations` and
:func:`interp.dictionaries.train_sae`).  :func:`train_sae_ddp` is data-parallel dictionary
training from Python; ``interp dist cache ...`` and ``interp dist sae train ...`` run those
CLI commands under torchrun.  docs/distributed.md has the commands.
"""

from .ddp_train import train_sae_ddp
from .launch import DistEnv, dist_env, distributed, exit_worker, init_distributed

__all__ = ["DistEnv", "dist_env", "distributed", "exit_worker", "init_distributed", "train_sae_ddp"]
