"""IOI head roles from attention-pattern and copy-score tests (Wang et al. 2022, section 3; docs/methods.md, IOI head roles).

Each test is one number per head, the mean attention probability on a diagnostic position:

==================  ==========================================  ==============================
role                prompts                                     query -> key
==================  ==========================================  ==============================
name mover          IOI clean prompts                           END -> IO, and copy score
negative name mover IOI clean prompts                           END -> IO, and negative copy
copy suppression    IOI clean prompts                           END -> S2, and negative copy
S-inhibition        IOI clean prompts                           END -> S2
induction           random tokens r, repeated: [BOS] r r        t -> t - R + 1 (after the copy)
duplicate token     same repeated sequence                      t -> t - R (the earlier copy)
previous token      same, first half                            t -> t - 1
==================  ==========================================  ==============================

What a head writes is tested by its **copy score** (Wang et al. 2022, section 3.1 and appendix):
take the residual stream at a name token after the first block (``blocks.0.hook_resid_post``
at the IO and S1 positions of the clean prompts), pass it through the head's OV circuit as if
the head attended to that token alone (the layer's ``ln1``, the head's slice of ``W_V`` -- its
key/value head under grouped-query attention -- and ``W_O``), then ``ln_final`` and the
unembedding; the copy score is the share of names whose own token is among the ``k``
(:func:`copy_scores`, 5) largest logits, the negative copy score the share among the ``k`` smallest
(the same with ``-W_O``).

A head gets the role with the highest pattern score among those at or above ``threshold``
(default 0.3), where the END -> IO pattern counts as ``name_mover`` only with a copy score at or
above ``copy_threshold`` (default 0.5) and as ``negative_name_mover`` with a negative copy score
at or above it; a head that attends END -> IO but writes neither gets its next role, if any.
A head that attends END -> S2 and has a negative copy score at or above ``copy_threshold`` is a
``copy_suppression`` head (McDougall et al. 2023, "Copy Suppression"): it lowers the logit of the
name it attends to, S, directly -- not through the name movers' queries as an S-inhibition head
does; ties between the two go to ``copy_suppression``.
All scores are returned so a reader can apply their own cut.  Causal effect is what the
circuit's patching scores add.  Name movers and S-inhibition heads both attend from END; the
paper separates them by output and by layer: S-inhibition stays a pattern test here.

Cost: two forward passes of B*T and of B*(2R+1) tokens, and per layer one ``ln1`` + ``W_V`` +
``W_O`` + ``ln_final`` + unembedding of ``2B`` name vectors per head (``2B*H`` rows of
``d_vocab`` logits a layer).  Memory: the patterns ``[B, H, T, T]`` of every layer and one
layer's ``[2B*H, d_vocab]`` logits.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from interp.models.hooks import head_label

ROLES = ("name_mover", "negative_name_mover", "copy_suppression", "s_inhibition", "induction", "duplicate_token", "previous_token")


@dataclass
class HeadRoles:
    """Per-head role scores and assigned roles."""

    scores: dict[str, torch.Tensor]
    """Role -> ``[L, H]`` mean attention on the diagnostic position (``negative_name_mover`` shares
    the END -> IO pattern of ``name_mover``, ``copy_suppression`` the END -> S2 one); also ``copy`` and ``negative_copy``, the ``[L, H]``
    copy scores (absent when the model's modules could not be read, see ``notes``)."""
    roles: dict[str, str]
    """Head (display form ``L3H2``, :func:`interp.models.hooks.head_label`) -> role, for heads with some
    score >= threshold."""
    notes: list[str] = field(default_factory=list)
    """Why a test was skipped, if one was."""


def _patterns(model, tokens, keep: str | None = None):
    """Attention patterns ``[L, B, H, T, T]`` of every layer (and the activation at hook ``keep``)."""
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens.to(next(model.parameters()).device),
                                        names_filter=lambda n: n.endswith("attn.hook_pattern") or n == keep)
    pats = torch.stack([cache[f"blocks.{l}.attn.hook_pattern"].float() for l in range(model.cfg.n_layers)])
    return (pats, cache[keep].float()) if keep else pats


