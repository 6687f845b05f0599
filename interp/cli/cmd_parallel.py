"""``interp dist COMMAND ...``: run a rank-aware subcommand inside a torchrun process group.

``torchrun --nproc_per_node=N -m interp.cli.main dist cache --model ... --out DIR`` starts N
processes; each initialises the process group from torchrun's environment
(:func:`interp.parallel.distributed`), runs the ordinary subcommand (rank r writes shards
``k % N == r``, rank 0 merges the manifest), and tears the group down.  Only rank 0 prints.
Data-parallel SAE training is ``torchrun ... -m interp.parallel.ddp_train`` (see
docs/distributed.md).
"""

from __future__ import annotations

import argparse
import contextlib
import io

RANK_AWARE = ("cache",)


def register(sub) -> None:
    p = sub.add_parser(
        "dist",
        help="run a subcommand on all ranks of a torchrun job (torchrun ... -m interp.cli.main dist cache ...)",
        description="Initialise torch.distributed from torchrun's environment and run COMMAND on every rank. "
        f"Rank-aware commands: {', '.join(RANK_AWARE)}.",
    )
    p.add_argument("--backend", default=None, choices=["gloo", "nccl"], help="gloo or nccl (None: nccl when CUDA is available)")
    p.add_argument("rest", nargs=argparse.REMAINDER, metavar="COMMAND ...", help="the subcommand and its flags")
    p.set_defaults(func=run)


def run(args) -> int:
    from interp.cli.main import UserError, build_parser
    from interp.parallel import distributed

    if not args.rest or args.rest[0] not in RANK_AWARE:
        got = args.rest[0] if args.rest else "nothing"
        raise UserError(f"`interp dist` runs one of {list(RANK_AWARE)}, got {got}; "
                        "for SAE training use torchrun ... -m interp.parallel.ddp_train")
    inner = build_parser().parse_args(args.rest)
    with distributed(args.backend) as env:
        with contextlib.nullcontext() if env.is_main else contextlib.redirect_stdout(io.StringIO()):
            return int(inner.func(inner) or 0)
