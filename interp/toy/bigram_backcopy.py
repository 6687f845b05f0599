"""The Bigram-Backcopy (BB) task and a tiny GPT-2 (or Llama) trained on it, with checkpoints.

Guo et al. 2024 ("Active-Dormant Attention Heads", arXiv 2410.13835, ``BBM/data.py: bbm``;
docs/methods.md, Bigram-Backcopy toy).  Vocabulary: the characters of a Shakespeare passage (public domain, below),
plus ⟨s⟩ (first token) and ⟨d⟩ (delimiter, unused by the generator).  A bigram transition
table P(b|a) and the marginal are counted from the passage (wrapping around, so every row is a
distribution); the *triggers* are the top-k characters by marginal probability.  A sequence is

    x₀ = ⟨s⟩;  x₁ ~ marginal restricted to non-triggers;  x₂ ~ P(·|x₁);
    x_{t+1} = x_{t-1}        if x_t is a trigger   (backcopy)
    x_{t+1} ~ P(·|x_t)       otherwise             (bigram)

so the best predictor copies the previous token after a trigger (loss 0) and uses the bigram
elsewhere (loss = the bigram's conditional entropy).  A one-layer, one-head model solves the
copy with attention to the previous token at triggers; elsewhere the head has nothing to do and
becomes *dormant*: it attends to ⟨s⟩, whose value is drained to ~0, while ‖h(⟨s⟩)‖ grows
(residual peak).

:func:`train_bb` trains a Hugging Face GPT-2 (pre-LayerNorm, learned absolute positions, one
head per layer, ReLU MLP of width 4 x d_model: the paper's model, ``BBM`` ``Transformer``, up to
the biases GPT-2 keeps and trains from 0) or a Llama (RoPE, RMSNorm) with AdamW on freshly
sampled batches.  ``init="paper"`` reproduces the paper's PyTorch-default initialisation
(embeddings N(0, 1), linear weights U(±1/sqrt(fan_in))) instead of Hugging Face's N(0, 0.02).
Checkpoints (safetensors + config + a character tokenizer) go to ``out/step_<N>``, plus
``bb_task.json`` describing the task, so that ``interp.models.load_model(out/step_<N>)`` returns
a TransformerBridge and every analysis of :mod:`interp.phenomena` (and ``interp massive
--checkpoints``) runs on it unchanged.  :func:`bb_mechanism` measures the mechanism on trigger vs
non-trigger positions, with a causal check (attention moved to ⟨s⟩ at all positions, batched
with the clean run).

:func:`bb_experiment` trains and measures every checkpoint and returns a :class:`BBResult`
(kind ``bigram_backcopy``; what ``interp bigram-backcopy`` writes), whose report follows the
mechanism over training.

Paper scale: 1-3 layers, dim 256, Adam(W) 3e-4, betas (0.9, 0.99), wd 1e-4, batch 512 x 256
tokens, 10k steps.  Default here: 3 layers, dim 64, the paper's init, ReLU, betas and wd, lr 1e-2
after 200 linear warm-up steps, 2000 steps of 32 x 32 tokens: the sink and the value drain form
at every seed tried, the residual peak at ⟨s⟩ is seed-dependent and far below LLM-scale massive
activations (measured numbers per seed, and the settings that did not work, in
``bench/results/bb_*.json`` and docs/methods.md, Bigram-Backcopy toy).  Design choice: Hugging Face checkpoints, so
the toy needs no model code of its own.

Cost: training is O(steps x batch x seq_len) forward + backward passes of a < 1 MB model;
:func:`bb_mechanism` is one forward pass of (1 + n_layers) x n_seqs sequences plus one of
:func:`interp.phenomena.sinks.sink_stats`.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from interp.models import scoped_hooks
from interp.models.hooks import head_label
from interp.models.tiny import TinyConfig, char_tokenizer
from interp.phenomena.dormant import DormantConfig, label_head
from interp.phenomena.sinks import sink_stats
from interp.reports import Report
from interp.results import Result, check_fields, register, versions

SHAKESPEARE = (Path(__file__).parent / "shakespeare.txt").read_text(encoding="utf-8")
"""The default training text: five public-domain Shakespeare passages (data, kept beside this module)."""

BOS, DELIM = "<s>", "<d>"


@dataclass(frozen=True)
class BBTask:
    """The Bigram-Backcopy data distribution."""

    n_triggers: int = 3
    """Triggers: the top-k characters by marginal probability (k = 3 or 5 in the paper)."""
    seq_len: int = 32
    """Tokens per sequence, ⟨s⟩ included (paper: 256)."""
    text: str = SHAKESPEARE
    """Text the bigram table and marginal are counted from."""

    def __post_init__(self):
        check_fields(self, at_least={"seq_len": 4})
        n_chars = len(set(self.text))
        if not 1 <= self.n_triggers < n_chars - 1:
            raise ValueError(f"n_triggers must be in [1, {n_chars - 2}] for this text, got {self.n_triggers}")

    @property
    def chars(self) -> list[str]:
        return sorted(set(self.text))

    @property
    def vocab(self) -> list[str]:
        """Characters, then ⟨s⟩, then ⟨d⟩ (ids = positions)."""
        return self.chars + [BOS, DELIM]

    @property
    def bos_id(self) -> int:
        return len(self.chars)

    def tables(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(marginal [C], bigram P [C, C] with rows P(·|a), trigger ids [k])."""
        C = len(self.chars)
        ids = torch.tensor([self.chars.index(c) for c in self.text])
        counts = torch.zeros(C, C).index_put_((ids, ids.roll(-1)), torch.ones(len(ids)), accumulate=True)
        marginal = torch.bincount(ids, minlength=C).float() / len(ids)
        bigram = counts / counts.sum(1, keepdim=True)
        triggers = marginal.argsort(descending=True)[: self.n_triggers]
        return marginal, bigram, triggers

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``[n, seq_len]`` LongTensor of BB sequences (vectorised over the batch)."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        marginal, bigram, triggers = self.tables()
        is_trig = torch.isin(torch.arange(len(marginal)), triggers)
        x = torch.empty(n, self.seq_len, dtype=torch.long)
        x[:, 0] = self.bos_id
        m = marginal.masked_fill(is_trig, 0)
        x[:, 1] = torch.multinomial(m / m.sum(), n, replacement=True, generator=generator)
        for t in range(1, self.seq_len - 1):  # x₁ is no trigger, so x₂ is always a bigram step
            nxt = torch.multinomial(bigram[x[:, t]], 1, generator=generator).squeeze(1)
            x[:, t + 1] = torch.where(is_trig[x[:, t]], x[:, t - 1], nxt)
        return x

    def trigger_mask(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T] bool: x_t is a trigger and t >= 2 (positions whose next token is a backcopy)."""
        _, _, triggers = self.tables()
        m = torch.isin(x, triggers)
        m[:, :2] = False
        return m

    def bigram_entropy(self) -> float:
        """Mean conditional entropy (nats) of the bigram step, weighted by the marginal over non-triggers."""
        marginal, bigram, triggers = self.tables()
        h = torch.special.entr(bigram).sum(1)  # -sum_b P(b|a) ln P(b|a), 0 ln 0 = 0
        w = marginal.index_fill(0, triggers, 0)
        return float((w * h).sum() / w.sum())


def bb_tokenizer(task: BBTask):
    """A character-level fast tokenizer over the task vocabulary that prepends ⟨s⟩."""
    return char_tokenizer(task.vocab, "interp-bb-char", bos_token=BOS, unk_token=DELIM, pad_token=DELIM)


def log_spaced_steps(steps: int) -> tuple[int, ...]:
    """Step 0 and about 16 log-spaced steps from 10 to ``steps`` (dense early, where sinks form)."""
    if steps < 10:
        return tuple(range(steps + 1))
    return (0,) + tuple(sorted({int(round(x / 10.0)) * 10 for x in np.geomspace(10, steps, 16)} | {steps}))


@dataclass(frozen=True)
class BBTrainConfig:
    """Model and optimisation of the BB toy run."""

    arch: str = "gpt2"
    """``gpt2`` (learned absolute positions, pre-LayerNorm, as the paper's model) or ``llama`` (RoPE, RMSNorm)."""
    n_layers: int = 3
    """Transformer blocks (paper: 1 or 3)."""
    d_model: int = 64
    """Residual width (paper: 256)."""
    d_mlp: int = 256
    """MLP hidden width (paper: 4 x d_model)."""
    activation: str = "relu"
    """MLP nonlinearity of the ``gpt2`` arch (``relu`` in the paper; Llama always uses SwiGLU)."""
    init: str = "paper"
    """``hf``: Hugging Face init (every weight N(0, 0.02)); ``paper``: PyTorch-default init as the
    paper's model (embeddings N(0, 1), linear weights U(±1/sqrt(fan_in)), biases 0)."""
    steps: int = 2000
    """Optimisation steps (paper: 10k)."""
    batch_size: int = 32
    """Sequences per step (paper: 512)."""
    lr: float = 1e-2
    """Peak AdamW learning rate (paper: 3e-4 for 10k steps of 512 x 256 tokens)."""
    betas: tuple[float, float] = (0.9, 0.99)
    """AdamW betas (paper: (0.9, 0.99))."""
    warmup: int = 200
    """Linear learning-rate warm-up steps (then constant; paper: none)."""
    weight_decay: float = 1e-4
    """AdamW weight decay (paper: 1e-4)."""
    seed: int = 0
    """Seed for initialisation and data."""
    checkpoint_steps: tuple[int, ...] | None = None
    """Steps after which a checkpoint is written (those <= ``steps``; the last step is always saved);
    ``None``: :func:`log_spaced_steps` (0 and ~16 log-spaced steps)."""

    def __post_init__(self):
        check_fields(self, {"arch": ("gpt2", "llama"), "init": ("hf", "paper"), "activation": ("gelu_new", "gelu", "relu")},
                     {**dict.fromkeys(("n_layers", "d_model", "d_mlp", "steps", "batch_size"), 1), "warmup": 0,
                      "weight_decay": 0})
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas}")


