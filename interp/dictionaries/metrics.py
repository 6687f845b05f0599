"""Evaluating a dictionary: reconstruction statistics on rows, and the model with it spliced in.

Row metrics (:func:`evaluate_rows`, SAELens ``evals.py`` definitions), over N rows x with
targets t (t = x for an SAE) and reconstructions t_hat:

* L0 = mean over rows of #(f > 0);
* FVU = sum ||t - t_hat||^2 / sum ||t - mean(t)||^2 (pooled over all rows; explained
  variance = 1 - FVU);
* dead fraction = fraction of latents that never fire on the N rows;
* mean cosine(t, t_hat);
* density of latent i = fraction of the N rows on which f_i > 0 (its histogram on a log scale
  is the usual picture of a dictionary's health: dead latents at 0, dense ones near 1).

Spliced metrics (:func:`spliced_ce`): a real forward pass of the model in which the
activation at ``hook_out`` is replaced, through a scoped hook, by the dictionary's output
computed from the activation at ``hook_in`` of the same forward pass (for a transcoder:
``blocks.L.ln2.hook_normalized`` -> ``blocks.L.hook_mlp_out``).  With next-token
cross-entropies L_orig (no change), L_dict (spliced) and L_zero (activation set to zero):

    CE recovered = (L_zero - L_dict) / (L_zero - L_orig)
    KL score     = (KL_zero - KL_dict) / KL_zero,   KL_* = mean_tokens KL(p_orig || p_*)

Position 0 is never replaced (its activations are attention-sink outliers that SAELens also
excludes by default).

:func:`evaluate_dictionary` runs both and returns the typed result
(:class:`interp.dictionaries.results.DictionaryEvaluation`, kind ``sae`` or ``transcoder``).

Memory: rows are streamed (one batch of ``batch_size`` rows and codes); the spliced metrics run one
forward pass of ``batch_size`` sequences with logits ``[batch, T, vocab]``, three times.
Time: one encode/decode per row, three model forwards per sequence.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from interp.models import model_name, resolve_hooks, scoped_hooks
from interp.models.hooks import save_hook
from interp.results import encode, versions

from .base import SparseCoder


@dataclass
class RowMetrics:
    """Reconstruction statistics of a dictionary on N activation rows."""

    n_rows: int
    """Rows evaluated."""
    l0: float
    """Mean number of active latents per row."""
    fvu: float
    """Fraction of variance unexplained (pooled)."""
    explained_variance: float
    """1 - FVU."""
    dead_fraction: float
    """Fraction of latents with no activation on these rows."""
    cosine: float
    """Mean cosine similarity between target and reconstruction."""
    mse: float
    """Mean over rows of the squared reconstruction error summed over features."""
    density: torch.Tensor
    """``[d_sae]`` fraction of the rows on which each latent fires (f > 0)."""


@dataclass
class SplicedMetrics:
    """Next-token loss of the model with the dictionary spliced in place of an activation."""

    n_tokens: int
    """Predicted tokens the losses average over."""
    ce_orig: float
    """Cross-entropy of the unmodified model (nats/token)."""
    ce_dict: float
    """Cross-entropy with the dictionary's reconstruction spliced in."""
    ce_zero: float
    """Cross-entropy with the activation zero-ablated."""
    ce_recovered: float
    """(ce_zero - ce_dict) / (ce_zero - ce_orig); 1 is perfect, 0 is as bad as zero ablation."""
    kl_dict: float
    """Mean KL(p_orig || p_dict) per token (nats)."""
    kl_zero: float
    """Mean KL(p_orig || p_zero) per token (nats)."""
    kl_score: float
    """(kl_zero - kl_dict) / kl_zero."""
    hook_in: str
    """Hook the dictionary read."""
    hook_out: str
    """Hook whose activation was replaced."""


@torch.no_grad()
def evaluate_rows(sae: SparseCoder, source, n_rows: int = 65536, batch_size: int = 4096) -> RowMetrics:
    """Row metrics on the first ``n_rows`` rows of ``source`` (a store or TensorSource), streamed."""
    c = sae.cfg
    device = sae.device
    hooks = [c.hook_in, c.target_hook] if c.is_transcoder else c.hook_in
    n, sq_err, s2, cos_sum = 0, 0.0, 0.0, 0.0
    s1 = torch.zeros(c.out_dim, dtype=torch.float64, device=device)
    fired = torch.zeros(c.d_sae, dtype=torch.long, device=device)
    for batch in source.batches(hooks, batch_size, shuffle=False, device=device, dtype=torch.float32):
        x, t = batch if c.is_transcoder else (batch, batch)
        take = min(x.shape[0], n_rows - n)
        x, t = x[:take], t[:take]
        code = sae.encode(x)
        t_hat = sae.decode_code(code)
        sq_err += float((t - t_hat).double().pow(2).sum())
        s1 += t.double().sum(0)
        s2 += float(t.double().pow(2).sum())
        cos_sum += float(F.cosine_similarity(t, t_hat, dim=-1).sum())
        fired += (code.acts > 0).sum(0)
        n += take
        if n >= n_rows:
            break
    if n == 0:
        raise ValueError("evaluate_rows: the source yielded no rows")
    f = sq_err / max(s2 - float(s1.pow(2).sum()) / n, 1e-30)
    return RowMetrics(n, float(fired.sum()) / n, f, 1 - f, float((fired == 0).float().mean()), cos_sum / n,
                      sq_err / n,
                      (fired.double() / n).float().cpu())


