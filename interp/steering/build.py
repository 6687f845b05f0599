"""Builders: one function per method, each returning a :class:`~interp.steering.vector.SteeringVector`.

* :func:`mean_difference` -- contrastive activation addition (Rimsky et al. 2024, "Steering Llama 2 via
  Contrastive Activation Addition"; Turner et al. 2023, "Activation Addition"):
  ``v = mean_i h_L(x_i^+)[p] - mean_j h_L(x_j^-)[p]`` at one hook and position ``p`` (default the last token,
  which for CAA's prompt+answer texts is the answer token).  Applied additively (``mode='add'``).
  Cost: one forward per input text.
* :func:`grains` -- GrAInS (Nguyen et al. 2025, "Gradient-based Attribution for Inference-Time Steering of LLMs
  and VLMs"; reference implementation github.com/duykhuongnguyen/GrAInS).  Per example ``(x, y+, y-)``:

  1. contrastive integrated gradients at the input embeddings (zero baseline, ``steps`` Gauss-Legendre nodes:
     the project's :func:`~interp.attribution.ig.layer_integrated_gradients`, equal to captum's) of
     ``log p(y+ | x)`` on the sequence ``x y+`` and of ``-log p(y- | x)`` on ``x y-``; a token's score is its
     attribution summed over the embedding axis;
  2. the ``k`` highest-scoring prompt tokens of each sequence (mode "pos") and the ``k`` lowest (mode "neg")
     are replaced by the pad token (eos when there is none), as the reference's ``ablate`` does;
  3. ``delta = h_L(seq) - h_L(seq masked)`` at the last position of both sequences;
  4. per mode, the first principal direction of the stacked deltas (oriented along their mean), and
     ``v = v_pos - v_neg``;

  applied with ``mode='renorm'``: ``h' = h + s v`` then rescaled to ``||h||`` per position.
  Cost: per example ``2 (steps + 2)`` forwards and ``2 steps`` backwards (IG) plus 6 forwards.
  docs/methods.md, Steering (GrAInS, mean-difference, feature steering) lists where this differs from
  the reference code.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import torch

from interp.attribution.ig import layer_integrated_gradients
from interp.config import takes_config
from interp.models import resolve_hooks, weight_hash
from interp.results import check_fields

from .runs import activations_at, tokenize
from .vector import SteeringVector


def layer_hook(model, layer: int, site: str = "hook_resid_post") -> tuple[str, int]:
    """``(blocks.{layer}.{site}, layer)`` with a negative ``layer`` counted from the end, checked against the
    model (``HookNotFoundError`` otherwise)."""
    n = model.cfg.n_layers
    if not -n <= layer < n:
        raise ValueError(f"layer {layer} is out of range for a model with {n} layers")
    (hook,) = resolve_hooks(model, [f"blocks.{layer % n}.{site}"])
    return hook, layer % n


def mean_difference(model, positive: Sequence[str], negative: Sequence[str], layer: int) -> SteeringVector:
    """CAA / ActAdd: mean activation of ``positive`` texts minus that of ``negative`` texts at
    ``blocks.{layer}.hook_resid_post``, last position (see module doc)."""
    if not positive or not negative:
        raise ValueError("mean_difference needs at least one positive and one negative text")
    t0 = time.perf_counter()
    hook, layer = layer_hook(model, layer)
    hp, hn = (activations_at(model, tokenize(model, t), hook) for t in (positive, negative))
    v = hp.mean(0) - hn.mean(0)
    meta = {"n_positive": len(positive), "n_negative": len(negative), "position": -1,
            "forward_passes": len(positive) + len(negative), "backward_passes": 0,
            "seconds": time.perf_counter() - t0}
    return SteeringVector(v, hook, layer, "mean_diff", weight_hash(model), "add", meta=meta)


def mask_token_id(model) -> int:
    """The token masked tokens are replaced by: pad, else eos, else unk (the reference sets pad = eos)."""
    tok = model.tokenizer
    for t in (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id):
        if t is not None:
            return int(t)
    raise ValueError("the tokenizer has no pad, eos or unk token to mask with")


def _split(model, prompt: str, response: str) -> tuple[torch.Tensor, int]:
    p = model.to_tokens(prompt)[0].cpu()
    full = model.to_tokens(prompt + response)[0].cpu()
    if full.shape[0] <= p.shape[0] or not torch.equal(full[: p.shape[0]], p):
        raise ValueError(f"response {response!r} does not tokenize as new tokens after prompt {prompt!r} "
                         "(start responses with a space, or check the tokenizer)")
    return full, int(p.shape[0])


def contrastive_token_scores(model, prompt: str, preferred: str, dispreferred: str, steps: int = 20):
    """GrAInS step 1 for one example: ``(seq+, seq-, n_prompt, scores+ [T+], scores- [T-], ig_delta)``.

    ``scores+`` is the IG token attribution of ``log p(preferred | prompt)`` on ``prompt + preferred``,
    ``scores-`` that of ``-log p(dispreferred | prompt)`` on ``prompt + dispreferred`` (zero-embedding
    baseline; each row's IG is independent, so running them as one batch is the reference's joint input).
    """
    (sp, n_p), (sn, _) = _split(model, prompt, preferred), _split(model, prompt, dispreferred)
    seqs, signs = [sp, sn], torch.tensor([1.0, -1.0])
    scores, delta = [], []
    for rows in [[0, 1]] if sp.shape == sn.shape else [[0], [1]]:  # one batch when the lengths agree
        toks, sg = torch.stack([seqs[r] for r in rows]), signs[rows]

        # IG stacks its steps as [steps * B, ...]: row i is example i % B
        def metric(logits, tgt=toks[:, n_p:], sg=sg):
            rep = logits.shape[0] // tgt.shape[0]
            lp = torch.log_softmax(logits[:, n_p - 1:-1].float(), -1)
            t, g = tgt.repeat(rep, 1).to(lp.device), sg.repeat(rep).to(lp.device)
            return g * lp.gather(-1, t[..., None])[..., 0].sum(-1)

        r = layer_integrated_gradients(model, toks.to(next(model.parameters()).device), metric,
                                       hook="hook_embed", baseline="zeros", steps=steps)
        scores += list(r.token_scores().detach().float().cpu())
        delta += r.delta.tolist()
    return sp, sn, n_p, scores[0], scores[1], delta


def _principal(diffs: torch.Tensor) -> torch.Tensor:
    mean = diffs.mean(0)
    if diffs.shape[0] < 2:
        return mean / mean.norm().clamp_min(1e-30)
    v = torch.linalg.svd(diffs - mean, full_matrices=False).Vh[0]
    return v if float(v @ mean) >= 0 else -v


@dataclass(frozen=True)
class GrainsConfig:
    """The settings of :func:`grains`."""

    k: int = 3
    """Tokens masked per example and mode (the top-``k`` contrastive IG scores)."""
    steps: int = 20
    """Integrated-gradient steps per example."""

    def __post_init__(self):
        check_fields(self, at_least={"k": 1})


@takes_config(GrainsConfig)
def grains(model, prompts: Sequence[str], preferred: Sequence[str], dispreferred: Sequence[str], layer: int, *,
           config: GrainsConfig) -> SteeringVector:
    """GrAInS steering vector from contrastive examples (see the module doc).

    ``meta['examples']`` keeps each example's prompt tokens, scores and masked positions.
    """
    k, steps = config.k, config.steps
    if not (len(prompts) == len(preferred) == len(dispreferred)) or not prompts:
        raise ValueError("grains needs equally many (>= 1) prompts, preferred and dispreferred outputs")
    t0 = time.perf_counter()
    hook, layer = layer_hook(model, layer)  # blocks.{layer}.hook_resid_post, read and steered
    mask = mask_token_id(model)
    bos = model.tokenizer.bos_token_id
    seqs: list[torch.Tensor] = []
    examples = []
    for x, yp, yn in zip(prompts, preferred, dispreferred):
        sp, sn, n_p, scp, scn, delta = contrastive_token_scores(model, x, yp, yn, steps)
        skip = bos is not None and int(sp[0]) == bos
        row = {"prompt": x, "preferred": yp, "dispreferred": yn,
               "tokens": [model.tokenizer.decode([t]) for t in sp[:n_p].tolist()],
               "scores_pos": scp[:n_p].tolist(), "scores_neg": scn[:n_p].tolist(), "ig_delta": delta}
        for mode, largest in (("pos", True), ("neg", False)):
            for name, s, sc in (("p", sp, scp), ("n", sn, scn)):
                cand = sc[int(skip):n_p]  # the prompt's scores, BOS left out; its k largest (or smallest)
                idx = (cand.topk(min(k, len(cand)), largest=largest).indices + int(skip)).tolist()
                row[f"masked_{mode}_{name}"] = idx
                seqs.append(s.index_fill(0, torch.tensor(idx, dtype=torch.long), mask))
        seqs += [sp, sn]
        examples.append(row)
    h = activations_at(model, seqs, hook).view(len(prompts), 6, -1)
    # rows per example: pos-mode (p, n), neg-mode (p, n), originals (p, n); deltas = original - masked
    v = _principal((h[:, 4:6] - h[:, 0:2]).flatten(0, 1)) - _principal((h[:, 4:6] - h[:, 2:4]).flatten(0, 1))
    meta = {"k": k, "steps": steps, "mask_token": mask, "n_examples": len(prompts),
            # per example: IG's 2 (steps + 2) forwards and 2 steps backwards, then 6 activation forwards
            "forward_passes": len(prompts) * (2 * (steps + 2) + 6), "backward_passes": len(prompts) * 2 * steps,
            "seconds": time.perf_counter() - t0, "examples": examples}
    return SteeringVector(v, hook, layer, "grains", weight_hash(model), "renorm", meta=meta)