def lr_at(cfg: BBTrainConfig, step: int) -> float:
    """Learning rate at optimisation step ``step`` (1-based): linear warm-up, then constant."""
    return cfg.lr * min(1.0, step / cfg.warmup) if cfg.warmup else cfg.lr


@torch.no_grad()
def _paper_init(model) -> None:
    """PyTorch-default init, as the paper's hand-written model: embeddings N(0, 1), linear weights
    U(±1/sqrt(fan_in)) (``nn.Linear``'s kaiming-uniform with a = sqrt 5), biases 0, norms (1, 0)."""
    from transformers.pytorch_utils import Conv1D

    for m in model.modules():
        if isinstance(m, torch.nn.Embedding):
            m.weight.normal_(0.0, 1.0)
        elif isinstance(m, (torch.nn.Linear, Conv1D)):
            fan_in = m.weight.shape[0] if isinstance(m, Conv1D) else m.weight.shape[1]
            m.weight.uniform_(-1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))
            if getattr(m, "bias", None) is not None:
                m.bias.zero_()


def bb_model(task: BBTask, cfg: BBTrainConfig):
    """A fresh Hugging Face GPT-2 or Llama with one attention head per layer, for the BB vocabulary."""
    from transformers import AutoModelForCausalLM

    hf = TinyConfig(arch=cfg.arch, n_layers=cfg.n_layers, d_model=cfg.d_model, n_heads=1, d_mlp=cfg.d_mlp,
                    n_ctx=task.seq_len).hf_config(len(task.vocab))
    hf.update(dict(bos_token_id=task.bos_id, eos_token_id=task.bos_id + 1, pad_token_id=task.bos_id + 1,
                   tie_word_embeddings=False))
    if cfg.arch == "gpt2":
        hf.activation_function = cfg.activation
    torch.manual_seed(cfg.seed)
    model = AutoModelForCausalLM.from_config(hf, attn_implementation="eager")
    if cfg.init == "paper":
        _paper_init(model)
    return model


