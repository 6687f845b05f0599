"""Greater-than, after Hanna et al. 2023 ("How does GPT-2 compute greater-than?").

Prompt: "The {noun} lasted from the year 17{YY} to the year 17", e.g. "The war lasted from
the year 1749 to the year 17"; a model that understands it puts its probability on end
years above 17YY.  Corruption (the paper's "01"): the start year becomes 1701, which leaves
no constraint on the end year.

Metric, adapted to per-digit tokenisation.  GPT-2 tokenises "1749" as "17"+"49", so Hanna
et al. read the two-digit year YY' from one token and define
    prob_diff = sum_{YY' > YY} p(YY') - sum_{YY' <= YY} p(YY').
SmolLM2 (and the char tokenizer of the tiny models) emit one digit per token, so the next
token after "...to the year 17" is only the tens digit d of the end year.  We therefore use
start years whose units digit is 9 (YY in 19, 29, ..., 89): every end year above 17Y9 then
starts with a tens digit d > Y, and every end year 17YZ <= 17Y9, so
    prob_diff = sum_{d > Y} p(d) - sum_{d <= Y} p(d)
is *exactly* the paper's two-digit prob_diff marginalised over the units digit, computed
from one forward pass (no chaining needed).  Passing other start years is allowed; the tens
digit equal to Y is then counted as "not greater", which makes the metric a lower bound on
the two-digit prob_diff (``meta['exact']`` says which case applies).

The tokens of "1749" and "1701" must have the same length (checked), so positions align.

Cost: tokenising ``2n`` prompts; memory: two ``[n, T]`` token tensors.
"""

from __future__ import annotations

import random

import torch

from .base import METRICS, Task, equal_length_group, single_token

NOUNS = ["war", "expedition", "drought", "siege", "reign", "famine", "plague", "strike", "voyage",
         "trial", "occupation", "conflict", "dynasty", "rebellion", "revolution", "journey",
         "pilgrimage", "contract", "festival", "marriage"]
DEFAULT_YEARS = [19, 29, 39, 49, 59, 69, 79, 89]


def next_digit_prob_diff(logits: torch.Tensor, task: Task) -> torch.Tensor:
    """sum_{d > Y} p(d) - sum_{d <= Y} p(d) over digit tokens at the last position (see module doc)."""
    probs = logits[:, -1, :].float().softmax(-1)
    digits = task.data["digit_ids"].to(probs.device)  # [B, 10]
    p = probs.gather(-1, digits)  # [B, 10]
    tens = task.data["tens"].to(probs.device)  # [B]
    above = torch.arange(10, device=probs.device)[None, :] > tens[:, None]
    return (p * above).sum(-1) - (p * ~above).sum(-1)


METRICS["next_digit_prob_diff"] = next_digit_prob_diff


def greater_than_task(model, n: int = 16, seed: int = 0, years: list[int] | None = None) -> Task:
    """``n`` greater-than prompts with "01" corruptions; see the module docstring for the metric."""
    years = list(years or DEFAULT_YEARS)
    bad = [y for y in years if not 2 <= y <= 98]
    if bad:
        raise ValueError(f"greater_than_task: start years YY must lie in 02..98, got {bad}")
    rng = random.Random(seed)
    digit_ids = [single_token(model, str(d)) for d in range(10)]
    nouns_ok = equal_length_group(model, NOUNS)
    starts = [years[i % len(years)] for i in range(n)]
    nouns = [rng.choice(nouns_ok) for _ in starts]
    prompts = [f"The {w} lasted from the year 17{yy:02d} to the year 17" for w, yy in zip(nouns, starts)]
    corrupts = [f"The {w} lasted from the year 1701 to the year 17" for w in nouns]
    return Task.from_prompts(
        model, prompts, corrupts, metric="next_digit_prob_diff", name="greater-than",
        data={"digit_ids": torch.tensor([digit_ids] * n), "tens": torch.tensor(starts) // 10},
        meta={"years": years, "seed": seed, "corruption": "start year -> 1701",
              "exact": all(y % 10 == 9 for y in years),
              "metric": "sum_{d>Y} p(d) - sum_{d<=Y} p(d) over the next (tens) digit; equals the two-digit "
                        "prob_diff when the start year ends in 9"},
    )
