"""Batched forward passes over prompts of unequal length (grouped by token length, no padding), greedy
generation with an optional steering vector, next-token KL and continuation perplexity.

Prompts are grouped by token count so each group is one ``[B, T]`` batch with no padding and no attention
mask to get wrong; generation is greedy without a KV cache (``n_new`` forwards of growing length per group).
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Sequence

import torch

from .vector import SteeringVector, steer


def device_of(model) -> torch.device:
    return next(model.parameters()).device


def tokenize(model, texts: Sequence[str]) -> list[torch.Tensor]:
    """One ``[T]`` LongTensor (BOS prepended) per text."""
    return [model.to_tokens(t)[0].cpu() for t in texts]


def groups(token_lists: Sequence[torch.Tensor]) -> list[tuple[list[int], torch.Tensor]]:
    """``[(indices, [B, T] tokens)]``: the inputs grouped by length, in first-seen order."""
    by_len: dict[int, list[int]] = {}
    for i, t in enumerate(token_lists):
        by_len.setdefault(int(t.shape[0]), []).append(i)
    return [(idx, torch.stack([token_lists[i] for i in idx])) for idx in by_len.values()]


def _ctx(model, vector: SteeringVector | None, strength: float):
    return steer(model, vector, strength) if vector is not None else nullcontext()


@torch.no_grad()
def activations_at(model, token_lists: Sequence[torch.Tensor], hook: str, position: int = -1) -> torch.Tensor:
    """``[N, d]``: the activation at ``hook`` at ``position`` of each input (float32, CPU)."""
    from interp.models import scoped_hooks

    out: list[torch.Tensor | None] = [None] * len(token_lists)
    dev = device_of(model)
    for idx, toks in groups(token_lists):
        got = {}

        def save(x, hook=None):
            got["x"] = x[:, position].detach().float().cpu()

        with scoped_hooks(model, fwd=[(hook, save)]):
            model(toks.to(dev))
        for j, i in enumerate(idx):
            out[i] = got["x"][j]
    return torch.stack(out)


@torch.no_grad()
def last_logprobs(model, token_lists: Sequence[torch.Tensor], vector: SteeringVector | None = None,
                  strength: float = 0.0) -> torch.Tensor:
    """``[N, V]`` next-token log-probabilities after each input (float32, CPU), optionally steered."""
    out: list[torch.Tensor | None] = [None] * len(token_lists)
    dev = device_of(model)
    with _ctx(model, vector, strength):
        for idx, toks in groups(token_lists):
            lp = torch.log_softmax(model(toks.to(dev))[:, -1].float(), -1).cpu()
            for j, i in enumerate(idx):
                out[i] = lp[j]
    return torch.stack(out)


def kl_divergence(base_lp: torch.Tensor, lp: torch.Tensor) -> torch.Tensor:
    """``[N]``: ``KL(p_base || p)`` in nats from log-probabilities ``[N, V]``."""
    return (base_lp.exp() * (base_lp - lp)).sum(-1)


@torch.no_grad()
def generate(model, token_lists: Sequence[torch.Tensor], n_new: int, vector: SteeringVector | None = None,
             strength: float = 0.0) -> list[torch.Tensor]:
    """Greedy continuations (``[n_new]`` new tokens each), steered if ``vector`` is given; hooks removed after."""
    out: list[torch.Tensor | None] = [None] * len(token_lists)
    dev = device_of(model)
    with _ctx(model, vector, strength):
        for idx, toks in groups(token_lists):
            t = toks.to(dev)
            for _ in range(n_new):
                nxt = model(t)[:, -1].argmax(-1)
                t = torch.cat([t, nxt[:, None]], 1)
            for j, i in enumerate(idx):
                out[i] = t[j, toks.shape[1]:].cpu()
    return out


@torch.no_grad()
def continuation_nll(model, token_lists: Sequence[torch.Tensor], continuations: Sequence[torch.Tensor]) -> torch.Tensor:
    """``[N]``: mean negative log-likelihood (nats/token) of each continuation under the *unsteered* model."""
    full = [torch.cat([p, c]) for p, c in zip(token_lists, continuations)]
    out = torch.zeros(len(full))
    dev = device_of(model)
    for idx, toks in groups(full):
        lp = torch.log_softmax(model(toks.to(dev)).float(), -1).cpu()
        for j, i in enumerate(idx):
            n0 = token_lists[i].shape[0]
            tgt = toks[j, n0:]
            out[i] = -lp[j, n0 - 1:-1].gather(-1, tgt[:, None]).mean()
    return out