def bb_training(task: BBTask, cfg: BBTrainConfig, device="cpu"):
    """Train a fresh :func:`bb_model` with AdamW (the config's lr schedule, betas and weight decay, as the paper's
    ``train_main.py``) on freshly sampled batches, yielding ``(step, model, loss)``: step 0 (the fresh model, loss
    ``None``), then after each optimisation step.  :func:`train_bb` checkpoints it; bench/run_bb_sweep.py measures it."""
    model = bb_model(task, cfg).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), betas=tuple(cfg.betas), eps=1e-8, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    yield 0, model, None
    for step in range(1, cfg.steps + 1):
        for g in opt.param_groups:
            g["lr"] = lr_at(cfg, step)
        x = task.sample(cfg.batch_size, gen).to(device)
        logits = model(x).logits
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        yield step, model, loss.item()


def train_bb(out: str | Path, task: BBTask | None = None, cfg: BBTrainConfig | None = None,
             device: str | None = None) -> "BBResult":
    """Train the BB toy model (:func:`bb_training`), saving Hugging Face checkpoints under ``out/step_<N>``; the
    result's ``mechanism`` is empty (:func:`bb_experiment` measures it)."""
    from transformers.utils import logging as hf_logging

    task, cfg = task or BBTask(), cfg or BBTrainConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    (out / "bb_task.json").write_text(json.dumps({"kind": "bigram_backcopy", "task": asdict(task),
                                                  "train": asdict(cfg)}, indent=1))
    tok = bb_tokenizer(task)
    wanted = cfg.checkpoint_steps if cfg.checkpoint_steps is not None else log_spaced_steps(cfg.steps)
    ckpts = sorted({s for s in wanted if 0 <= s <= cfg.steps} | {cfg.steps})  # each one is saved below
    losses = []
    hf_logging.disable_progress_bar()
    t0 = time.time()
    for step, model, loss in bb_training(task, cfg, device):
        if step:
            losses.append(loss)
        if step in ckpts:
            for obj in (model, tok):
                obj.save_pretrained(out / f"step_{step:06d}")
    return BBResult(out=str(out), task={k: v for k, v in asdict(task).items() if k != "text"}, train=cfg, steps=ckpts,
                    losses=losses, seconds=time.time() - t0,
                    meta={"model": "bigram-backcopy", "device": str(device), "versions": versions()})


