"""Reading and steering SNMF features (and any other MLP-activation directions).

Following Shafran, Geiger & Geva 2025 (arXiv 2506.10920, section 4; reference
``ordavid-s/snmf-mlp-decomposition``):

* **Input side**: the contexts where a feature's coefficient ``Y_i`` is largest
  (:func:`top_contexts`).
* **Output side**: the residual-stream direction ``f_i = W_out[L]^T z_i`` and its
  vocabulary projection ``(g * f_i) @ W_U`` (:func:`vocab_projection`), where ``g`` is the
  final norm's gain (RMSNorm weight; ``1 + w`` for Gemma; LayerNorm also centres ``f``; read by
  :func:`interp.models.modules.norm_params`).
  The norm's data-dependent ``1/rms`` scale is a positive factor per token and is left
  out, so the *ranking* of tokens is what the model's unembedding would give.
* **Steering**: add ``alpha * z_i / ||z_i||`` to ``blocks.L.mlp.hook_post`` at every
  position; ``alpha`` is found so that ``KL(p_base || p_steered)`` of the next token
  after the prompt (default ``"I think that"``) hits each target.  Every feature, sign
  and target is one row of a single batch (:func:`calibrate_steering`); hooks are scoped
  and removed in ``finally``.
* **The KL search** (:func:`kl_search`, also behind :func:`interp.steering.calibrate`): per row,
  double the strength until the KL passes the target, then bisect the bracket until within a
  relative tolerance.  Design choice: one batched search over a vector of strengths, so a scalar
  calibration is the one-row case.

Memory: the steering batch is ``n_features x n_signs x n_targets`` copies of the prompt.  Time: one
forward pass of that batch per search step (doublings plus at most ``n_steps`` bisections), one per
generated token.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import torch

from interp.config import takes_config
from interp.models import model_name, resolve_hooks, scoped_hooks
from interp.models.hooks import mlp_post_hook
from interp.models.modules import norm_params
from interp.results import encode, versions

from .concepts import SENTENCES
from .results import SNMFFeatures
from .snmf import ActivationSet, SNMFConfig, SNMFResult, collect_activations, fit_snmf, store_activations
from .snmf_compare import compare_on_concepts

DEFAULT_KL_TARGETS = (0.025, 0.05, 0.1, 0.15, 0.25, 0.35, 0.5)


# ---------------------------------------------------------------------------------------
# output side

def residual_directions(model, layer: int, Z: torch.Tensor) -> torch.Tensor:
    """``W_out[layer]^T z`` for each column of ``Z [d_mlp, k]`` -> ``[k, d_model]``."""
    W_out = model.W_out[layer].detach().float()  # [d_mlp, d_model]
    if Z.shape[0] != W_out.shape[0]:
        raise ValueError(f"Z has {Z.shape[0]} rows but layer {layer}'s MLP width is {W_out.shape[0]}")
    return Z.T.to(W_out.device, torch.float32) @ W_out


def vocab_projection(model, directions: torch.Tensor, k: int = 20) -> list[dict]:
    """Top and bottom ``k`` tokens of ``(gain * d) @ W_U`` for each direction ``[m, d_model]`` (``gain``: the
    final norm's, ``1 + w`` where the norm uses that offset; a LayerNorm also centres ``d``)."""
    d = directions.float().to(model.W_U.device)
    if getattr(model, "ln_final", None) is not None:
        gain, _, _, rms = norm_params(model.ln_final, model)  # the one reader of a bridge norm
        d = (d if rms else d - d.mean(-1, keepdim=True)) * gain.detach().float().to(d.device)
    logits = d @ model.W_U.detach().float()  # [m, vocab]

    def ranked(row, sign):  # the k tokens of largest sign * logit, with their logits
        values, ids = (sign * row).topk(k)
        return [(model.tokenizer.decode([int(i)]), sign * float(v)) for v, i in zip(values, ids)]

    return [{"top": ranked(row, 1), "bottom": ranked(row, -1)} for row in logits]


# ---------------------------------------------------------------------------------------
# input side

def top_contexts(Y: torch.Tensor, acts: ActivationSet, tokenizer, feature: int, k: int = 10,
                 window: int = 8) -> list[dict]:
    """The ``k`` rows with the largest coefficient ``Y[feature]`` and the tokens of the ``window`` positions
    before each that are rows too (BOS never is; a store's sampled rows may leave gaps)."""
    token_at = {(s, p): t for (s, p), t in zip(acts.seq_pos.tolist(), acts.tokens.tolist())}
    vals, idx = Y[feature].float().topk(min(k, Y.shape[1]))
    out = []
    for v, i in zip(vals.tolist(), idx.tolist()):
        s, p = acts.seq_pos[i].tolist()
        before = [token_at[s, q] for q in range(max(0, p - window), p) if (s, q) in token_at]
        out.append({"coef": v, "seq": s, "pos": p, "context": tokenizer.decode(before),
                    "token": tokenizer.decode([token_at[s, p]])})
    return out


# ---------------------------------------------------------------------------------------
# steering

@dataclass
class SteeringCalibration:
    """Steering strengths ``alpha`` that reach each next-token KL target (nats) after the prompt."""

    alpha: torch.Tensor
    """[n_directions, n_signs, n_targets] calibrated |alpha| (unit directions; sign +1 adds the direction, -1
    subtracts it)."""
    kl: torch.Tensor
    """[n_directions, n_signs, n_targets] KL reached at that alpha."""
    reached: torch.Tensor
    """[n_directions, n_signs, n_targets] whether the bracket search found the target."""
    forward_passes: int = 0
    """Batched forward passes used."""


@torch.no_grad()
def steered_logits(model, hook: str, U: torch.Tensor, alphas: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Logits ``[R, T, V]`` for ``tokens [T]`` or ``[R, T]`` with row ``r`` steered by ``alphas[r] * U[r]``."""
    dev = next(model.parameters()).device
    shift = alphas.to(dev)[:, None, None] * U.to(dev)[:, None, :]
    with scoped_hooks(model, fwd=[(hook, lambda x, hook: x + shift.to(x.dtype))]):
        return model(tokens.expand(U.shape[0], -1).to(dev))


MAX_DOUBLINGS = 20
"""Doublings of the starting strength before :func:`kl_search` gives a row up (2^20 x the start)."""


def kl_search(kl_at, targets: torch.Tensor, start: torch.Tensor, rel_tol: float, max_bisect: int):
    """Per row ``r`` the strength ``s >= 0`` with ``kl_at(s)[r] = targets[r]`` within ``rel_tol`` (relative).

    ``kl_at([R] strengths) -> [R] KL`` is one (batched) forward pass.  ``start`` is doubled until the KL
    passes the target (at most :data:`MAX_DOUBLINGS` times), then ``[lo, hi]`` is bisected at most
    ``max_bisect`` times; a row stops once within tolerance.  Returns ``(strength, kl, reached, passes)``:
    per row the strength whose KL came closest to the target (the last doubling for a row never
    bracketed), that KL, whether it is within tolerance, and the number of ``kl_at`` calls.
    """
    if not bool(((targets > 0) & targets.isfinite()).all()):
        raise ValueError(f"KL targets must be positive and finite, got {targets.tolist()}")
    lo, hi = torch.zeros_like(start), start.clone()
    k_hi = kl_at(hi)
    passes = 1
    for _ in range(MAX_DOUBLINGS):
        under = k_hi < targets
        if not under.any():
            break
        lo = torch.where(under, hi, lo)
        hi = torch.where(under, 2 * hi, hi)
        k_hi = torch.where(under, kl_at(hi), k_hi)
        passes += 1
    best, k_best = hi, k_hi
    bracketed = k_hi >= targets
    for _ in range(max_bisect):
        active = bracketed & ((k_best - targets).abs() > rel_tol * targets)
        if not active.any():
            break
        mid = (lo + hi) / 2
        k = kl_at(mid)
        passes += 1
        hi = torch.where(k >= targets, mid, hi)  # the bracket of a finished row no longer matters
        lo = torch.where(k >= targets, lo, mid)
        closer = active & ((k - targets).abs() < (k_best - targets).abs())
        best, k_best = torch.where(closer, mid, best), torch.where(closer, k, k_best)
    return best, k_best, bracketed & ((k_best - targets).abs() <= rel_tol * targets), passes


@torch.no_grad()
def calibrate_steering(model, layer: int, directions: torch.Tensor, prompt: str = "I think that",
                       targets: Sequence[float] = DEFAULT_KL_TARGETS, n_steps: int = 16,
                       rel_tol: float = 0.01) -> SteeringCalibration:
    """``alpha`` per (direction, sign +1 / -1, target) so ``KL(p_base || p_steered) = target`` within ``rel_tol``.

    ``directions [m, d_mlp]`` are normalised to unit length; all rows are one batch in :func:`kl_search`
    (``alpha`` from 1, at most ``n_steps`` bisections), so each search step is one forward pass.
    """
    (hook,) = resolve_hooks(model, [mlp_post_hook(layer)])
    D = torch.nn.functional.normalize(directions.float(), dim=-1)
    shape = (D.shape[0], 2, len(targets))
    tokens = model.to_tokens(prompt)[0].to(next(model.parameters()).device)
    base = torch.log_softmax(model(tokens[None])[0, -1].float(), -1)
    # rows (direction, sign, target)
    U = torch.stack([D, -D], 1)[:, :, None].expand(*shape, -1).reshape(-1, D.shape[1])
    tgt = torch.tensor(list(targets), dtype=torch.float32).expand(shape).reshape(-1)

    def kl_at(alpha):
        lp = torch.log_softmax(steered_logits(model, hook, U, alpha, tokens)[:, -1].float(), -1)
        return (base.exp() * (base - lp)).sum(-1).cpu()

    alpha, kl, reached, passes = kl_search(kl_at, tgt, torch.ones(U.shape[0]), rel_tol, n_steps)
    return SteeringCalibration(alpha.view(shape), kl.view(shape), reached.view(shape), passes)


@torch.no_grad()
def steered_generations(model, layer: int, directions: torch.Tensor, alphas: torch.Tensor,
                        prompt: str = "I think that", n_tokens: int = 12) -> list[str]:
    """Greedy continuations of ``prompt`` with row ``r`` steered by ``alphas[r] * directions[r]/||.||``."""
    (hook,) = resolve_hooks(model, [mlp_post_hook(layer)])
    U = torch.nn.functional.normalize(directions.float(), dim=-1)
    toks = model.to_tokens(prompt).expand(U.shape[0], -1)
    n0 = toks.shape[1]
    for _ in range(n_tokens):
        nxt = steered_logits(model, hook, U, alphas, toks)[:, -1].argmax(-1)
        toks = torch.cat([toks, nxt[:, None].to(toks.device)], 1)
    return [model.tokenizer.decode(t.tolist()) for t in toks[:, n0:]]


# ---------------------------------------------------------------------------------------
# a feature card

@dataclass
class FeatureCard:
    """Everything shown for one SNMF feature."""

    index: int
    """Feature index (column of Z)."""
    n_neurons: int
    """Non-zero entries of z (the neuron group size)."""
    mean_coef: float
    """Mean of Y_i over the fitted tokens."""
    contexts: list[dict]
    """Top-activating contexts (see :func:`top_contexts`)."""
    vocab: dict
    """Top / bottom tokens of the residual direction's vocabulary projection."""
    alpha: dict
    """``{"+": [...], "-": [...]}`` calibrated alpha per KL target."""
    steered: dict
    """``{"+": text, "-": text}`` greedy continuation at the middle KL target."""


@dataclass
class CardConfig:
    """What :func:`feature_cards` shows per feature."""

    n_contexts: int = 8
    """Top-coefficient contexts."""
    n_vocab: int = 12
    """Promoted and suppressed tokens of the residual direction."""
    targets: Sequence[float] = DEFAULT_KL_TARGETS
    """Next-token KL targets the steering strength is calibrated to (the middle one is generated at)."""
    prompt: str = "I think that"
    """The steering prompt."""
    n_tokens: int = 10
    """Tokens generated per steered continuation."""


@takes_config(CardConfig)
def feature_cards(model, layer: int, res: SNMFResult, acts: ActivationSet, features: Sequence[int] | None = None, *,
                  config: CardConfig) -> tuple[list[FeatureCard], SteeringCalibration]:
    """Input contexts, vocabulary projection and calibrated steering for ``features``; ``config``, or its
    fields as keywords (not both)."""
    c = config
    feats = list(range(res.k)) if features is None else list(features)
    Z = res.Z[:, feats].float().cpu()
    vocab = vocab_projection(model, residual_directions(model, layer, Z), c.n_vocab)
    cal = calibrate_steering(model, layer, Z.T, c.prompt, c.targets)
    gen_alpha = cal.alpha[:, :, len(c.targets) // 2].T.reshape(-1)  # the + rows, then the - rows
    texts = steered_generations(model, layer, torch.cat([Z.T, -Z.T]), gen_alpha, c.prompt, c.n_tokens)
    cards = [FeatureCard(index=f, n_neurons=int((res.Z[:, f] != 0).sum()), mean_coef=float(res.Y[f].mean()),
                         contexts=top_contexts(res.Y, acts, model.tokenizer, f, c.n_contexts), vocab=vocab[r],
                         alpha={"+": cal.alpha[r, 0].tolist(), "-": cal.alpha[r, 1].tolist()},
                         steered={"+": texts[r], "-": texts[len(feats) + r]}) for r, f in enumerate(feats)]
    return cards, cal


def describe_snmf(model, layer: int, cfg=None, texts: Sequence[str] | None = None, store=None,
                  n_tokens: int = 20000, n_features: int = 8, compare: bool = False):
    """Fit SNMF to ``blocks.{layer}.mlp.hook_post`` and describe its ``n_features`` strongest features
    (largest mean coefficient): a :class:`~interp.decompositions.results.SNMFFeatures`.

    Rows come from ``store`` (an ActivationStore, ``n_tokens`` rows), else from running the model on
    ``texts`` (default: the built-in concept sentences).  ``compare`` adds SNMF / DiffMeans / SAE on
    the concept set (:func:`~interp.decompositions.snmf_compare.compare_on_concepts`)."""
    import time

    cfg = cfg or SNMFConfig()
    hook = mlp_post_hook(layer)
    t0 = time.perf_counter()
    if store is not None:
        acts = store_activations(store, hook, n_tokens)
        source = {"store": str(store.path), "rows": int(acts.X.shape[0])}
    else:
        given = SENTENCES if texts is None else list(texts)
        acts = collect_activations(model, given, hook)  # refuses []
        source = {"texts": "built-in concept sentences" if texts is None else "given",
                  "n_texts": len(given), "rows": int(acts.X.shape[0])}
    collect_s = time.perf_counter() - t0
    res = fit_snmf(acts.X, cfg)
    strongest = res.Y.mean(1).argsort(descending=True)[:n_features].tolist()  # by mean coefficient
    cards, cal = feature_cards(model, layer, res, acts, strongest)
    comparison = compare_on_concepts(model, layer, snmf_cfg=cfg) if compare else None
    return SNMFFeatures(model=model_name(model), hook=hook, source=source, fit=encode(res.to_json()),
                        features=encode([asdict(c) for c in cards]),
                        steering={"prompt": CardConfig.prompt, "targets": list(CardConfig.targets),
                                  "forward_passes": cal.forward_passes},
                        comparison=encode(comparison), config={"n_tokens": n_tokens, "n_features": n_features},
                        meta={"collect_seconds": collect_s, "versions": versions()})
