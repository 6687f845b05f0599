"""Training SAEs and transcoders from shuffled activation batches (a store or in-memory rows).

Algorithm (one step per batch of ``batch_size`` rows; SAE: x = target = rows of ``hook_in``;
transcoder: x = rows of ``hook_in``, target = rows of ``hook_out``):

1. Before the first step, ``b_dec`` is set from data: the geometric median (Weiszfeld
   iterations) or the mean of ``init_rows`` target rows (Gao et al. 2024; Bricken et al. 2023).
   A transcoder's input and output live in different spaces, so the SAE's tied init
   (W_enc = W_dec^T) means nothing there; ``transcoder_init`` picks its encoder init:
   ``"regression"`` (default) sets W_enc = B W_dec^T, with B the ridge least-squares map
   from centred inputs to centred targets on the same rows (the encoder starts as the tied
   encoder of the best linear prediction of the output), then ``b_enc = -mean(x) @ W_enc``
   (input-mean centring: b_dec lives in output space and cannot centre the input), then
   W_enc, b_enc scaled so the mean norm of the first TopK reconstruction equals that of the
   centred targets; ``"centre"`` only does the centring; ``"random"`` leaves the random
   encoder, which leaves many latents dead when input and output spaces differ (the reason
   ``regression`` is the default).
2. loss = ``sae.loss(x, target, dead_mask)``; backward.
3. The decoder gradient's component parallel to each (unit) decoder row is removed, Adam
   steps with a linear warm-up (``warmup_steps``) and a linear decay to zero over the last
   ``decay_frac`` of the steps, and the decoder rows are projected back to unit norm.
4. Dead-latent tracking: a latent is dead when it has not fired for ``dead_after_tokens``
   rows; the mask feeds TopK's AuxK loss and the reported dead fraction.
5. Every ``checkpoint_every`` steps (and on Ctrl-C), ``checkpoint_dir`` receives the SAE in
   SAELens format (``cfg.json`` + ``sae_weights.safetensors``) plus ``trainer_state.safetensors``
   (Adam moments, dead-latent counters) and ``trainer_state.json`` (step, rows seen, configs).
   Written to a temporary folder and renamed, so a crash leaves the previous checkpoint whole.
   :func:`train_sae` with the same ``checkpoint_dir`` resumes from it: the batch order is a
   function of ``seed`` alone and the first ``step`` batches are skipped, so a resumed run
   ends with the same weights as an uninterrupted one (tested bit for bit on CPU).

A tqdm bar shows live L0, FVU and dead fraction.

Data parallel: when ``torch.distributed`` is initialised (e.g. under ``torchrun``, see
:mod:`interp.parallel`), every rank reads the same global batch of ``batch_size`` rows and
trains on its slice (``tensor_split`` into ``world_size`` parts); each rank's loss is weighted
by its share of the rows and the gradients are summed with one all-reduce, the fired-latent
masks are OR-ed, and only rank 0 writes checkpoints.  For losses that are means over rows
(``relu``, ``jumprelu``, transcoders of them) this is the single-process step on the whole
batch; TopK's batch-variance normaliser is all-reduced over the global batch, so it is too.

Memory: parameters + two Adam moments (3x the SAE's size) + one batch's activations.  Time per step:
the encoder and decoder products and their gradients, ``O(batch_size * d_sae * d)`` (TopK:
``O(batch_size * k * d)`` besides the no-grad selection, :mod:`~interp.dictionaries.sparse_decode`).
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from interp.results import check_fields, encode, versions

from .base import SAEConfig, SparseCoder
from .registry import make
from .results import DictionaryTraining
from .saelens_io import load_sae, save_sae
from .topk_sae import data_parallel_normaliser


@dataclass
class TrainConfig:
    """How to train one dictionary."""

    n_tokens: int = 1_000_000
    """Rows (tokens) to train on; more than the source holds means several epochs."""
    batch_size: int = 4096
    """Rows per optimiser step."""
    lr: float = 4e-4
    """Peak Adam learning rate."""
    warmup_steps: int = 100
    """Linear learning-rate warm-up from 0 over this many steps."""
    decay_frac: float = 0.2
    """Fraction of the steps at the end over which the learning rate decays linearly to 0."""
    adam_eps: float = 6.25e-10
    """Adam epsilon (Gao et al. 2024).  Adam turns any gradient much larger than eps into a step of about ``lr``,
    so a gradient that is zero in exact arithmetic but not in float (a JumpReLU latent firing alone on a row at
    the tied init: its reconstruction gradient cancels) becomes an lr-sized step in a random direction.  With
    activations of small norm (tiny random models: ~0.1) that makes runs chaotic in the float summation order;
    raise eps towards the gradients' scale there."""
    b_dec_init: str = "geometric_median"
    """``geometric_median``, ``mean`` or ``zeros``: how ``b_dec`` starts."""
    transcoder_init: str = "regression"
    """Transcoders: ``regression``, ``centre`` or ``random`` encoder init (see the module docstring)."""
    init_rows: int = 16384
    """Rows read to initialise ``b_dec``."""
    dead_after_tokens: int = 1_000_000
    """A latent that has not fired for this many rows counts as dead (Gao: 10M)."""
    seed: int = 0
    """Seeds the initialisation and the batch order."""
    device: str | None = None
    """Torch device; default CUDA when available, else CPU."""
    checkpoint_dir: str | None = None
    """Folder for checkpoints; training resumes from it when it holds one."""
    checkpoint_every: int = 0
    """Steps between checkpoints (0: only at the end and on interruption)."""
    log_every: int = 10
    """Steps between progress-bar / history updates."""
    progress: bool = True
    """Show a tqdm progress bar."""
    max_steps: int | None = None
    """Stop after this many steps in this call (the schedule still spans ``n_tokens``); for tests/time limits."""

    def __post_init__(self):
        check_fields(self, {"transcoder_init": ("regression", "centre", "random"),
                            "b_dec_init": ("geometric_median", "mean", "zeros")},
                     {"n_tokens": 1, "batch_size": 1, "warmup_steps": 0, "checkpoint_every": 0, "log_every": 1})
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if not 0 <= self.decay_frac <= 1:
            raise ValueError(f"decay_frac must be in [0, 1], got {self.decay_frac}")

    @property
    def total_steps(self) -> int:
        return max(1, self.n_tokens // self.batch_size)

    def lr_at(self, step: int) -> float:
        """Learning rate for 0-based ``step``: warm-up, constant, linear decay."""
        scale = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps else 1.0
        decay_steps = int(self.decay_frac * self.total_steps)
        if decay_steps and step >= self.total_steps - decay_steps:
            scale *= max(0.0, (self.total_steps - step) / decay_steps)
        return self.lr * scale


def geometric_median(x: torch.Tensor, iters: int = 100, tol: float = 1e-6) -> torch.Tensor:
    """Weiszfeld's algorithm: the point minimising the sum of Euclidean distances to the rows of ``x``."""
    y = x.mean(0)
    for _ in range(iters):
        w = 1.0 / (x - y).norm(dim=-1).clamp_min(1e-8)
        y_new = (w[:, None] * x).sum(0) / w.sum()
        if (y_new - y).norm() <= tol * y.norm().clamp_min(1.0):
            return y_new
        y = y_new
    return y


def _hooks(cfg: SAEConfig):
    if cfg.is_transcoder and not cfg.hook_out:
        raise ValueError("SAEConfig.d_out is set (a transcoder) but hook_out is empty: name the hook to predict")
    return [cfg.hook_in, cfg.hook_out] if cfg.is_transcoder else cfg.hook_in


@torch.no_grad()
def init_b_dec(sae: SparseCoder, source, cfg: TrainConfig, device) -> None:
    """Set ``b_dec`` to the geometric median / mean of up to ``cfg.init_rows`` target rows (and, for a
    transcoder, its encoder by ``cfg.transcoder_init`` from the same rows)."""
    centre = sae.cfg.is_transcoder and cfg.transcoder_init != "random"
    if cfg.b_dec_init == "zeros":
        sae.b_dec.zero_()
        if not centre:
            return
    bs = min(cfg.init_rows, 8192)
    batches = source.batches(_hooks(sae.cfg), bs, shuffle=True, seed=cfg.seed + 7919, device=device,
                             dtype=torch.float32)
    tc = sae.cfg.is_transcoder
    xs, ys = zip(*(b if tc else (b, None) for b in islice(batches, math.ceil(cfg.init_rows / bs))))
    x = torch.cat(xs)[: cfg.init_rows]
    data = x if ys[0] is None else torch.cat(ys)[: cfg.init_rows]
    if cfg.b_dec_init != "zeros":
        sae.b_dec.copy_(geometric_median(data) if cfg.b_dec_init == "geometric_median" else data.mean(0))
    if centre:
        _init_transcoder_encoder(sae, x, data, cfg.transcoder_init == "regression")


@torch.no_grad()
def _init_transcoder_encoder(sae: SparseCoder, x: torch.Tensor, y: torch.Tensor, regression: bool) -> None:
    mx, my = x.mean(0), y.mean(0)
    if regression:
        xc, yc = x - mx, y - my
        gram = xc.T @ xc
        gram.diagonal().add_(1e-3 * gram.diagonal().mean().clamp_min(1e-12))  # ridge
        B = torch.linalg.solve(gram, xc.T @ yc)
        sae.W_enc.copy_(B @ sae.W_dec.T)  # [d_in, d_sae]: pre = (predicted y) . W_dec rows
    sae.b_enc.copy_(-(mx @ sae.W_enc))
    if regression:
        rec = sae.decode_code(sae.encode(x[:4096])) - sae.b_dec
        scale = (y[:4096] - my).norm(dim=-1).mean() / rec.norm(dim=-1).mean().clamp_min(1e-12)
        if torch.isfinite(scale) and scale > 0:
            sae.W_enc.mul_(scale)
            sae.b_enc.mul_(scale)


# -- checkpoints ----------------------------------------------------------------------------
STATE_JSON, STATE_TENSORS = "trainer_state.json", "trainer_state.safetensors"


def save_checkpoint(path, sae, opt, since_fired, step, tokens, tcfg: TrainConfig) -> None:
    """Write the SAE (SAELens format) and the trainer state to ``path`` atomically."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        save_sae(sae, tmp)
        names = [n for n, _ in sae.named_parameters()]
        tensors = {f"optim.{names[i]}.{k}": v.detach().cpu().contiguous()
                   for i, st in opt.state_dict()["state"].items() for k, v in st.items()}
        save_file({"since_fired": since_fired.detach().cpu().contiguous(), **tensors}, tmp / STATE_TENSORS)
        meta = {"step": step, "tokens": tokens, "train_config": asdict(tcfg), "sae_config": asdict(sae.cfg),
                "format": "interp-sae-checkpoint-v1"}
        (tmp / STATE_JSON).write_text(json.dumps(meta, indent=2))
    except (OSError, SafetensorError) as e:  # e.g. a full disk: keep the previous checkpoint, free the space
        shutil.rmtree(tmp, ignore_errors=True)
        raise OSError(getattr(e, "errno", None) or errno.EIO,
                      f"could not write the step-{step} checkpoint to {tmp} ({e}); the previous checkpoint "
                      f"{path} is intact: free space and rerun to resume from it") from e
    old = path.with_name(path.name + ".old")
    if path.exists():  # else ``old`` may be the only whole checkpoint (a crash between the renames)
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(path, device=None):
    """Read a checkpoint: ``(sae, state_json, state_tensors)`` (FileNotFoundError naming a missing file)."""
    path = Path(path)
    meta = json.loads((path / STATE_JSON).read_text())
    if meta.get("format") != "interp-sae-checkpoint-v1":
        raise ValueError(f"{path / STATE_JSON} is not an interp SAE checkpoint (format {meta.get('format')!r})")
    sae = load_sae(path, device=device)  # refuses a non-safetensors sae_weights.safetensors itself
    try:
        tensors = load_file(path / STATE_TENSORS, device=str(device or "cpu"))
    except SafetensorError as e:  # e.g. a pickle saved under the .safetensors name: never unpickled
        raise ValueError(f"checkpoint {path}: {STATE_TENSORS} is not a valid safetensors file ({e}); "
                         "interp loads checkpoints only as safetensors, never pickles. Delete the checkpoint "
                         "to start over") from e
    return sae, meta, tensors


# -- the loop -------------------------------------------------------------------------------
def train_sae(source, sae_cfg: SAEConfig, cfg: TrainConfig | None = None,
              sae: SparseCoder | None = None) -> DictionaryTraining:
    """Train a dictionary described by ``sae_cfg`` on rows from ``source`` (a store or a TensorSource).

    Resumes from ``cfg.checkpoint_dir`` when it holds a checkpoint (the configs must match).
    Pass ``sae`` to start from given weights instead of a fresh tied initialisation.
    """
    cfg = cfg or TrainConfig()
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    hooks = _hooks(sae_cfg)
    widths = ((sae_cfg.hook_in, "d_in", sae_cfg.d_in), (sae_cfg.target_hook, "d_out", sae_cfg.out_dim))
    for h, field, width in widths:
        if source.d(h) != width:  # KeyError for a hook the source lacks
            raise ValueError(f"SAEConfig.{field}={width} but {h} rows have width {source.d(h)}")

    ckpt = Path(cfg.checkpoint_dir) / "checkpoint" if cfg.checkpoint_dir else None
    start_step, tokens, state = 0, 0, None
    # a run killed between save_checkpoint's two renames left only checkpoint.old
    found = [p for p in (ckpt, ckpt and ckpt.with_name(ckpt.name + ".old")) if p is not None and p.exists()]
    if found:
        sae, meta, state = load_checkpoint(found[0], device)
        if meta["sae_config"] != asdict(sae_cfg):
            raise ValueError(f"checkpoint {ckpt} was trained with a different SAEConfig; use another "
                             f"checkpoint_dir or the same config. Checkpoint: {meta['sae_config']}")
        for key in ("n_tokens", "batch_size", "lr", "seed", "warmup_steps", "decay_frac"):
            if meta["train_config"][key] != getattr(cfg, key):
                raise ValueError(f"checkpoint {ckpt} has {key}={meta['train_config'][key]}, this run "
                                 f"{getattr(cfg, key)}: resuming would not reproduce the run")
        start_step, tokens = meta["step"], meta["tokens"]
    elif sae is None:
        torch.manual_seed(cfg.seed)
        sae = make(sae_cfg).to(device)
        init_b_dec(sae, source, cfg, device)
        sae.set_decoder_unit_norm()
    sae = sae.to(device).train()

    opt = torch.optim.Adam(sae.parameters(), lr=cfg.lr, eps=cfg.adam_eps)  # betas (0.9, 0.999)
    since_fired = torch.zeros(sae_cfg.d_sae, dtype=torch.long, device=device)
    if state is not None:
        # Adam's state from the optim.<parameter>.<key> tensors (load_state_dict moves it to the device)
        st = {i: {k.rsplit(".", 1)[1]: v for k, v in state.items() if k.rsplit(".", 1)[0] == f"optim.{name}"}
              for i, (name, _) in enumerate(sae.named_parameters())}  # {} for a parameter never stepped
        opt.load_state_dict({"state": st, "param_groups": opt.state_dict()["param_groups"]})
        since_fired = state["since_fired"].to(device)

    total = cfg.total_steps
    stop = total if cfg.max_steps is None else min(total, start_step + cfg.max_steps)
    dist = torch.distributed
    on = dist.is_available() and dist.is_initialized()
    rank, world = (dist.get_rank(), dist.get_world_size()) if on else (0, 1)
    if world > 1:
        for p in sae.parameters():
            dist.broadcast(p.data, src=0)
    epochs = max(1, math.ceil(total * cfg.batch_size / max(1, source.n_rows)))
    batches = source.batches(hooks, cfg.batch_size, shuffle=True, seed=cfg.seed, device=device,
                             dtype=torch.float32, epochs=epochs)
    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=start_step, desc=f"{sae_cfg.arch} {sae_cfg.hook_in}", unit="step",
               disable=not cfg.progress or rank != 0)
    history, recent, step = [], [], start_step
    t0, tokens0 = time.perf_counter(), tokens
    try:
        for batch in islice(batches, start_step, None):  # resume: the order depends on the seed only
            if step >= stop:
                break
            x, y = batch if sae_cfg.is_transcoder else (batch, None)
            n_global = x.shape[0]
            if world > 1:  # this rank's slice of the global batch
                if n_global < world:
                    continue  # an epoch's tail with fewer rows than ranks (every rank skips it)
                x, y = (t if t is None else t.tensor_split(world)[rank] for t in (x, y))
            if not (torch.isfinite(x).all() and (y is None or torch.isfinite(y).all())):
                raise ValueError(f"training rows at step {step} contain NaN or inf ({sae_cfg.hook_in}"
                                 f"{' -> ' + sae_cfg.target_hook if y is not None else ''}); the source holds "
                                 "non-finite activations, so the dictionary would be ruined. Re-cache them "
                                 "(fp16 overflows above 65504: use bf16 or fp32) or filter the rows")
            dead = since_fired >= cfg.dead_after_tokens
            opt.param_groups[0]["lr"] = cfg.lr_at(step)  # Adam over sae.parameters(): one group
            with data_parallel_normaliser(world > 1):  # TopK: normalise by the global batch's variance
                out = sae.loss(x, y, dead_mask=dead)
            opt.zero_grad(set_to_none=True)
            (out.loss * (x.shape[0] / n_global)).backward()  # this rank's share (exactly 1 on one process)
            if world > 1:  # sum the gradients over ranks with one all-reduce of a flat buffer
                grads = [p.grad for p in sae.parameters() if p.grad is not None]
                flat = torch.cat([g.reshape(-1) for g in grads])
                dist.all_reduce(flat)
                for g, part in zip(grads, flat.split([g.numel() for g in grads])):
                    g.copy_(part.view_as(g))
            sae.remove_parallel_decoder_grad()
            opt.step()
            sae.set_decoder_unit_norm()
            fired = (out.acts > 0).any(0).to(torch.int32)  # a comparison: no autograd graph
            if world > 1:  # fired on any rank
                dist.all_reduce(fired, op=dist.ReduceOp.MAX)
            since_fired += n_global
            since_fired[fired.bool()] = 0
            step += 1
            tokens += n_global
            recent.append((float(out.fvu), float(out.l0)))
            if step % cfg.log_every == 0 or step == stop:
                fv, l0 = torch.tensor(recent, dtype=torch.float64).mean(0).tolist()
                dead_frac = float((since_fired >= cfg.dead_after_tokens).float().mean())
                history.append({"step": step, "tokens": tokens, "lr": cfg.lr_at(step - 1), "fvu": fv, "l0": l0,
                                "dead_fraction": dead_frac, **{k: float(v) for k, v in out.losses.items()}})
                recent = []
                bar.set_postfix(L0=f"{l0:.1f}", FVU=f"{fv:.3f}", dead=f"{dead_frac:.2f}")
            bar.update(1)
            if ckpt is not None and cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and rank == 0:
                save_checkpoint(ckpt, sae, opt, since_fired, step, tokens, cfg)
    except KeyboardInterrupt:
        if ckpt is not None and rank == 0:
            save_checkpoint(ckpt, sae, opt, since_fired, step, tokens, cfg)
        raise
    finally:
        bar.close()
    if ckpt is not None and rank == 0:
        save_checkpoint(ckpt, sae, opt, since_fired, step, tokens, cfg)
    if world > 1:
        dist.barrier()  # the final checkpoint exists before any rank returns
    seconds = time.perf_counter() - t0
    last = history[-1] if history else {"fvu": float("nan"), "l0": float("nan")}
    dead_frac = float((since_fired >= cfg.dead_after_tokens).float().mean())
    res = DictionaryTraining(
        sae_config=encode(sae_cfg), train_config=encode(cfg), steps=step, total_steps=total, tokens=tokens,
        seconds=seconds, tokens_per_s=(tokens - tokens0) / max(seconds, 1e-9), fvu=last["fvu"], l0=last["l0"],
        dead_fraction=dead_frac, history=history, meta={"versions": versions()}, complete=step >= total)
    res.sae = sae.eval()
    return res