def copy_scores(model, names: torch.Tensor, resid: torch.Tensor, k: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """Copy and negative copy scores ``([L, H], [L, H])`` of every head (see the module doc).

    ``names`` ``[N]`` are token ids, ``resid`` ``[N, d_model]`` the residual stream at those tokens
    after the first block.  Uses the bridge's own ``ln1``, ``attn.v``, ``attn.o``, ``ln_final`` and
    ``unembed`` modules, so norms, GQA and biases are the model's.  The value bias of a head is
    part of what it writes when it attends to one token; ``W_O``'s bias is not (it is written
    whatever the head does) and is left out."""
    cfg = model.cfg
    L, H, dh = cfg.n_layers, cfg.n_heads, cfg.d_head
    H_kv = getattr(cfg, "n_key_value_heads", None) or H
    dev = next(model.parameters()).device
    resid, names = resid.to(dev), names.to(dev)
    N = names.shape[0]
    pos, neg = torch.zeros(L, H), torch.zeros(L, H)
    with torch.no_grad():
        for l in range(L):
            blk = model.blocks[l]
            v = blk.attn.v(blk.ln1(resid))  # [N, H_kv * dh]
            if v.shape[-1] != H_kv * dh:
                raise ValueError(f"copy scores: blocks.{l}.attn.v gives width {v.shape[-1]}, expected {H_kv} x {dh}")
            v = v.reshape(N, H_kv, dh).repeat_interleave(H // H_kv, dim=1)  # [N, H, dh], query-head order
            eye = torch.eye(H, dtype=v.dtype, device=dev)[:, None, :, None]
            z = eye * v.transpose(0, 1)[:, :, None]  # [H, N, H, dh]: head h's slot only
            o0 = blk.attn.o(torch.zeros(1, H * dh, dtype=v.dtype, device=dev))
            out = blk.attn.o(z.reshape(H * N, H * dh)) - o0  # [H*N, d]: z_h W_O[h]
            for sign, dst in ((1.0, pos), (-1.0, neg)):
                logits = model.unembed(model.ln_final(sign * out)[:, None, :])[:, 0].reshape(H, N, -1)
                top = logits.topk(k, dim=-1).indices  # [H, N, k]
                dst[l] = (top == names[None, :, None]).any(-1).float().mean(-1).cpu()
    return pos, neg


def classify_heads(model, task, threshold: float = 0.3, copy_threshold: float = 0.5) -> HeadRoles:
    """Score every head on the pattern and copy tests and assign roles (see module doc; the repeated
    sequences: 8 of 20 random tokens, seed 0)."""
    rep_len, n_rep = 20, 8
    if not {"IO", "S1", "S2", "END"} <= set(task.positions):
        raise ValueError(f"head roles need IOI positions (IO, S1, S2, END); the task has "
                         f"{sorted(task.positions)}")
    pats, r0 = _patterns(model, task.clean, keep="blocks.0.hook_resid_post")  # [L, B, H, T, T], [B, T, d]
    b = torch.arange(task.n)
    end, io, s1, s2 = (task.positions[k] for k in ("END", "IO", "S1", "S2"))
    # the index tensors b and (end, io) are apart, so their [B] dimension comes first: [B, L, H]
    scores = {"name_mover": pats[:, b, :, end, io].mean(0), "s_inhibition": pats[:, b, :, end, s2].mean(0)}
    scores["negative_name_mover"] = scores["name_mover"].clone()
    scores["copy_suppression"] = scores["s_inhibition"].clone()
    notes: list[str] = []
    names = torch.cat([task.clean[b, io], task.clean[b, s1]])
    resid = torch.cat([r0[b, io], r0[b, s1]])
    try:
        scores["copy"], scores["negative_copy"] = copy_scores(model, names, resid)
    except (AttributeError, TypeError, RuntimeError, ValueError) as e:  # a bridge without separate v/o modules
        notes.append(f"copy scores skipped ({type(e).__name__}: {e}); name movers by attention pattern alone")
    g = torch.Generator().manual_seed(0)
    V = model.cfg.d_vocab
    r = torch.randint(min(1000, V // 4), V, (n_rep, rep_len), generator=g)
    bos = model.to_tokens("", prepend_bos=True)[:, :1].cpu().expand(n_rep, 1)
    toks = torch.cat([bos, r, r], dim=1)
    pr = _patterns(model, toks)  # [L, B, H, 2R+1, 2R+1]
    t2 = torch.arange(rep_len + 1, 2 * rep_len + 1)  # second copy
    t1 = torch.arange(2, rep_len + 1)  # first copy (excluding the first token)
    scores["induction"] = pr[:, :, :, t2[:-1], t2[:-1] - rep_len + 1].mean((1, 3))
    scores["duplicate_token"] = pr[:, :, :, t2, t2 - rep_len].mean((1, 3))
    scores["previous_token"] = pr[:, :, :, t1, t1 - 1].mean((1, 3))
    eligible = torch.stack([scores[k] for k in ROLES])  # [roles, L, H]
    if "copy" in scores:  # END -> IO attention is a name mover only if the head copies (or anti-copies)
        eligible[ROLES.index("name_mover")] *= scores["copy"] >= copy_threshold
        for role in ("negative_name_mover", "copy_suppression"):
            eligible[ROLES.index(role)] *= scores["negative_copy"] >= copy_threshold
    else:
        eligible[ROLES.index("negative_name_mover")] = eligible[ROLES.index("copy_suppression")] = 0.0
    best, idx = eligible.max(0)
    roles = {head_label(l, h): ROLES[int(idx[l, h])] for l, h in (best >= threshold).nonzero().tolist()}
    return HeadRoles(scores={k: v.cpu() for k, v in scores.items()}, roles=roles, notes=notes)
