"""``interp dist COMMAND ...``: run a rank-aware subcommand inside a torchrun process group.

``torchrun --nproc_per_node=N -m interp.cli.main dist cache --model ... --out DIR`` starts N
processes; each initialises the process group from torchrun's environment
(:func:`interp.parallel.distributed`), parses COMMAND with the ordinary ``interp`` parser, runs it,
and tears the group down.  Only rank 0 prints.  ``dist cache``: rank r writes shards ``k % N == r``,
rank 0 merges the manifest.  ``dist sae train`` / ``dist transcoder train``: data-parallel training
(:func:`interp.dictionaries.train_sae` in the group; ``--batch-size`` is the global batch), rank 0
writes the checkpoints and the outputs.  docs/distributed.md has the commands.
"""

from __future__ import annotations

import argparse
import contextlib
import io

RANK_AWARE = ("cache", "sae train", "transcoder train")


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
    from interp.cli.common import UserError
    from interp.cli.main import build_parser
    from interp.parallel import distributed

    if not any(args.rest[:len(c.split())] == c.split() for c in RANK_AWARE):
        got = " ".join(args.rest[:2]) or "nothing"
        raise UserError(f"`interp dist` runs one of {list(RANK_AWARE)}, got {got}")
    inner = build_parser().parse_args(args.rest)
    with distributed(args.backend) as env:
        with contextlib.nullcontext() if env.is_main else contextlib.redirect_stdout(io.StringIO()):
            return int(inner.func(inner) or 0)
