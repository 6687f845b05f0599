"""Data-parallel (DDP) training of SAEs and transcoders over an activation store.

Algorithm (the rank-aware loop itself lives in :func:`interp.dictionaries.train_sae`):

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

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .launch import distributed


def train_sae_ddp(source, sae_cfg, cfg=None, sae=None, backend: str | None = None):
    """:func:`interp.dictionaries.train_sae` inside a process group built from torchrun's env.

    ``source`` is an :class:`~interp.store.ActivationStore`, a store path, or any object with
    the store's batch interface.  Returns the :class:`~interp.dictionaries.TrainResult` (the
    same weights on every rank).  Run without torchrun it is the single-process trainer.
    """
    from interp.dictionaries import train_sae
    from interp.store import ActivationStore

    if isinstance(source, (str, Path)):
        source = ActivationStore.open(source)
    with distributed(backend):
        return train_sae(source, sae_cfg, cfg, sae=sae)


def main(argv: list[str] | None = None) -> int:
    from interp.dictionaries import SAEConfig, TrainConfig, save_sae
    from interp.store import ActivationStore

    from .launch import dist_env

    p = argparse.ArgumentParser(
        prog="python -m interp.parallel.ddp_train",
        description="Data-parallel SAE/transcoder training over a store; launch with "
        "torchrun --nproc_per_node=N -m interp.parallel.ddp_train --store DIR --hook HOOK --out DIR",
    )
    p.add_argument("--store", required=True, help="activation store directory (the same path on every rank)")
    p.add_argument("--hook", required=True, help="hook to train on (the transcoder's input hook with --hook-out)")
    p.add_argument("--hook-out", default=None, help="transcoder: hook whose rows are reconstructed")
    p.add_argument("--arch", default="topk", help="relu, topk or jumprelu")
    p.add_argument("--d-sae", type=int, required=True, help="number of latents")
    p.add_argument("--k", type=int, default=32, help="TopK: latents per row")
    p.add_argument("--l1-coeff", type=float, default=5.0, help="ReLU: L1 weight")
    p.add_argument("--l0-coeff", type=float, default=1.0, help="JumpReLU: L0 weight")
    p.add_argument("--n-tokens", type=int, default=None, help="rows to train on (default: the whole store)")
    p.add_argument("--batch-size", type=int, default=4096, help="GLOBAL rows per step (split over the ranks)")
    p.add_argument("--lr", type=float, default=4e-4)
    p.add_argument("--warmup-steps", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-every", type=int, default=0, help="steps between checkpoints (rank 0 writes)")
    p.add_argument("--out", required=True, help="output folder: checkpoint/, sae/ (SAELens format), train.json")
    p.add_argument("--backend", default=None, help="gloo or nccl (default: nccl when CUDA is available)")
    args = p.parse_args(argv)
    store = ActivationStore.open(args.store)
    for h in filter(None, [args.hook, args.hook_out]):
        if h not in store.hooks:
            raise SystemExit(f"error: the store {args.store} has no rows for {h!r}; it holds {store.hooks}")
    env = dist_env()
    scfg = SAEConfig(arch=args.arch, d_in=store.d(args.hook), d_sae=args.d_sae,
                     d_out=store.d(args.hook_out) if args.hook_out else None, hook_in=args.hook,
                     hook_out=args.hook_out, k=args.k, l1_coeff=args.l1_coeff, l0_coeff=args.l0_coeff,
                     model_name=str(store.manifest.get("model", "")), context_length=store.manifest.get("context_length"))
    tcfg = TrainConfig(n_tokens=args.n_tokens or store.n_rows, batch_size=args.batch_size, lr=args.lr,
                       warmup_steps=args.warmup_steps, seed=args.seed, checkpoint_dir=args.out,
                       checkpoint_every=args.checkpoint_every, progress=env.is_main)
    r = train_sae_ddp(store, scfg, tcfg, backend=args.backend)
    if env.is_main:
        out = Path(args.out)
        save_sae(r.sae, out / "sae")
        payload = {"sae": str(out / "sae"), "steps": r.steps, "tokens": r.tokens, "seconds": r.seconds,
                   "tokens_per_s": r.tokens_per_s, "world_size": env.world_size, "fvu": r.fvu, "l0": r.l0,
                   "dead_fraction": r.dead_fraction, "history": r.history}
        (out / "train.json").write_text(json.dumps(payload, indent=2, default=str))
        print(f"trained {args.arch} on {args.hook} with {env.world_size} rank(s): {r.steps} steps, "
              f"{r.tokens:,} rows, {r.tokens_per_s:,.0f} rows/s; saved {out / 'sae'}")
    return 0


if __name__ == "__main__":
    from interp.parallel.launch import exit_worker

    exit_worker(main())
