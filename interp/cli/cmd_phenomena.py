"""``interp sinks``, ``interp massive``, ``interp bigram-backcopy``: extreme-token phenomena.

Each writes ``results.json`` (with ``"kind"``) and ``report.html`` into ``--out`` and prints a
summary (or, with ``--json``, the results).  Flags map one-to-one onto
:class:`interp.phenomena.dormant.DormantConfig`, :class:`interp.phenomena.massive.MassiveConfig`
and :class:`interp.toy.bigram_backcopy.BBTrainConfig`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from interp.cli.common import out_path
from interp.cli.main import UserError, emit


def register(sub) -> None:
    from interp.cli.common import command, default_of, renamed
    from interp.phenomena.dormant import ABLATIONS, DormantConfig
    from interp.phenomena.massive import MassiveConfig
    from interp.toy.bigram_backcopy import BBTask, BBTrainConfig

    d = lambda f: default_of(DormantConfig, f)  # noqa: E731
    p = command(sub, "sinks", help="attention sinks, value drains, residual peaks, active/dormant heads per domain",
                out="runs/sinks", model="smollm2-135m", seed=d("seed"))
    p.add_argument("--domains", default=None, help="folder of *.txt files, one domain each (None: prose, code, numbers)")
    p.add_argument("--seq-len", type=int, default=d("seq_len"), help="tokens per sequence, BOS included")
    p.add_argument("--n", type=int, default=d("n_seqs"), help="sequences per domain")
    p.add_argument("--sink-threshold", type=float, default=d("sink_threshold"), help="sink score for a dormant candidate")
    p.add_argument("--loss-threshold", type=float, default=d("loss_threshold"),
                   help="|Δloss| (nats/token) that counts as 'barely'")
    p.add_argument("--ablation", choices=list(ABLATIONS), default=d("ablation"),
                   help="move attention to BOS, or zero the head")
    p.add_argument("--heads", choices=["candidates", "all"], default=d("heads"), help="which heads to ablate")
    p.add_argument("--max-heads", type=int, default=d("max_heads"), help="most candidate heads ablated")
    p.add_argument("--heads-per-pass", type=int, default=d("heads_per_pass"), help="ablations batched into one forward pass")
    p.add_argument("--n-boot", type=int, default=d("n_boot"), help="bootstrap resamples of the sequences for the Δloss CI")
    p.add_argument("--ci-level", type=float, default=d("ci_level"), help="confidence level of the Δloss interval")
    renamed(p, "--n-seqs", "--n")
    p.set_defaults(func=run_sinks)

    m = lambda f: default_of(MassiveConfig, f)  # noqa: E731
    p = command(sub, "massive", help="massive activations: detection, zero/mean ablation, dynamics over checkpoints",
                out="runs/massive", model=None,
                description="massive activations: detection, zero/mean ablation, dynamics over checkpoints. "
                            "--model None: smollm2-135m, or the last of --checkpoints")
    p.add_argument("--checkpoints", default=None, help="folder of step_<N> checkpoints: fit the ratio dynamics per layer")
    p.add_argument("--abs-threshold", type=float, default=m("abs_threshold"), help="|a| must exceed this")
    p.add_argument("--ratio-threshold", type=float, default=m("ratio_threshold"), help="|a| / layer median must reach this")
    p.add_argument("--ablation-hook", default=None,
                   help="residual hook to overwrite the massive activations at (None: where the big ones appear)")
    p.add_argument("--seq-len", type=int, default=64, help="tokens per sequence, BOS included")
    p.add_argument("--n", type=int, default=4, help="sequences per built-in domain")
    p.add_argument("--heldout-seqs", type=int, default=4,
                   help="held-out sequences per domain (the text after the analysed ones; Bigram-Backcopy: another "
                        "seed) from which the mean ablation takes one mean per token kind (first token, delimiter)")
    renamed(p, "--n-seqs", "--n")
    p.set_defaults(func=run_massive)

    b, t = (lambda f: default_of(BBTrainConfig, f)), (lambda f: default_of(BBTask, f))
    p = command(sub, "bigram-backcopy", help="train the Bigram-Backcopy toy model with checkpoints and measure it",
                description="Train the Bigram-Backcopy toy model; --out receives step_<N>/ checkpoints, bb_task.json, "
                            "results.json and report.html.",
                out="runs/bigram-backcopy", device=True, seed=b("seed"))
    p.add_argument("--train-steps", type=int, default=b("steps"), help="optimiser steps")
    p.add_argument("--n-layers", type=int, default=b("n_layers"), help="transformer blocks, one head each")
    p.add_argument("--d-model", type=int, default=b("d_model"), help="residual width (MLP: 4x)")
    p.add_argument("--arch", choices=["gpt2", "llama"], default=b("arch"), help="model architecture")
    p.add_argument("--init", choices=["paper", "hf"], default=b("init"),
                   help="paper: PyTorch-default init (embeddings N(0,1)); hf: Hugging Face N(0,0.02)")
    p.add_argument("--activation", choices=["relu", "gelu_new", "gelu"], default=b("activation"),
                   help="gpt2 MLP nonlinearity")
    p.add_argument("--batch-size", type=int, default=b("batch_size"), help="sequences per step")
    p.add_argument("--lr", type=float, default=b("lr"), help="peak AdamW learning rate")
    p.add_argument("--beta2", type=float, default=b("betas")[1], help="AdamW beta2 (beta1 = 0.9)")
    p.add_argument("--warmup", type=int, default=b("warmup"), help="linear warm-up steps")
    p.add_argument("--seq-len", type=int, default=t("seq_len"), help="tokens per sequence, ⟨s⟩ included")
    p.add_argument("--weight-decay", type=float, default=b("weight_decay"), help="AdamW weight decay")
    renamed(p, "--steps", "--train-steps")
    renamed(p, "--layers", "--n-layers")
    p.epilog = ("defaults (3 layers, paper init, ReLU, AdamW lr 1e-2 with 200 warm-up steps, betas (0.9, 0.99), "
                "2000 steps of 32 x 32 tokens; 2-3 CPU minutes) reproduce the mechanism: the copy head sinks to ⟨s⟩ "
                "off-trigger (0.95-1.0) with a drained value (0.10-0.27 x other tokens) at seeds 0-4; the residual "
                "after layer 0 peaks at ⟨s⟩ (2.5-6.6 x mean) at seeds 0-2 but only 1.4-1.9 x at seeds 3-4, and stays far "
                "from LLM-scale massive activations (see interp/toy/bigram_backcopy.py)")
    p.set_defaults(func=run_bb)


CONFIG_FLAGS = [
    (("sinks",), "interp.phenomena.dormant:DormantConfig", {
        "seq_len": "seq_len", "n": "n_seqs", "sink_threshold": "sink_threshold", "loss_threshold": "loss_threshold",
        "ablation": "ablation", "heads": "heads", "max_heads": "max_heads", "heads_per_pass": "heads_per_pass",
        "n_boot": "n_boot", "ci_level": "ci_level", "seed": "seed"}),
    (("massive",), "interp.phenomena.massive:MassiveConfig", {
        "abs_threshold": "abs_threshold", "ratio_threshold": "ratio_threshold"}),
    (("bigram-backcopy",), "interp.toy.bigram_backcopy:BBTrainConfig", {
        "train_steps": "steps", "n_layers": "n_layers", "d_model": "d_model", "arch": "arch", "init": "init",
        "activation": "activation", "batch_size": "batch_size", "lr": "lr", "warmup": "warmup",
        "weight_decay": "weight_decay", "seed": "seed"}),
    (("bigram-backcopy",), "interp.toy.bigram_backcopy:BBTask", {"seq_len": "seq_len"}),
]
"""(command path, config, flag dest -> field): checked by tests/test_cli_grammar.py."""


def _meta(model, seconds: float) -> dict:
    from interp.models import model_name, weight_hash

    return {"model": model_name(model), "weight_hash": weight_hash(model), "seconds": round(seconds, 2),
            "device": str(next(model.parameters()).device)}


def _write(out: Path, payload: dict, report) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(payload, indent=1, default=str))
    report.write(out / "report.html")


def run_sinks(args) -> int:
    from dataclasses import asdict

    from interp.models import load_model
    from interp.phenomena import default_domains, domains_from_dir
    from interp.phenomena.dormant import DormantConfig, active_dormant
    from interp.phenomena.reporting import sinks_report

    cfg = DormantConfig(sink_threshold=args.sink_threshold, loss_threshold=args.loss_threshold, ablation=args.ablation,
                        heads=args.heads, max_heads=args.max_heads, heads_per_pass=args.heads_per_pass,
                        seq_len=args.seq_len, n_seqs=args.n, n_boot=args.n_boot, ci_level=args.ci_level, seed=args.seed)
    domains = domains_from_dir(args.domains) if args.domains else default_domains()
    t0 = time.time()
    model = load_model(args.model, device=args.device)
    res = active_dormant(model, domains, cfg)
    meta = _meta(model, time.time() - t0)
    payload = {"kind": "sinks", "meta": meta, "config": asdict(cfg), **res.to_json()}
    decode = lambda i: model.tokenizer.decode([i])  # noqa: E731
    _write(Path(out_path(args)), payload, sinks_report(res, meta, asdict(cfg), decode))
    lines = [f"sinks: {meta['model']}, domains {res.domains}, {len(res.heads)} heads ablated, {meta['seconds']} s"]
    for d in res.domains:
        st = res.stats[d]
        top = st.sink_score.flatten().topk(3)
        H = st.sink_score.shape[1]
        heads = ", ".join(f"L{int(i) // H}H{int(i) % H}={float(v):.3f}" for v, i in zip(top.values, top.indices))
        L = int(st.resid_peak.argmax())
        lines.append(f"  {d}: clean loss {res.clean_loss[d]:.3f}; top sink heads {heads}; "
                     f"min value drain {float(st.value_drain.min()):.3f}; "
                     f"max residual peak {float(st.resid_peak.max()):.2f} at L{L}; "
                     f"column entropy (Guo) min {float(res.column_entropy[d].min()):.3f} "
                     f"max {float(res.column_entropy[d].max()):.3f}")
    for s in res.switching:
        lines.append(f"  switching {s['head']}: dormant on {s['dormant_on']}, active on {s['active_on']}; "
                     f"sink {({k: round(v, 3) for k, v in s['sink_score'].items()})}, "
                     f"Δloss {({k: round(v, 4) for k, v in s['delta_loss'].items()})}, "
                     f"{args.ci_level:.0%} CI {({k: [round(x, 4) for x in v] for k, v in s['delta_ci'].items()})}")
    if not res.switching:
        lines.append("  no switching head meets the criteria (see results.json 'table')")
    lines.append(f"wrote {out_path(args)}/results.json and report.html")
    emit(args, payload, "\n".join(lines))
    return 0


def run_massive(args) -> int:
    from dataclasses import asdict

    import torch

    from interp.models import load_model
    from interp.phenomena import default_domains, domain_tokens
    from interp.phenomena.dynamics import checkpoint_dynamics, list_checkpoints
    from interp.phenomena.massive import MassiveConfig, massive_ablation, massive_stats
    from interp.phenomena.reporting import massive_report
    from interp.toy.bigram_backcopy import bb_eval_tokens, load_task

    cfg = MassiveConfig(abs_threshold=args.abs_threshold, ratio_threshold=args.ratio_threshold)
    task = load_task(args.checkpoints) if args.checkpoints else None
    if args.model:
        task = task or (load_task(args.model) if Path(args.model).is_dir() else None)

    if args.heldout_seqs < 1:
        raise UserError(f"--heldout-seqs must be >= 1, got {args.heldout_seqs}")

    def tokens_for(model):
        if task is not None:
            return bb_eval_tokens(task, n_seqs=16)
        return torch.cat([domain_tokens(model, d, args.seq_len, args.n) for d in default_domains()])

    def heldout_for(model):
        """Rows not in ``tokens_for``: the windows after the analysed ones in each domain (BB: another seed)."""
        if task is not None:
            return bb_eval_tokens(task, n_seqs=args.heldout_seqs, seed=2)
        n = args.n + args.heldout_seqs
        return torch.cat([domain_tokens(model, d, args.seq_len, n)[args.n:] for d in default_domains()])

    t0 = time.time()
    dynamics = None
    if args.checkpoints:
        ckpts = list_checkpoints(args.checkpoints)
        dynamics = checkpoint_dynamics(args.checkpoints, tokens_for, cfg, device=args.device)
    name = args.model or (str(ckpts[-1][1]) if args.checkpoints else "smollm2-135m")
    model = load_model(name, device=args.device)
    tokens = tokens_for(model)
    stats = massive_stats(model, tokens, cfg)
    ablation = (massive_ablation(model, tokens, stats, hook=args.ablation_hook, heldout=heldout_for(model))
                if stats.entries else None)
    meta = _meta(model, time.time() - t0)
    payload = {"kind": "massive", "meta": meta, "config": asdict(cfg), "checkpoints": args.checkpoints,
               "stats": stats.to_json(), "ablation": ablation.to_json() if ablation else None,
               "dynamics": dynamics.to_json() if dynamics else None}
    _write(Path(out_path(args)), payload, massive_report(stats, ablation, dynamics, meta, {**asdict(cfg), "checkpoints": args.checkpoints}))
    lines = [f"massive: {meta['model']}, {tokens.shape[0]}x{tokens.shape[1]} tokens, {stats.n_entries} massive "
             f"activations {stats.kinds()}, {meta['seconds']} s"]
    for row in stats.summary()[:12]:
        lines.append(f"  L{row['layer']} dim {row['dim']} {row['kind']}: n={row['count']} mean {row['mean_value']:.1f}")
    lines.append("  top-1/median ratio per layer: " + " ".join(f"{x:.0f}" for x in stats.ratio.tolist()))
    if ablation:
        lines.append(f"  overwrite at {ablation.hook} dims {ablation.dims} ({ablation.n_overwritten} entries): loss "
                     + ", ".join(f"{k} {v:.3f}" for k, v in ablation.loss.items()) + "; KL "
                     + ", ".join(f"{k} {v:.4f}" for k, v in ablation.kl.items()))
        lines.append("  held-out means per kind: " + "; ".join(
            f"{k} {[None if x is None else round(x, 1) for x in v]} (n={ablation.n_heldout[k]})"
            for k, v in ablation.mean_values.items() if any(x is not None for x in v)))
    if dynamics:
        lines.append(f"  dynamics over {len(dynamics.steps)} checkpoints:")
        for j, (f, e) in enumerate(zip(dynamics.fits, dynamics.errors)):
            lines.append(f"    L{j}: " + (f"R2 {f.r2:.3f} A {f.A:.3g} lam {f.lam:.3g} gamma {f.gamma:.3g} t0 {f.t0:.3g} "
                                          f"K {f.K:.3g} t_peak {f.t_peak:.3g}" if f else f"fit failed: {e}"))
    lines.append(f"wrote {out_path(args)}/results.json and report.html")
    emit(args, payload, "\n".join(lines))
    return 0


def run_bb(args) -> int:
    from dataclasses import asdict

    from interp.models import load_model
    from interp.phenomena.reporting import bb_report
    from interp.toy.bigram_backcopy import BBTask, BBTrainConfig, bb_mechanism, train_bb

    task = BBTask(seq_len=args.seq_len)
    cfg = BBTrainConfig(arch=args.arch, n_layers=args.n_layers, d_model=args.d_model, d_mlp=4 * args.d_model,
                        activation=args.activation, init=args.init, steps=args.train_steps, batch_size=args.batch_size,
                        lr=args.lr, betas=(0.9, args.beta2), warmup=args.warmup, weight_decay=args.weight_decay,
                        seed=args.seed)
    out = Path(out_path(args))
    if out.exists() and any(out.glob("step_*")):
        raise UserError(f"{out} already holds checkpoints; choose an empty --out")
    run = train_bb(out, task, cfg, device=args.device)
    mechs = {}
    for s in run.steps:
        m = load_model(str(out / f"step_{s:06d}"), device=args.device)
        mechs[s] = bb_mechanism(m, task)
    meta = {"model": "bigram-backcopy", "seconds": round(run.seconds, 1), "tokens_per_second": round(run.tokens_per_second)}
    payload = {"kind": "bigram_backcopy", "meta": meta, "task": {k: v for k, v in asdict(task).items() if k != "text"},
               "train": asdict(cfg), "final_loss": run.losses[-1],
               "mechanism": {str(s): asdict(v) for s, v in mechs.items()}}
    _write(out, payload, bb_report(mechs, run, meta, asdict(cfg)))
    last = mechs[run.steps[-1]]
    c = max(range(cfg.n_layers), key=lambda l: last.ablation_delta_trigger[l])  # the copy head
    peak = [f"{x / y:.2f}" for x, y in zip(last.resid_norm_sink, last.resid_norm_rest_mean)]
    human = (f"bigram-backcopy: {cfg.steps} steps in {run.seconds:.0f} s ({run.tokens_per_second:.0f} tok/s), "
             f"{len(run.steps)} checkpoints in {out}\n"
             f"  copy head L{c}: attention to previous token at triggers {last.attn_prev_at_trigger[c]:.3f}, "
             f"to ⟨s⟩ elsewhere {last.attn_bos_at_other[c]:.3f}; moved to ⟨s⟩: Δloss "
             f"{last.ablation_delta_trigger[c]:.3f} at triggers, {last.ablation_delta_other[c]:.4f} elsewhere; "
             f"value drain {last.value_drain[c]:.3f}\n"
             f"  residual peak ‖h(⟨s⟩)‖ / mean other per layer: {' '.join(peak)}\n"
             f"  final: {json.dumps(asdict(last))}\n"
             f"  next: interp massive --checkpoints {out} --out {out}/massive")
    emit(args, payload, human)
    return 0
