"""Discrete-SAE circuit identification: which heads carry a task, from the codes of one tiny SAE.

After O'Neill & Bui 2024, "Sparse autoencoders enable scalable and reliable circuit
identification in language models" (arXiv 2405.12522; reference ``charlieoneill11/sae-circuits``
@10fd2e7, ``src/{sae,train,node,edge,main}.py``; docs/methods.md, Discrete-SAE circuits).

Algorithm
1. **Representations.** Run the positive prompts (the task's clean prompts, which the model
   solves) and the negative prompts (the corrupted ones: IOI's ABC, greater-than's "01") and
   take every head's output written into the residual stream, ``z[b, t, h] @ W_O[l, h]``,
   averaged over token positions: ``[n, L*H, d_model]`` (TransformerLens ``stack_head_results``
   then a mean over positions, as the reference).  ``z`` is per query head, so GQA needs no
   special care.
2. **SAE.** One small SAE shared by all heads (each head's vector is one row): tied pre-encoder /
   post-decoder bias, encoder and decoder directions of unit norm, ReLU, ``n_latents`` (200)
   latents; loss = element-mean MSE + ``l1`` (0.02) x mean_rows ||f||_1; Adam (1e-3),
   ``epochs`` (500) full-batch steps on ``n_train`` (10) prompts drawn at random from the
   positives and negatives together.
3. **Codes.** ``code[e, head] = argmax_j f_j`` for every prompt, positive and negative.
4. **Node score.** ``|set(positive codes of head) - set(negative codes of head)|``; softmax over
   all heads.
5. **Edge score.** For each ordered pair of different heads, the code pairs (c1, c2) that
   co-occur in some positive prompt and in no negative prompt are counted.  Pairs of heads are
   ranked by that count, the head pairs are unrolled into a list (h1, h2, h1', h2', ...), each
   head's number of appearances among the first ``edge_k`` entries (the reference's
   ``n_heads_per_layer**2 // 2``) is its edge score; softmax over heads.
6. **Evaluation** (:func:`evaluate_scores`): ROC-AUC and best F1 against a set of ground-truth
   heads; :func:`ground_truth_heads` takes them from activation patching as the fewest heads
   whose |effect| adds up to a stated share of the total |effect|.

Differences from the reference code, all deliberate: the decoder is normalised per latent
(dictionary vector); the reference's ``ConstrainedUnitNormLinear`` on the decoder weight
``[d_in, n_latents]`` normalises over its last axis, i.e. per input dimension, although its
docstring says it normalises the dictionary vectors.  The encoder is normalised per latent as in the
reference.  The SAE is not :func:`interp.dictionaries.train_sae`: this objective (element-mean
MSE, unit-norm *encoder*, full batch, no warm-up) is the paper's and is one short function here
(:func:`train_code_sae`).

Cost: 2 forward passes of ``n`` prompts (no gradients) + ``epochs`` full-batch SAE steps on
``n_train * L * H`` rows (SmolLM2: 10 x 270 rows x 576 -> 200) + counting.
Memory: the representations, ``2 n L H d_model`` floats (SmolLM2, n=32: 40 MB), and the edge
count's code-pair ids, ``n (L H)^2`` int64 (n=32: 19 MB).
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from typing import Callable, ClassVar

import torch
from torch import nn

from interp.config import takes_config
from interp.models.hooks import head_label
from interp.results import Result, check_fields, register, versions



@dataclass(frozen=True)
class SAECircuitConfig:
    """Settings of :func:`sae_circuit` (defaults: the reference's ``main_results.py``)."""

    n_latents: int = 200
    """Latents of the shared SAE (the reference's ``num_unique``)."""
    l1_coeff: float = 0.02
    """Weight of the mean-over-rows L1 norm of the codes (0.02 for IOI and greater-than)."""
    lr: float = 1e-3
    """Adam learning rate."""
    epochs: int = 500
    """Full-batch training steps."""
    n_train: int = 10
    """Prompts (positives and negatives pooled, drawn at random) the SAE is trained on."""
    edge_k: int | None = None
    """Unrolled head-pair entries that vote in the edge score; None: ``n_heads_per_layer**2 // 2``."""
    seed: int = 0
    """Seed of the SAE initialisation and of the training-prompt draw."""
    batch_size: int = 32
    """Prompts per forward pass when collecting head outputs."""

    def __post_init__(self):
        check_fields(self, at_least={"n_latents": 2, "epochs": 1, "n_train": 1, "batch_size": 1, "edge_k": 1,
                                     "l1_coeff": 0})
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")


@register
@dataclass
class SAECircuitResult(Result):
    """Node and edge scores of every head, what produced them, and (optionally) their check against
    activation patching."""

    kind: ClassVar[str] = "sae_circuit"
    axes: ClassVar[dict[str, str]] = {"unique_codes#0": "layer", "unique_codes#1": "head",
                                      "edge_votes#0": "layer", "edge_votes#1": "head",
                                      "patching#0": "layer", "patching#1": "head"}

    node_scores: torch.Tensor
    """``[L, H]``: softmax over heads of ``unique_codes``."""
    unique_codes: torch.Tensor
    """``[L, H]``: number of codes of the head seen on positive prompts and never on negative ones."""
    edge_scores: torch.Tensor
    """``[L, H]``: softmax over heads of ``edge_votes``."""
    edge_votes: torch.Tensor
    """``[L, H]``: appearances of the head among the top ``edge_k`` unrolled head-pair entries."""
    codes_pos: torch.Tensor
    """``[n, L*H]`` int: argmax latent of each head on each positive prompt."""
    codes_neg: torch.Tensor
    """``[n, L*H]`` int: the same on the negative prompts (:func:`edge_counts` of the two: the code pairs
    behind ``edge_votes``)."""
    seconds: dict
    """Wall time of each stage (``representations``, ``train``, ``score``, ``patching``) and ``total``."""
    sae_loss: float
    """Training loss at the last step."""
    config: dict = field(default_factory=dict)
    task: str = ""
    model: str = ""
    patching: torch.Tensor | None = None
    """``[L, H]``: activation patching effect of each head (the ground truth), when run."""
    evaluation: dict = field(default_factory=dict)
    """Share of total |patching effect| -> ``n_truth`` (heads carrying it) and ``node`` / ``edge``
    (:func:`evaluate_scores`: ``roc_auc``, ``best_f1``) of the scores against those heads."""
    versions: dict = field(default_factory=dict)

    def top_heads(self, k: int = 10) -> list[dict]:
        """The ``k`` heads with the most unique codes: ``head`` (``L3H2``), ``unique_codes``, ``edge_votes``."""
        H = self.unique_codes.shape[1]
        order = self.unique_codes.flatten().argsort(descending=True, stable=True)[:k].tolist()
        return [{"head": head_label(i // H, i % H), "unique_codes": int(self.unique_codes.flatten()[i]),
                 "edge_votes": int(self.edge_votes.flatten()[i])} for i in order]

    def summary(self) -> str:
        top = ", ".join(f"{t['head']} ({t['unique_codes']})" for t in self.top_heads(5) if t["unique_codes"])
        text = (f"Heads with the most codes unique to the positive prompts: **{top}**" if top else
                "**No head has a code unique to the positive prompts**")
        text += (f"; {self.config.get('n_pos')} positive and {self.config.get('n_neg')} negative {self.task} prompts "
                 f"on {self.model}, one {self.config.get('n_latents')}-latent SAE over every head's output.")
        for share, ev in self.evaluation.items():
            text += (f" Against the {ev['n_truth']} heads carrying {float(share):.0%} of the total |patching effect|: "
                     f"node ROC-AUC {ev['node']['roc_auc']:.3f} (best F1 {ev['node']['best_f1']:.3f}), edge ROC-AUC "
                     f"{ev['edge']['roc_auc']:.3f} (best F1 {ev['edge']['best_f1']:.3f}).")
        return text

    def report(self):
        from interp.reports import Report

        r = Report.of(self, f"Discrete-SAE circuit: {self.task} on {self.model}", timings=self.seconds)
        maps = [("unique_codes", "Unique codes per head", "codes of the head seen on positive prompts and never on "
                 "negative ones (the node score before its softmax)"),
                ("edge_votes", "Edge votes per head", "appearances of the head among the top head pairs by code pairs "
                 "unique to positive prompts (the edge score before its softmax)")]
        if self.patching is not None:
            maps.append(("patching", "Activation patching per head", "the metric change when the head is patched "
                         "with its corrupted activation (the ground truth)"))
        for name, title, what in maps:
            r.add_layer_heads(title, getattr(self, name), name, caption=f"Each cell: {what}.")
        if self.evaluation:
            r.add_table("Scores against activation patching", [
                {"share of |effect|": s, "truth heads": ev["n_truth"],
                 **{f"{w} {name}": ev[w][k] for w in ("node", "edge") for k, name in
                    (("roc_auc", "ROC-AUC"), ("best_f1", "best F1"))}}
                for s, ev in self.evaluation.items()],
                caption="Truth heads: the fewest heads whose |patching effect| sums to that share of the total; "
                        "each score ranks every head against them.")
        r.add_table("Top heads", [{"head": t["head"], "unique codes": t["unique_codes"], "edge votes": t["edge_votes"]}
                                  for t in self.top_heads()])
        return r


# ------------------------------------------------------------------------------------------
# 1. per-head outputs in the residual stream
# ------------------------------------------------------------------------------------------
def head_outputs(model, tokens: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """``[B, L, H, d_model]``: each head's residual-stream write ``z_h @ W_O[l, h]``, mean over positions."""
    device = next(model.parameters()).device
    W_O = model.W_O.detach().float()  # [L, H, d_head, d_model]
    out = []
    for s in range(0, tokens.shape[0], batch_size):
        with torch.no_grad():
            _, cache = model.run_with_cache(tokens[s:s + batch_size].to(device),
                                            names_filter=lambda n: n.endswith("attn.hook_z"))
        zs = torch.stack([cache[f"blocks.{l}.attn.hook_z"].float().mean(1) for l in range(len(W_O))], 1)
        out.append(torch.einsum("blhk,lhkd->blhd", zs, W_O).cpu())  # the mean before W_O: it is linear
    return torch.cat(out)


# ------------------------------------------------------------------------------------------
# 2. the shared SAE
# ------------------------------------------------------------------------------------------
def train_code_sae(rows: torch.Tensor, cfg: SAECircuitConfig) -> tuple[Callable, float]:
    """The tied-bias ReLU SAE with unit-norm encoder and decoder directions (the reference's
    ``SparseAutoencoder``), trained by full-batch Adam on ``rows [N, d]``: element-mean MSE + l1 * mean_rows
    ||f||_1 (see module doc).  Returns its encoder ``x -> f`` and the last step's loss."""
    g = torch.Generator().manual_seed(cfg.seed)
    d = rows.shape[-1]
    unit = functools.partial(nn.functional.normalize, dim=-1)
    b = torch.zeros(d, requires_grad=True)  # tied: subtracted before encoding, added after decoding
    W_enc = unit(torch.randn(cfg.n_latents, d, generator=g)).requires_grad_()
    b_enc = ((torch.rand(cfg.n_latents, generator=g) * 2 - 1) * d ** -0.5).requires_grad_()
    W_dec = unit(torch.randn(cfg.n_latents, d, generator=g)).requires_grad_()
    opt = torch.optim.Adam([b, W_enc, b_enc, W_dec], lr=cfg.lr)

    def encode(x):
        return torch.relu((x - b) @ W_enc.T + b_enc)

    @torch.no_grad()
    def renormalise():
        for W in (W_enc, W_dec):
            W.copy_(unit(W))

    for _ in range(cfg.epochs):
        renormalise()
        f = encode(rows)
        loss = nn.functional.mse_loss(f @ W_dec + b, rows) + cfg.l1_coeff * f.abs().sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        with torch.no_grad():
            for W in (W_enc, W_dec):
                W.grad -= (W.grad * W).sum(-1, keepdim=True) * W  # no gradient along the direction itself
        opt.step()
    renormalise()
    return encode, float(loss.detach())


# ------------------------------------------------------------------------------------------
# 3.-5. codes and scores
# ------------------------------------------------------------------------------------------
def node_counts(codes_pos: torch.Tensor, codes_neg: torch.Tensor) -> torch.Tensor:
    """``[n_heads]``: per head, the number of distinct codes on positives that never occur on negatives."""
    if codes_pos.ndim != 2 or codes_neg.ndim != 2 or codes_pos.shape[1] != codes_neg.shape[1]:
        raise ValueError(f"codes must be [n, n_heads] with equal n_heads, got {tuple(codes_pos.shape)} "
                         f"and {tuple(codes_neg.shape)}")
    return torch.tensor([len(set(p.tolist()) - set(n.tolist())) for p, n in zip(codes_pos.T, codes_neg.T)],
                        dtype=torch.long)


def _pair_ids(codes: torch.Tensor, n_codes: int) -> torch.Tensor:
    """Distinct ids of (h1, h2, c1, c2) over prompts, h1 != h2: ``((h1*N + h2)*C + c1)*C + c2``."""
    c = codes.long()
    N = c.shape[1]
    ids = (torch.arange(N * N).view(N, N) * n_codes + c[:, :, None]) * n_codes + c[:, None, :]  # [n, h1, h2]
    return torch.unique(ids[:, ~torch.eye(N, dtype=torch.bool)])


def edge_counts(codes_pos: torch.Tensor, codes_neg: torch.Tensor, n_codes: int) -> torch.Tensor:
    """``[n_heads, n_heads]``: code pairs co-occurring on some positive prompt and on no negative one."""
    N = codes_pos.shape[1]
    pos, neg = _pair_ids(codes_pos, n_codes), _pair_ids(codes_neg, n_codes)
    only = pos[~torch.isin(pos, neg)]
    return torch.bincount(only // (n_codes * n_codes), minlength=N * N).view(N, N)


def edge_votes(counts: torch.Tensor, k: int) -> torch.Tensor:
    """``[n_heads]``: appearances among the first ``k`` entries of the head pairs unrolled by descending count."""
    N = counts.shape[0]
    order = torch.sort(counts.flatten(), descending=True, stable=True).indices
    unrolled = torch.stack([order // N, order % N], 1).flatten()  # h1, h2, h1', h2', ...
    return torch.bincount(unrolled[:k], minlength=N)


@takes_config(SAECircuitConfig)
def sae_circuit(model, task, config: SAECircuitConfig | None = None) -> SAECircuitResult:
    """Node and edge scores of every head for ``task`` (positives: clean, negatives: corrupt); see module doc.
    Settings: a :class:`SAECircuitConfig` or its fields as keywords, not both."""
    t0 = time.perf_counter()
    pos = head_outputs(model, task.clean, config.batch_size)
    neg = head_outputs(model, task.corrupt, config.batch_size)
    return scores_from_outputs(pos, neg, config, t_repr=time.perf_counter() - t0)


def scores_from_outputs(pos: torch.Tensor, neg: torch.Tensor, cfg: SAECircuitConfig,
                        t_repr: float = 0.0) -> SAECircuitResult:
    """Steps 2-5 on head outputs ``pos`` / ``neg`` ``[n, L, H, d]`` (from :func:`head_outputs` or planted)."""
    if pos.ndim != 4 or pos.shape[1:] != neg.shape[1:]:
        raise ValueError(f"head outputs must be [n, L, H, d] with equal L, H, d, got {tuple(pos.shape)} and "
                         f"{tuple(neg.shape)}")
    n_pos, L, H, d = pos.shape
    t1 = time.perf_counter()
    allx = torch.cat([pos, neg]).reshape(-1, L * H, d).float()
    g = torch.Generator().manual_seed(cfg.seed)
    pick = torch.randperm(allx.shape[0], generator=g)[:cfg.n_train]
    with torch.enable_grad():
        encode, loss = train_code_sae(allx[pick].reshape(-1, d), cfg)
    t2 = time.perf_counter()
    with torch.no_grad():
        codes = encode(allx.reshape(-1, d)).argmax(-1).view(-1, L * H)
    cp, cn = codes[:n_pos], codes[n_pos:]
    uniq = node_counts(cp, cn)
    counts = edge_counts(cp, cn, cfg.n_latents)
    k = cfg.edge_k or H * H // 2
    votes = edge_votes(counts, k)
    t3 = time.perf_counter()
    return SAECircuitResult(
        node_scores=uniq.double().softmax(0).view(L, H), unique_codes=uniq.view(L, H),
        edge_scores=votes.double().softmax(0).view(L, H), edge_votes=votes.view(L, H),
        codes_pos=cp, codes_neg=cn, sae_loss=loss,
        seconds={"representations": t_repr, "train": t2 - t1, "score": t3 - t2, "total": t_repr + t3 - t1},
        config={**cfg.__dict__, "edge_k": k, "n_pos": n_pos, "n_neg": neg.shape[0]},
    )


# ------------------------------------------------------------------------------------------
# 6. evaluation against ground-truth heads
# ------------------------------------------------------------------------------------------
def ground_truth_heads(effects: torch.Tensor, share: float) -> torch.Tensor:
    """Bool mask of the fewest heads whose |effect| sums to at least ``share`` of the total |effect|."""
    if not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1], got {share}")
    a = effects.abs().flatten().double()
    if a.sum() == 0:
        raise ValueError("all effects are zero: no ground truth can be defined")
    v, order = a.sort(descending=True)
    n = int((v.cumsum(0) < (share - 1e-12) * a.sum()).sum()) + 1
    return torch.zeros_like(a, dtype=torch.bool).index_fill_(0, order[:n], True).view(effects.shape)


def evaluate_scores(scores: torch.Tensor, truth: torch.Tensor) -> dict:
    """ROC-AUC and best F1 (over all thresholds) of ``scores`` against the bool mask ``truth``."""
    from sklearn.metrics import precision_recall_curve, roc_auc_score

    y, s = truth.flatten().numpy().astype(int), scores.flatten().double().numpy()
    if y.min() == y.max():
        raise ValueError("the ground truth must contain both circuit and non-circuit heads")
    p, r, _ = precision_recall_curve(y, s)
    f1 = (2 * p * r / (p + r + 1e-300)).max()
    return {"roc_auc": float(roc_auc_score(y, s)), "best_f1": float(f1), "n_true": int(y.sum()), "n": int(y.size)}


def run_sae_circuit(model, task_name: str, config: SAECircuitConfig | None = None, *, n: int = 32, task_seed: int = 0,
                    corruption: str | None = None, truth_n: int = 0, shares=(0.5, 0.8)) -> SAECircuitResult:
    """:func:`sae_circuit` on ``n`` prompts of ``task_name``; with ``truth_n``, activation patching of every
    head on the first ``truth_n`` prompts and :func:`evaluate_scores` of the node and edge scores against
    the heads carrying each of ``shares`` of the total |effect| (``interp sae-circuit``)."""
    from interp.attribution import activation_patching
    from interp.models import model_name
    from interp.tasks import make_task

    if n < 1 or truth_n < 0:
        raise ValueError(f"n must be >= 1 and truth_n >= 0, got {n} and {truth_n}")
    task = make_task(task_name, model, n=max(n, truth_n), seed=task_seed, corruption=corruption)
    r = sae_circuit(model, task.subset(slice(0, n)), config)
    r.task, r.model, r.versions = task_name, model_name(model), versions()
    r.config.update(n=n, task_seed=task_seed, corruption=task.meta.get("corruption"), truth_n=truth_n)
    if truth_n:
        ap = activation_patching(model, task.subset(slice(0, truth_n)), components=("attn_head",))
        r.patching, r.seconds["patching"] = ap.scores["attn_head"], ap.seconds
        for s in shares:
            truth = ground_truth_heads(r.patching, s)
            r.evaluation[str(s)] = {"n_truth": int(truth.sum()), "node": evaluate_scores(r.node_scores, truth),
                                    "edge": evaluate_scores(r.edge_scores, truth)}
    return r
