"""IOI head roles from attention-pattern tests (Wang et al. 2022, section 3; METHODS.md section 8).

Each test is one number per head, the mean attention probability on a diagnostic position:

==================  ==========================================  ==============================
role                prompts                                     query -> key
==================  ==========================================  ==============================
name mover          IOI clean prompts                           END -> IO
S-inhibition        IOI clean prompts                           END -> S2
induction           random tokens r, repeated: [BOS] r r        t -> t - R + 1 (after the copy)
duplicate token     same repeated sequence                      t -> t - R (the earlier copy)
previous token      same, first half                            t -> t - 1
==================  ==========================================  ==============================

A head gets the role with the highest score among those at or above ``threshold`` (default
0.3); all scores are returned so a reader can apply their own cut.  These are pattern tests
only: Wang et al. also check what the heads write (copy scores) and their causal effect, which
is what the circuit's patching scores add.  Note that name movers and S-inhibition heads both
attend from END; the paper separates them by layer and by output, not by pattern alone.

Cost: two forward passes of B*T and of B*(2R+1) tokens.  Memory: the patterns ``[B, H, T, T]``
of every layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from interp.models import scoped_hooks

ROLES = ("name_mover", "s_inhibition", "induction", "duplicate_token", "previous_token")


@dataclass
class HeadRoles:
    """Per-head role scores and assigned roles."""

    scores: dict[str, torch.Tensor]
    """Role -> ``[L, H]`` mean attention on the diagnostic position."""
    roles: dict[str, str]
    """``"L.H"`` -> role, for heads with some score >= threshold."""
    threshold: float

    def to_json(self) -> dict:
        return {"scores": {k: v.tolist() for k, v in self.scores.items()}, "roles": self.roles,
                "threshold": self.threshold}


def _patterns(model, tokens):
    L = model.cfg.n_layers
    store = {}

    def saver(l):
        def fn(p, hook):
            store[l] = p.detach().float()

        return fn

    with torch.no_grad(), scoped_hooks(model, fwd=[(f"blocks.{l}.attn.hook_pattern", saver(l)) for l in range(L)]):
        model(tokens.to(next(model.parameters()).device))
    return torch.stack([store[l] for l in range(L)])  # [L, B, H, T, T]


def classify_heads(model, task, threshold: float = 0.3, rep_len: int = 20, n_rep: int = 8, seed: int = 0) -> HeadRoles:
    """Score every head on the five pattern tests and assign roles (see module doc)."""
    for k in ("IO", "S2", "END"):
        if k not in task.positions:
            raise ValueError(f"head roles need IOI positions (IO, S2, END); the task has {sorted(task.positions)}")
    pats = _patterns(model, task.clean)  # [L, B, H, T, T]
    b = torch.arange(task.n)
    end, io, s2 = task.positions["END"], task.positions["IO"], task.positions["S2"]
    pb = pats.permute(1, 0, 2, 3, 4)  # [B, L, H, T, T]; indexing below gives [B, L, H]
    scores = {"name_mover": pb[b, :, :, end, io].mean(0), "s_inhibition": pb[b, :, :, end, s2].mean(0)}
    g = torch.Generator().manual_seed(seed)
    V = model.cfg.d_vocab
    lo = min(1000, V // 4)
    r = torch.randint(lo, V, (n_rep, rep_len), generator=g)
    bos = model.to_tokens("", prepend_bos=True)[:, :1].cpu().expand(n_rep, 1)
    toks = torch.cat([bos, r, r], dim=1)
    pr = _patterns(model, toks)  # [L, B, H, 2R+1, 2R+1]
    t2 = torch.arange(rep_len + 1, 2 * rep_len + 1)  # second copy
    t1 = torch.arange(2, rep_len + 1)  # first copy (excluding the first token)
    scores["induction"] = pr[:, :, :, t2[:-1], t2[:-1] - rep_len + 1].mean((1, 3))
    scores["duplicate_token"] = pr[:, :, :, t2, t2 - rep_len].mean((1, 3))
    scores["previous_token"] = pr[:, :, :, t1, t1 - 1].mean((1, 3))
    stacked = torch.stack([scores[k] for k in ROLES])  # [5, L, H]
    best, idx = stacked.max(0)
    roles = {f"{l}.{h}": ROLES[int(idx[l, h])] for l in range(best.shape[0]) for h in range(best.shape[1])
             if best[l, h] >= threshold}
    return HeadRoles(scores={k: v.cpu() for k, v in scores.items()}, roles=roles, threshold=threshold)
