"""SNMF vs difference-in-means vs a TopK SAE on the small offline concept set.

Shafran et al. 2025 (arXiv 2506.10920) compare SNMF features with DiffMeans and SAEs on
concept detection and steering judged by an LLM.  Offline, we score the same three kinds
of direction in ``blocks.L.mlp.hook_post`` space on :mod:`interp.decompositions.concepts`:

1. Activations of every (non-BOS) token of the training sentences (8 per concept + 8
   neutral) are collected once.  Each method gets the same rows:
   * **SNMF**: fit ``A ~ Z Y``; per concept the feature with the largest standardised
     difference of mean ``Y`` between the concept's tokens and all other tokens; direction ``z``.
   * **DiffMeans**: mean activation of the concept's tokens minus mean of the other tokens.
   * **SAE** (TopK, :mod:`interp.dictionaries`): trained on the same rows; the latent chosen
     like SNMF's; direction = its decoder row.
2. **Detection** on the held-out sentences (4 per concept + 4 neutral): sentence score
   ``max_tok cos(direction, a_tok)``, ROC-AUC of the concept's sentences vs all others.
3. **Steering**: ``alpha`` calibrated to next-token KL ``kl_target`` on ``"I think that"``
   (both signs; the sign that raises the concept words more is kept); score = change in
   mean log-probability of the concept's words (:data:`CONCEPTS` ``words``) at that KL.
   This is a proxy for the paper's LLM judge, and says so.

Cost: one forward pass over ~90 sentences, one SNMF fit, one small SAE fit, one batched
steering calibration (``3 x n_concepts x 2`` rows).
"""

from __future__ import annotations

import time

import torch

from interp.models.hooks import mlp_post_hook

from .concepts import CONCEPTS, concept_split
from .snmf import SNMFConfig, collect_activations, fit_snmf


def _pick(scores: torch.Tensor, labels: torch.Tensor, concept: int) -> int:
    """Feature with the largest standardised mean difference (concept tokens vs the rest)."""
    a, b = scores[labels == concept], scores[labels != concept]
    d = (a.mean(0) - b.mean(0)) / (scores.std(0) + 1e-8)
    return int(d.argmax())


def compare_on_concepts(model, layer: int, snmf_cfg: SNMFConfig | None = None, kl_target: float = 0.25,
                        prompt: str = "I think that") -> dict:
    """Detection AUC and steering proxy for SNMF (``snmf_cfg``; default k=30), DiffMeans and a TopK SAE of
    4k latents (300 steps of 256 rows)."""
    from sklearn.metrics import roc_auc_score

    from interp.dictionaries import SAEConfig, TensorSource, TrainConfig, train_sae

    from .snmf_features import calibrate_steering, steered_logits  # snmf_features imports this module

    t0 = time.perf_counter()
    hook = mlp_post_hook(layer)
    names = list(CONCEPTS)
    (tr_texts, tr_lab), (te_texts, te_lab) = concept_split(slice(8)), concept_split(slice(8, None))
    acts_tr = collect_activations(model, tr_texts, hook)
    acts_te = collect_activations(model, te_texts, hook)
    tok_lab = tr_lab[acts_tr.seq_pos[:, 0]]
    X = acts_tr.X

    cfg = snmf_cfg or SNMFConfig(k=30, max_iter=500, patience=100)
    res = fit_snmf(X, cfg)
    info = {"rows": int(X.shape[0]), "hook": hook, "snmf_rel_loss": res.rel_loss}
    # one direction per concept: SNMF's most concept-specific feature, and the difference of means
    directions = {"snmf": [res.Z[:, _pick(res.Y.T.cpu(), tok_lab, c)].cpu() for c in range(len(names))],
                  "diffmeans": [X[tok_lab == c].mean(0) - X[tok_lab != c].mean(0) for c in range(len(names))]}
    # a TopK SAE on the same rows
    scfg = SAEConfig(arch="topk", d_in=X.shape[1], d_sae=4 * cfg.k, hook_in=hook, k=8)
    tcfg = TrainConfig(n_tokens=300 * 256, batch_size=256, lr=1e-3, warmup_steps=20, progress=False,
                       b_dec_init="mean", init_rows=X.shape[0], dead_after_tokens=10 * X.shape[0])
    tr = train_sae(TensorSource({hook: X}), scfg, tcfg)
    codes = tr.sae.encode(X.to(tr.sae.device)).acts.detach().cpu()
    directions["sae"] = [tr.sae.W_dec[_pick(codes, tok_lab, c)].detach().cpu() for c in range(len(names))]
    info["sae"] = {"d_sae": 4 * cfg.k, "k": 8, "fvu": tr.fvu, "l0": tr.l0, "dead": tr.dead_fraction}
    # detection: a sentence's score is the largest cosine of one of its tokens with the direction
    X_te = torch.nn.functional.normalize(acts_te.X, dim=1)
    rows = []
    for m, dirs in directions.items():
        for c, name in enumerate(names):
            cos = X_te @ torch.nn.functional.normalize(dirs[c].float(), dim=0)
            s = torch.full((len(te_texts),), -2.0).scatter_reduce(0, acts_te.seq_pos[:, 0], cos, "amax")
            auc = roc_auc_score((te_lab == c).numpy(), s.numpy())
            rows.append({"method": m, "concept": name, "auc": round(float(auc), 3)})
    # steering at matched KL, both signs, one batch; rows (direction, sign) in calibrate_steering's order
    D = torch.stack([d for m in directions for d in directions[m]])  # [M*C, d]
    cal = calibrate_steering(model, layer, D, prompt, targets=(kl_target,))
    U = torch.nn.functional.normalize(torch.stack([D, -D], 1).flatten(0, 1).float(), dim=-1)
    toks = model.to_tokens(prompt)[0]
    base = torch.log_softmax(steered_logits(model, hook, U[:1], torch.zeros(1), toks)[0, -1].float(), -1)
    lp = torch.log_softmax(steered_logits(model, hook, U, cal.alpha.flatten(), toks)[:, -1].float(), -1)
    for r, row in enumerate(rows):
        words = CONCEPTS[row["concept"]]["words"]
        ids = sorted({int(model.to_tokens(w, prepend_bos=False)[0, 0]) for w in words})  # first token of each
        gains = (lp[2 * r:2 * r + 2, ids] - base[ids]).mean(-1)  # signs +, -
        best = int(gains.argmax())
        row.update(steer_gain=round(float(gains[best]), 3), sign="+-"[best],
                   alpha=round(float(cal.alpha[r, best, 0]), 3), kl=round(float(cal.kl[r, best, 0]), 4))
    summary = {m: {f"mean_{k}": round(sum(r[k] for r in rows if r["method"] == m) / len(names), 3)
                   for k in ("auc", "steer_gain")} for m in directions}
    return {"rows": rows, "summary": summary, "info": info, "kl_target": kl_target, "prompt": prompt,
            "seconds": time.perf_counter() - t0,
            "note": "steer_gain = change in mean log-prob of the concept's words at the calibrated KL "
                    "(an offline proxy for the paper's LLM judge)"}