def load_task(directory: str | Path) -> BBTask | None:
    """The :class:`BBTask` of a folder written by :func:`train_bb` (or its parent), else ``None``."""
    for d in (Path(directory), Path(directory).parent):
        f = d / "bb_task.json"
        if f.exists():
            meta = json.loads(f.read_text())
            if meta.get("kind") == "bigram_backcopy":
                return BBTask(**meta["task"])
    return None


@dataclass
class BBMechanism:
    """The active-dormant mechanism of one BB model, measured per layer (one head each)."""

    attn_prev_at_trigger: list[float]
    """[L] mean attention to the previous token at trigger positions (active: backcopy)."""
    attn_bos_at_trigger: list[float]
    """[L] mean attention to ⟨s⟩ at trigger positions."""
    attn_bos_at_other: list[float]
    """[L] mean attention to ⟨s⟩ at non-trigger positions (dormant: sink)."""
    loss_trigger: float
    """Mean loss predicting the token after a trigger (optimum 0)."""
    loss_other: float
    """Mean loss elsewhere (optimum: the bigram entropy)."""
    bigram_entropy: float
    """The optimum of ``loss_other``."""
    ablation_delta_trigger: list[float]
    """[L] loss change at triggers when the layer's head attends only to ⟨s⟩."""
    ablation_delta_other: list[float]
    """[L] loss change elsewhere under the same ablation (≈ 0 for a dormant head)."""
    value_drain: list[float]
    """[L] ‖v(⟨s⟩)‖ / mean_{i>=1} ‖v(i)‖."""
    resid_peak: list[float]
    """[L] ‖h(⟨s⟩)‖ / max_{i>=1} ‖h(i)‖ (``blocks.ℓ.hook_resid_post``)."""
    resid_norm_sink: list[float]
    """[L] ‖h(⟨s⟩)‖."""
    resid_norm_rest_mean: list[float]
    """[L] mean_{i>=1} ‖h(i)‖ (so ``resid_norm_sink / resid_norm_rest_mean`` > 1: ⟨s⟩ carries the largest state)."""


