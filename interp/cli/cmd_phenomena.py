"""``interp sinks``, ``interp massive``, ``interp bigram-backcopy``: extreme-token phenomena.

Each calls the public function (:func:`interp.phenomena.dormant.active_dormant`,
:func:`interp.phenomena.massive.massive_run`, :func:`interp.toy.bigram_backcopy.bb_experiment`), writes its
typed result to ``results.json`` and its report to ``report.html`` in ``--out``, and prints the result's
summary (or, with ``--json``, the results).  Flags map one-to-one onto
:class:`interp.phenomena.dormant.DormantConfig`, :class:`interp.phenomena.massive.MassiveConfig`
and :class:`interp.toy.bigram_backcopy.BBTrainConfig`.
"""

from __future__ import annotations

from pathlib import Path

from interp.cli.common import (
    UserError, command, config_defaults, default_of, flag_settings, model_of, out_path, same, write_result)
from interp.phenomena import default_domains, domains_from_dir
from interp.phenomena.dormant import DormantConfig, active_dormant
from interp.phenomena.massive import MassiveConfig, massive_run
from interp.toy.bigram_backcopy import BBTask, BBTrainConfig, bb_experiment


def register(sub) -> None:
    p = command(sub, "sinks", help="attention sinks, value drains, residual peaks, active/dormant heads per domain",
                out="runs/sinks", model="smollm2-135m", seed=None, func=run_sinks)
    p.add_argument("--domains", help="folder of *.txt files, one domain each (None: prose, code, numbers)")
    config_defaults(p, CONFIG_FLAGS[0])  # DormantConfig checks ablation and heads

    p = command(sub, "massive", help="massive activations: detection, zero/mean ablation, dynamics over checkpoints",
                out="runs/massive", model=None, func=run_massive,
                description="massive activations: detection, zero/mean ablation, dynamics over checkpoints. "
                            "--model None: smollm2-135m, or the last of --checkpoints")
    p.add_argument("--checkpoints", help="folder of step_<N> checkpoints: fit the ratio dynamics per layer")
    p.add_argument("--ratio-threshold", type=float, help="|a| / layer median must reach this")
    p.add_argument("--ablation-hook",
                   help="residual hook to overwrite the massive activations at (None: where the big ones appear)")
    p.add_argument("--seq-len", type=int, help="tokens per sequence, BOS included")
    p.add_argument("--n", type=int, help="sequences per built-in domain")
    p.add_argument("--heldout-seqs", type=int,
                   help="held-out sequences per domain (the text after the analysed ones; Bigram-Backcopy: another "
                        "seed) from which the mean ablation takes one mean per token kind (first token, delimiter)")
    config_defaults(p, *CONFIG_FLAGS[1:3])

    p = command(sub, "bigram-backcopy", help="train the Bigram-Backcopy toy model with checkpoints and measure it",
                description="Train the Bigram-Backcopy toy model; --out receives step_<N>/ checkpoints, bb_task.json, "
                            "results.json and report.html.",
                out="runs/bigram-backcopy", seed=None, func=run_bb)
    p.add_argument("--beta2", type=float, default=default_of(BBTrainConfig, "betas")[1],
                   help="AdamW beta2 (beta1 = 0.9)")
    p.epilog = ("the defaults (3 layers, paper init, ReLU, AdamW lr 1e-2 after 200 warm-up steps, 2000 steps of "
                "32 x 32 tokens) reproduce the mechanism; measured numbers per seed: docs/methods.md, Bigram-Backcopy toy")
    config_defaults(p, *CONFIG_FLAGS[3:], choices={"activation": ["relu", "gelu_new", "gelu"]})


_DORMANT = {"n": "n_seqs", **same("seq_len", "sink_threshold", "loss_threshold", "ablation", "heads",
                                  "max_heads", "heads_per_pass", "n_boot", "ci_level", "seed")}
_MASSIVE_RUN = {"n": "n_seqs", "ablation_hook": "hook", **same("seq_len", "heldout_seqs")}
_BB = {"train_steps": "steps", **same("n_layers", "d_model", "arch", "init", "activation", "batch_size",
                                      "lr", "warmup", "weight_decay", "seed")}
CONFIG_FLAGS = [
    (("sinks",), "interp.phenomena.dormant:DormantConfig", _DORMANT),
    (("massive",), "interp.phenomena.massive:MassiveConfig", same("abs_threshold", "ratio_threshold")),
    (("massive",), "interp.phenomena.massive:massive_run", _MASSIVE_RUN),
    (("bigram-backcopy",), "interp.toy.bigram_backcopy:BBTrainConfig", _BB),
    (("bigram-backcopy",), "interp.toy.bigram_backcopy:BBTask", same("seq_len")),
]
"""(command path, config, flag dest -> field): checked by tests/test_cli_grammar.py."""


def run_sinks(args) -> int:
    cfg = DormantConfig(**flag_settings(args, CONFIG_FLAGS[0]))
    domains = domains_from_dir(args.domains) if args.domains else default_domains()
    res = active_dormant(model_of(args), domains, cfg)
    return write_result(args, res)


def run_massive(args) -> int:
    res = massive_run(args.model, args.checkpoints, MassiveConfig(**flag_settings(args, CONFIG_FLAGS[1])),
                      **flag_settings(args, CONFIG_FLAGS[2]), device=args.device)
    return write_result(args, res)


def run_bb(args) -> int:
    task = BBTask(seq_len=args.seq_len)
    cfg = BBTrainConfig(**flag_settings(args, CONFIG_FLAGS[3]), d_mlp=4 * args.d_model, betas=(0.9, args.beta2))
    out = Path(out_path(args))
    if any(out.glob("step_*")):
        raise UserError(f"{out} already holds checkpoints; choose an empty --out")
    return write_result(args, bb_experiment(out, task, cfg, device=args.device),
                        f"  next: interp massive --checkpoints {out} --out {out}/massive")