def splice_hooks(sae: SparseCoder, mode: str = "dict"):
    """Forward hooks ``[(name, fn)]`` that replace ``hook_out`` by the dictionary output (``mode='dict'``) or
    zeros, at every position but the first (BOS)."""
    c = sae.cfg
    hook_in, hook_out = c.hook_in, c.target_hook
    if mode not in ("dict", "zero"):
        raise ValueError(f"mode must be 'dict' or 'zero', got {mode!r}")
    store: dict = {}

    def replace(act, hook):
        if mode == "zero":
            new = torch.zeros_like(act)
        else:
            x = store.pop("x") if hook_in != hook_out else act
            if x.shape[-1] != c.d_in:
                raise ValueError(f"{hook_in} has width {x.shape[-1]}, the dictionary expects d_in={c.d_in}")
            new = sae(x.reshape(-1, c.d_in)).reshape(*act.shape[:-1], c.out_dim).to(act.dtype)
        return torch.cat([act[:, :1], new[:, 1:]], dim=1)

    if mode == "dict" and hook_in != hook_out:
        return [(hook_in, save_hook(store, "x")), (hook_out, replace)]
    return [(hook_out, replace)]


@torch.no_grad()
def spliced_ce(model, sae: SparseCoder, tokens: torch.Tensor, batch_size: int = 8) -> SplicedMetrics:
    """CE loss recovered and KL with ``sae`` spliced into ``model`` (see module docstring).

    ``tokens``: LongTensor ``[n_seq, T]`` (BOS first if the model expects one).
    """
    if tokens.ndim != 2 or tokens.shape[1] < 2:
        raise ValueError(f"tokens must be [n_sequences, T>=2], got {tuple(tokens.shape)}")
    resolve_hooks(model, [sae.cfg.hook_in, sae.cfg.target_hook])  # clear error for a wrong model
    sae = sae.to(next(model.parameters()).device)
    tot = dict.fromkeys(("orig", "dict", "zero", "kl_orig", "kl_dict", "kl_zero"), 0.0)
    for s in range(0, tokens.shape[0], batch_size):
        tk = tokens[s:s + batch_size].to(sae.device)
        logp = {}
        for mode in ("orig", "dict", "zero"):
            with scoped_hooks(model, fwd=splice_hooks(sae, mode) if mode != "orig" else []):
                logp[mode] = model(tk, return_type="logits")[:, :-1].float().log_softmax(-1)
            tot[mode] -= float(logp[mode].gather(-1, tk[:, 1:, None]).sum())
            # KL(p_orig || p_mode) summed over tokens (0 for orig itself)
            tot[f"kl_{mode}"] += float(F.kl_div(logp[mode], logp["orig"], reduction="sum", log_target=True))
    n = tokens[:, 1:].numel()
    m = {k: v / n for k, v in tot.items()}
    denom = m["zero"] - m["orig"]
    rec = (m["zero"] - m["dict"]) / denom if abs(denom) > 1e-12 else float("nan")
    kls = (m["kl_zero"] - m["kl_dict"]) / m["kl_zero"] if m["kl_zero"] > 1e-12 else float("nan")
    return SplicedMetrics(n, m["orig"], m["dict"], m["zero"], rec, m["kl_dict"], m["kl_zero"], kls,
                          sae.cfg.hook_in, sae.cfg.target_hook)


def sequences_from_store(store, n_sequences: int) -> torch.Tensor:
    """The first ``n_sequences`` complete token sequences of a store, ``[n, T]`` (rows grouped by sequence)."""
    seq_pos = store.seq_pos[: min(store.n_rows, n_sequences * 4096)]
    toks = store.tokens[: seq_pos.shape[0]].long()
    seq_ids = torch.unique_consecutive(seq_pos[:, 0])[:n_sequences]
    out = []
    for sid in seq_ids.tolist():
        rows = seq_pos[:, 0] == sid
        out.append(toks[rows][seq_pos[rows, 1].argsort()])  # in position order
    T = min(map(len, out))
    if T < 2:
        raise ValueError("the store's sequences are too short (< 2 tokens) for a next-token loss")
    return torch.stack([t[:T] for t in out])


def evaluate_dictionary(sae: SparseCoder, store, model=None, n_tokens: int = 65536, n: int = 32,
                        sae_path: str = ""):
    """Row metrics on ``n_tokens`` store rows and, with ``model`` and ``n > 0``, the spliced CE / KL on the
    store's first ``n`` sequences: a :class:`~interp.dictionaries.results.DictionaryEvaluation`
    (a :class:`~interp.dictionaries.results.TranscoderEvaluation` for a transcoder)."""
    from .results import DictionaryEvaluation, TranscoderEvaluation

    t0 = time.perf_counter()
    rows = evaluate_rows(sae, store, n_rows=n_tokens)
    spliced = spliced_ce(model, sae, sequences_from_store(store, n)) if model is not None and n > 0 else None
    manifest = getattr(store, "manifest", {})
    cls = TranscoderEvaluation if sae.cfg.is_transcoder else DictionaryEvaluation
    return cls(sae_path=str(sae_path), sae_config=encode(sae.cfg), store=str(getattr(store, "path", "")),
               model=model_name(model) if model is not None else str(manifest.get("model", "")),
               rows=rows, spliced=spliced, config={"n_tokens": n_tokens, "n": n},
               meta={"seconds": time.perf_counter() - t0, "versions": versions()})
