"""Running the workbench on several processes, GPUs or machines with ``torch.distributed``.

Launch with ``torchrun`` (no home-made scheduler).  :mod:`interp.parallel.launch` turns
torchrun's environment into a process group (``with distributed() as env:``); the caching job
and the SAE trainer are rank-aware inside it (see :func:`interp.store.cache_activations` and
:func:`interp.dictionaries.train_sae`).  ``interp dist cache ...`` and ``interp dist sae train ...``
run those CLI commands under torchrun (:mod:`interp.cli.cmd_parallel`).  docs/distributed.md has
the commands.

Data-parallel dictionary training (:func:`~interp.dictionaries.train_sae` in an initialised group):

1. Every rank opens the same store and builds the same dictionary (same seed, same
   ``b_dec`` initialisation; rank 0's parameters are broadcast to be sure).
2. Every rank iterates the same shuffled sequence of global batches of ``batch_size`` rows
   (the order is a function of the seed alone, as in a single process) and keeps its slice
   ``tensor_split(world_size)[rank]``: ``batch_size / world_size`` rows of compute per rank.
3. Each rank back-propagates its loss weighted by ``rows_local / rows_global``; one
   all-reduce (sum) of the flattened gradients gives every rank the gradient of the
   row-mean loss over the whole global batch, so all ranks take the same Adam step and stay
   bit-identical without a parameter broadcast.
4. Fired-latent masks are all-reduced with MAX (dead-latent counters stay equal); only
   rank 0 writes checkpoints, and a resumed job reads them on every rank (shared
   filesystem for multi-node).

Hence a W-rank run with ``batch_size`` B equals the single-process run with batch B up to
float summation order, for every arch: ReLU and JumpReLU losses are means over rows, and
TopK's MSE normaliser (the batch's variance) is computed over the global batch with two
extra all-reduces (:func:`interp.dictionaries.topk_sae.data_parallel_normaliser`).  Tested
with 2 gloo ranks against the single-process run's own summation-order noise (the same run
with the rows of each batch permuted).  Float order still matters where the optimiser
amplifies rounding noise: see ``TrainConfig.adam_eps``.

Cost per rank: the SAE, two Adam moments, one global batch of rows read (the slicing
happens after the read: store I/O is W-fold redundant, compute is not) and one extra
gradient-sized buffer for the all-reduce.
"""

from .launch import DistEnv, dist_env, distributed, exit_worker

__all__ = ["DistEnv", "dist_env", "distributed", "exit_worker"]