@torch.no_grad()
def bb_mechanism(model, task: BBTask, n_seqs: int = 64) -> BBMechanism:
    """Measure backcopy/sink attention, losses, the batched ⟨s⟩ ablation, value drain and residual peak on
    ``n_seqs`` sequences drawn with seed 1."""
    device = next(model.parameters()).device
    x = task.sample(n_seqs, torch.Generator().manual_seed(1))
    trig_full = task.trigger_mask(x)  # [B, T]
    trig = trig_full[:, :-1]  # loss masks: predicting x_{t+1} from position t
    other = ~trig
    other[:, 0] = False  # x₁ comes from the marginal, not a bigram
    L, B = int(model.cfg.n_layers), n_seqs
    # variants: clean, then one copy per layer with that layer's head moved to ⟨s⟩
    pats = {}

    def record(layer):
        def fn(a, hook):  # [(1+L)B, 1, T, T]
            pats[layer] = a[:B, 0].float().cpu()
            a = a.clone()
            # the layer's copy: every query attends to ⟨s⟩ only
            a[(1 + layer) * B:(2 + layer) * B] = (torch.arange(a.shape[-1]) == 0).to(a)
            return a
        return fn

    with scoped_hooks(model, fwd=[(f"blocks.{l}.attn.hook_pattern", record(l)) for l in range(L)]):
        logits = model(x.repeat(1 + L, 1).to(device))[:, :-1].float().cpu()
    nll = F.cross_entropy(logits.transpose(1, 2), x.repeat(1 + L, 1)[:, 1:], reduction="none")
    lt, lo = (nll.view(1 + L, B, -1)[:, m].mean(1) for m in (trig, other))  # [1 + L]: clean, then ablated
    pat = torch.stack([pats[l] for l in range(L)])  # [L, B, T, T]
    prev, bos = pat.diagonal(-1, -2, -1), pat[..., 1:, 0]  # [L, B, T-1]: attention q -> q-1 and q -> 0
    t_mask = trig_full[:, 1:]  # attention mask over queries 1..T-1
    st = sink_stats(model, x.to(device), batch_size=B)
    return BBMechanism(
        attn_prev_at_trigger=prev[:, t_mask].mean(1).tolist(),
        attn_bos_at_trigger=bos[:, t_mask].mean(1).tolist(),
        attn_bos_at_other=bos[:, ~t_mask].mean(1).tolist(),
        loss_trigger=float(lt[0]), loss_other=float(lo[0]), bigram_entropy=task.bigram_entropy(),
        ablation_delta_trigger=(lt[1:] - lt[0]).tolist(), ablation_delta_other=(lo[1:] - lo[0]).tolist(),
        value_drain=st.value_drain[:, 0].tolist(), resid_peak=st.resid_peak.tolist(),
        resid_norm_sink=st.resid_norm_sink.tolist(), resid_norm_rest_mean=st.resid_norm_rest_mean.tolist())


