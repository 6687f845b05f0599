"""Batched forward passes over prompts of unequal length (grouped by token length, no padding), greedy
generation with an optional steering vector, next-token and teacher-forced log-probabilities of responses.

Prompts are grouped by token count so each group is one ``[B, T]`` batch with no padding and no attention
mask to get wrong; generation is greedy without a KV cache (``n_new`` forwards of growing length per group).
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Sequence

import torch

from .vector import SteeringVector, steer


def tokenize(model, texts: Sequence[str]) -> list[torch.Tensor]:
    """One ``[T]`` LongTensor (BOS prepended) per text."""
    return [model.to_tokens(t)[0].cpu() for t in texts]


@torch.no_grad()
def per_input(model, token_lists: Sequence[torch.Tensor], fn, vector: SteeringVector | None = None,
              strength: float = 0.0) -> list:
    """``fn([B, T] tokens on the model's device)`` per length group (steered by ``vector`` when given, the hook
    removed after), its rows returned in input order."""
    by_len: dict[int, list[int]] = {}  # input indices grouped by token count, in first-seen order
    for i, t in enumerate(token_lists):
        by_len.setdefault(int(t.shape[0]), []).append(i)
    out: list = [None] * len(token_lists)
    with steer(model, vector, strength) if vector is not None else nullcontext():
        for idx in by_len.values():
            rows = fn(torch.stack([token_lists[i] for i in idx]).to(next(model.parameters()).device))
            for j, i in enumerate(idx):
                out[i] = rows[j]
    return out


def activations_at(model, token_lists: Sequence[torch.Tensor], hook: str) -> torch.Tensor:
    """``[N, d]``: the activation at ``hook`` at the last position of each input (float32, CPU)."""
    def run(toks):
        return model.run_with_cache(toks, names_filter=[hook])[1][hook][:, -1].float().cpu()

    return torch.stack(per_input(model, token_lists, run))


def last_logprobs(model, token_lists: Sequence[torch.Tensor], vector: SteeringVector | None = None,
                  strength: float = 0.0) -> torch.Tensor:
    """``[N, V]`` next-token log-probabilities after each input (float32, CPU), optionally steered."""
    def run(toks):
        return torch.log_softmax(model(toks)[:, -1].float(), -1).cpu()

    return torch.stack(per_input(model, token_lists, run, vector, strength))


def generate(model, token_lists: Sequence[torch.Tensor], n_new: int, vector: SteeringVector | None = None,
             strength: float = 0.0) -> list[torch.Tensor]:
    """Greedy continuations (``[n_new]`` new tokens each), steered if ``vector`` is given; hooks removed after."""
    def run(toks):
        t = toks
        for _ in range(n_new):
            t = torch.cat([t, model(t)[:, -1].argmax(-1, keepdim=True)], 1)
        return t[:, toks.shape[1]:].cpu()

    return per_input(model, token_lists, run, vector, strength)


def response_logprobs(model, seqs: Sequence[torch.Tensor], starts: Sequence[int],
                      vector: SteeringVector | None = None, strength: float = 0.0) -> list[torch.Tensor]:
    """``[T - start]`` per sequence: ``log p(seq[t] | seq[:t])`` for ``t >= start`` (the response after a
    ``start``-token prompt), teacher forced (float32, CPU), optionally steered."""
    def run(toks):
        lp = torch.log_softmax(model(toks)[:, :-1].float(), -1)
        return lp.gather(-1, toks[:, 1:, None])[..., 0].cpu()

    return [lp[n - 1:] for lp, n in zip(per_input(model, seqs, run, vector, strength), starts)]