@register
@dataclass
class BBResult(Result):
    """A Bigram-Backcopy training run and its mechanism measured at every checkpoint (``interp bigram-backcopy``)."""

    kind: ClassVar[str] = "bigram_backcopy"
    axes: ClassVar[dict[str, str]] = {
        "losses#0": "training step", "losses": "training loss (nats/token)", "steps": "training step",
        "mechanism[step].attn_bos_at_other": "attention to ⟨s⟩ off-trigger",
        "mechanism[step].attn_prev_at_trigger": "attention to the previous token at triggers",
        "mechanism[step].value_drain": "value drain", "mechanism[step].resid_peak": "residual ‖h(⟨s⟩)‖ / max other"}

    out: str
    """Folder holding the ``step_<N>`` checkpoints and ``bb_task.json``."""
    task: dict
    """The :class:`BBTask` settings (its text left out)."""
    train: BBTrainConfig
    """Model and optimisation settings."""
    steps: list[int]
    """Checkpointed steps."""
    losses: list[float]
    """Training loss per optimisation step (step 1 first)."""
    mechanism: list[BBMechanism] = field(default_factory=list)
    """:func:`bb_mechanism` at each checkpoint (aligned with ``steps``; empty straight from :func:`train_bb`)."""
    seconds: float = 0.0
    """Wall-clock training time (its report states the throughput, forward + backward tokens per second)."""
    meta: dict = field(default_factory=dict)
    """Provenance: ``device``, ``versions``."""

    def summary(self) -> str:
        m = self.mechanism[-1]
        c = int(np.argmax(m.ablation_delta_trigger))  # the copy head's layer: its ⟨s⟩ ablation costs most at triggers
        d = DormantConfig()
        delta = m.ablation_delta_other[c]
        state = (f"{label_head(m.attn_bos_at_other[c], delta, delta, d.sink_threshold, d.loss_threshold)} "
                 f"off-trigger by the sinks criteria (dormant: attention to ⟨s⟩ >= {d.sink_threshold:g}, "
                 f"|Δloss| < {d.loss_threshold:g})")
        peak = ", ".join(f"{a / b:.2f}" for a, b in zip(m.resid_norm_sink, m.resid_norm_rest_mean))
        return (f"After {self.train.steps} steps (loss {m.loss_trigger:.3f} nats after triggers, optimum 0; "
                f"{m.loss_other:.3f} elsewhere, optimum {m.bigram_entropy:.3f}), **the copy head {head_label(c, 0)} puts "
                f"{m.attn_prev_at_trigger[c]:.2f} of its attention on the previous token at triggers and "
                f"{m.attn_bos_at_other[c]:.2f} on ⟨s⟩ elsewhere**; moving all its attention to ⟨s⟩ changes the loss by "
                f"{m.ablation_delta_trigger[c]:+.3f} nats at triggers and {m.ablation_delta_other[c]:+.4f} elsewhere: "
                f"{state}. Its "
                f"value at ⟨s⟩ is {m.value_drain[c]:.2f}x the other tokens' (value drain); ‖h(⟨s⟩)‖ / mean other "
                f"token per layer: {peak}.")

    def report(self):
        L = self.train.n_layers
        title = f"Bigram-Backcopy toy model ({L} layer{'s' if L != 1 else ''}, {self.train.steps} steps)"
        n_tokens = self.train.steps * self.train.batch_size * self.task["seq_len"]
        r = Report.of(self, title, {**asdict(self.train), **self.task}, seconds=round(self.seconds, 1),
                      tokens_per_second=round(n_tokens / max(self.seconds, 1e-9)))
        for field_name, title, caption in (
                ("attn_bos_at_other", "Attention to ⟨s⟩ at non-trigger positions (dormant)", ""),
                ("attn_prev_at_trigger", "Attention to the previous token at triggers (active)", ""),
                ("value_drain", "Value drain ‖v(⟨s⟩)‖ / mean ‖v(i>=1)‖", ""),
                ("resid_peak", "Residual peak at ⟨s⟩", "‖h(⟨s⟩)‖ / max_{i>=1} ‖h(i)‖ after each layer "
                 "(blocks.ℓ.hook_resid_post): above 1, ⟨s⟩ carries the largest residual state.")):
            r.add_line(title, self.steps, {f"layer {j}": [getattr(m, field_name)[j] for m in self.mechanism]
                                           for j in range(L)}, x_title="training step",
                       y_title=self.axes[f"mechanism[step].{field_name}"],
                       fields=("steps", f"mechanism[step].{field_name}"), caption=caption)
        r.add_line("Training loss", list(range(1, len(self.losses) + 1)), {"loss": self.losses},
                   x_title="training step", y_title="training loss (nats/token)", fields=("losses#0", "losses"))
        cols = {"attn_prev_at_trigger": "attention to previous, triggers", "attn_bos_at_trigger":
                "attention to ⟨s⟩, triggers", "attn_bos_at_other": "attention to ⟨s⟩, elsewhere",
                "ablation_delta_trigger": "Δloss ⟨s⟩-only, triggers", "ablation_delta_other":
                "Δloss ⟨s⟩-only, elsewhere", "value_drain": "value drain", "resid_peak": "residual peak"}
        r.add_table("Mechanism per checkpoint and layer",
                    [{"step": s, "layer": f"L{j}", **{name: round(getattr(m, k)[j], 4) for k, name in cols.items()},
                      "loss, triggers": round(m.loss_trigger, 4), "loss, elsewhere": round(m.loss_other, 4)}
                     for s, m in zip(self.steps, self.mechanism) for j in range(L)],
                    caption="Each layer's head at each checkpoint: attention shares (mean over positions), the loss "
                            "change (nats/token) when that head attends only to ⟨s⟩, value drain and residual peak as "
                            "in the figures; the losses are the model's (optimum after triggers 0, elsewhere the "
                            f"bigram entropy {self.mechanism[-1].bigram_entropy:.3f}).")
        r.add_section("Method", "Guo et al. 2024's Bigram-Backcopy task: after a trigger the next token copies the "
                                "previous one, elsewhere it follows a bigram table. Attention, losses and the ⟨s⟩ ablation "
                                f"are measured on 64 held-out sequences per checkpoint; checkpoints in {self.out}.")
        return r


def bb_experiment(out: str | Path, task: BBTask | None = None, cfg: BBTrainConfig | None = None,
                  device: str | None = None) -> BBResult:
    """Train (:func:`train_bb`) and measure :func:`bb_mechanism` at every checkpoint (``interp bigram-backcopy``)."""
    from interp.models import load_model

    task = task or BBTask()
    res = train_bb(out, task, cfg, device=device)
    res.mechanism = [bb_mechanism(load_model(str(Path(out) / f"step_{s:06d}"), device=device), task) for s in res.steps]
    return res
