"""Massive activations: detection in the residual stream, the tokens that carry them, and ablation.

Definition (Sun et al. 2024, "Massive Activations in Large Language Models", arXiv 2402.17762;
docs/methods.md, Massive activations): a scalar a of a residual-stream state h^ℓ (``blocks.ℓ.hook_resid_post``) is
*massive* when |a| > ``abs_threshold`` (100) and |a| >= ``ratio_threshold`` (1000) times the
median |h^ℓ| of that sequence at that layer (median over all positions and dimensions).  They sit
in a few fixed dimensions, on the first token and on the first delimiter ("." or "\\n").

Algorithm:

1. :func:`massive_stats` runs one hooked forward pass per batch; each layer's hook reduces
   |h| per sequence to its median and top-1, records the per-layer ratio r_ℓ = top-1 / median
   (the quantity whose training dynamics :mod:`interp.phenomena.dynamics` fits) and lists the
   entries that pass both thresholds with layer, position, dimension, value and token kind
   (``first``, ``delimiter``, ``other``).  The same per-sequence detector runs on stored rows
   (:func:`massive_stats_from_store`).
2. :func:`massive_ablation` re-runs the inputs with the massive entries of the layer where
   they appear (the earliest reaching half the largest magnitude, or a chosen hook) set to zero,
   set to the mean value of their token kind, and, as a control, the same number of random
   non-massive entries of that layer set to zero; all variants run batched in one forward pass
   and are compared with the clean run by loss and next-token KL(clean || variant).  Sun et al.
   find zero breaks the model and mean does not.  The means are taken per token kind and per
   dimension (one for first-token entries, one for delimiter entries; their values differ in
   sign and size, e.g. Llama-2-7B layer 2: 767.6 vs 2546.8 at dim 2533) over the massive entries
   of *held-out* sequences (``heldout``, rows not in the analysed batch), so the variant does not
   restore each entry from its own value.

Memory: one layer's ``[B, T, d_model]`` residual at a time inside a hook, plus the detected
entries (capped by ``max_entries``).  Compute: one forward pass (detection), one pass over the
held-out rows (the means) and one forward pass on a 4x batch (ablation).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from interp.models import resolve_hooks, scoped_hooks

from .sinks import check_tokens

DELIMITER_CHARS = set(".,;:!?\n\t\r ")


@dataclass(frozen=True)
class MassiveConfig:
    """Thresholds and scope of massive-activation detection."""

    abs_threshold: float = 100.0
    """An entry must exceed this absolute magnitude."""
    ratio_threshold: float = 1000.0
    """... and be at least this many times the layer's median |h| for that sequence."""
    hooks: str = "blocks.*.hook_resid_post"
    """Glob (TransformerLens names) of the residual states to scan."""
    batch_size: int = 8
    """Sequences per forward pass."""
    max_entries: int = 5000
    """Detected entries kept in the result (all are counted)."""

    def __post_init__(self):
        if self.abs_threshold < 0 or self.ratio_threshold < 0:
            raise ValueError(f"thresholds must be >= 0, got abs={self.abs_threshold}, ratio={self.ratio_threshold}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")


@dataclass
class MassiveEntry:
    """One massive scalar."""

    hook: str
    """TransformerLens hook name of the residual state."""
    layer: int
    """Layer index (from the hook name)."""
    seq: int
    """Sequence index in the input batch."""
    pos: int
    """Token position."""
    dim: int
    """Residual dimension."""
    value: float
    """Signed value of the activation."""
    ratio: float
    """|value| / median |h| of that sequence and layer."""
    token: str
    """The token at ``pos`` (decoded)."""
    kind: str
    """``first`` (position 0), ``delimiter`` (punctuation / whitespace token) or ``other``."""


@dataclass
class MassiveStats:
    """Massive activations of a model on a batch of sequences."""

    hooks: list[str]
    """Scanned hooks, in layer order."""
    top1: torch.Tensor
    """[L] mean over sequences of max |h^ℓ|."""
    median: torch.Tensor
    """[L] mean over sequences of median |h^ℓ|."""
    ratio: torch.Tensor
    """[L] mean over sequences of (max |h^ℓ|) / (median |h^ℓ|): r_ℓ of Gallego-Feliciano et al."""
    top_dim: list[int]
    """Per layer, the dimension that holds the max |h^ℓ| most often."""
    entries: list[MassiveEntry]
    """Detected entries (the first ``max_entries``)."""
    n_entries: int
    """All detected entries."""
    config: MassiveConfig = field(default_factory=MassiveConfig)
    """Thresholds used."""

    def summary(self) -> list[dict]:
        """One row per (layer, dim, token kind): count and mean value of the detected entries."""
        groups: dict[tuple, list[float]] = {}
        for e in self.entries:
            groups.setdefault((e.layer, e.dim, e.kind), []).append(e.value)
        return [
            {"layer": L, "dim": d, "kind": k, "count": len(v), "mean_value": sum(v) / len(v),
             "max_abs": max(abs(x) for x in v)}
            for (L, d, k), v in sorted(groups.items())
        ]

    def kinds(self) -> dict[str, int]:
        """How many detected entries sit on the first token, on delimiters and on other tokens."""
        out = {"first": 0, "delimiter": 0, "other": 0}
        for e in self.entries:
            out[e.kind] += 1
        return out

    def to_json(self) -> dict:
        return {
            "hooks": self.hooks, "top1": self.top1.tolist(), "median": self.median.tolist(),
            "ratio": self.ratio.tolist(), "top_dim": self.top_dim, "n_entries": self.n_entries,
            "kinds": self.kinds(), "summary": self.summary(), "config": asdict(self.config),
            "entries": [asdict(e) for e in self.entries[:200]],
        }


def token_kind(pos: int, text: str) -> str:
    """``first`` for position 0, ``delimiter`` for tokens made only of punctuation/whitespace."""
    if pos == 0:
        return "first"
    if text and all(c in DELIMITER_CHARS for c in text):
        return "delimiter"
    return "other"


def _layer_of(hook: str) -> int:
    m = re.match(r"blocks\.(\d+)\.", hook)
    return int(m.group(1)) if m else -1


class _Detector:
    """Per-sequence detection shared by the live and the store path."""

    def __init__(self, hooks, cfg: MassiveConfig, decode):
        self.hooks, self.cfg, self.decode = hooks, cfg, decode
        self.top1 = {h: [] for h in hooks}
        self.median = {h: [] for h in hooks}
        self.argdim = {h: [] for h in hooks}
        self.entries: list[MassiveEntry] = []
        self.n_entries = 0

    def add(self, hook: str, h: torch.Tensor, seq_ids: torch.Tensor, tokens: torch.Tensor) -> None:
        """``h [b, T, d]`` residual states of sequences ``seq_ids [b]`` with token ids ``tokens [b, T]``."""
        a = h.detach().float().abs()
        b = a.shape[0]
        flat = a.reshape(b, -1)
        med = flat.median(dim=1).values  # [b]
        top, arg = flat.max(dim=1)
        self.top1[hook].append(top.cpu())
        self.median[hook].append(med.cpu())
        self.argdim[hook].append((arg % a.shape[-1]).cpu())
        mask = (a > self.cfg.abs_threshold) & (a >= self.cfg.ratio_threshold * med[:, None, None])
        idx = mask.nonzero().cpu()
        self.n_entries += len(idx)
        room = self.cfg.max_entries - len(self.entries)
        if room <= 0 or not len(idx):
            return
        idx = idx[:room]
        vals = h.detach().float()[idx[:, 0], idx[:, 1], idx[:, 2]].cpu()
        meds = med.cpu()[idx[:, 0]]
        for (i, p, d), v, m in zip(idx.tolist(), vals.tolist(), meds.tolist()):
            text = self.decode(int(tokens[i, p]))
            self.entries.append(MassiveEntry(hook, _layer_of(hook), int(seq_ids[i]), p, d, v,
                                             abs(v) / max(m, 1e-30), text, token_kind(p, text)))

    def result(self) -> MassiveStats:
        top1 = torch.stack([torch.cat(self.top1[h]).mean() for h in self.hooks])
        med = torch.stack([torch.cat(self.median[h]).mean() for h in self.hooks])
        ratio = torch.stack([(torch.cat(self.top1[h]) / torch.cat(self.median[h]).clamp_min(1e-30)).mean()
                             for h in self.hooks])
        top_dim = [int(torch.cat(self.argdim[h]).mode().values) for h in self.hooks]
        return MassiveStats(list(self.hooks), top1, med, ratio, top_dim, self.entries, self.n_entries, self.cfg)


def _decoder(tokenizer):
    if tokenizer is None:
        return lambda i: f"<{i}>"
    cache: dict[int, str] = {}

    def decode(i: int) -> str:
        if i not in cache:
            cache[i] = tokenizer.decode([i])
        return cache[i]
    return decode


@torch.no_grad()
def massive_stats(model, tokens: torch.Tensor, config: MassiveConfig | None = None) -> MassiveStats:
    """Detect massive activations of ``model`` on ``tokens [B, T]`` (one hooked pass per batch)."""
    cfg = config or MassiveConfig()
    tokens = check_tokens(tokens)
    hooks = resolve_hooks(model, cfg.hooks)
    det = _Detector(hooks, cfg, _decoder(getattr(model, "tokenizer", None)))
    device = next(model.parameters()).device
    state = {}

    def make(name):
        def fn(h, hook):
            det.add(name, h, state["ids"], state["tokens"])
            return None
        return fn

    with scoped_hooks(model, fwd=[(h, make(h)) for h in hooks]):
        for start in range(0, tokens.shape[0], cfg.batch_size):
            chunk = tokens[start:start + cfg.batch_size]
            state["ids"], state["tokens"] = torch.arange(start, start + len(chunk)), chunk
            model(chunk.to(device))
    return det.result()


def massive_stats_from_store(store, config: MassiveConfig | None = None, tokenizer=None,
                             batch_size: int = 4096) -> MassiveStats:
    """Detect massive activations from an ``interp.store.ActivationStore`` (rows + ``seq_pos``).

    Rows of one sequence must be contiguous in the store's order (they are, as written by
    ``cache_activations``); each sequence is reassembled and passed to the same detector as
    :func:`massive_stats`.
    """
    import fnmatch

    cfg = config or MassiveConfig()
    hooks = [h for h in store.hooks if fnmatch.fnmatchcase(h, cfg.hooks)]
    if not hooks:
        raise ValueError(f"the store holds no hook matching {cfg.hooks!r}; it holds {store.hooks}")
    hooks.sort(key=_layer_of)
    det = _Detector(hooks, cfg, _decoder(tokenizer))
    seq_pos = torch.as_tensor(np.asarray(store.seq_pos)).long()
    all_tokens = torch.as_tensor(np.asarray(store.tokens)).long()
    for hook in hooks:
        buf, start, cur = [], 0, None
        seen = set()

        def flush():
            if buf:
                rows = torch.cat([r for r, _ in buf])
                idx = torch.cat([i for _, i in buf])
                order = seq_pos[idx, 1].argsort()
                det.add(hook, rows[order][None], torch.tensor([cur]), all_tokens[idx][order][None])

        for rows in store.stream(hook, batch_size):
            n = rows.shape[0]
            ids = torch.arange(start, start + n)
            seqs = seq_pos[ids, 0]
            for s in torch.unique_consecutive(seqs).tolist():
                m = seqs == s
                if s != cur:
                    flush()
                    if s in seen:
                        raise ValueError(f"sequence {s} is not contiguous in the store; cannot compute its median")
                    seen.add(s)
                    buf, cur = [], s
                buf.append((rows[m], ids[m]))
            start += n
        flush()
    return det.result()


KINDS = ("first", "delimiter", "other")


@dataclass
class MassiveAblation:
    """Effect of overwriting the massive activations at the layer where they first appear."""

    hook: str
    """Residual hook where the entries were overwritten."""
    dims: list[int]
    """Dimensions whose massive entries were overwritten."""
    mean_values: dict[str, list[float | None]]
    """Per token kind (``first``, ``delimiter``, ``other``), the per-dimension mean (aligned with
    ``dims``) of the massive entries of that kind in the held-out rows, used by the ``mean``
    variant; ``None`` where the held-out rows have no such entry (no analysed entry needed it)."""
    n_heldout: dict[str, int]
    """Per token kind, the held-out massive entries (at ``dims``) the means were taken over."""
    n_overwritten: int
    """Entries overwritten per variant (summed over the batch)."""
    n_by_kind: dict[str, int]
    """``n_overwritten`` split by token kind."""
    loss: dict[str, float]
    """Mean next-token loss (nats) for ``clean``, ``zero``, ``mean``, ``random_zero``."""
    kl: dict[str, float]
    """Mean KL(clean || variant) of the next-token distributions (nats)."""

    def to_json(self) -> dict:
        return asdict(self)


def _next_token_loss(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """[B] mean cross-entropy of predicting tokens[:, 1:] (nats)."""
    lp = logits[:, :-1].float().log_softmax(-1)
    return -lp.gather(-1, tokens[:, 1:, None]).squeeze(-1).mean(-1)


def kind_codes(tokens: torch.Tensor, decode) -> torch.Tensor:
    """``[B, T]`` index into :data:`KINDS` of every position (:func:`token_kind` of its decoded token)."""
    cache: dict[int, int] = {}
    out = torch.empty(tokens.shape, dtype=torch.long)
    for (b, p), i in zip(((b, p) for b in range(tokens.shape[0]) for p in range(tokens.shape[1])),
                         tokens.reshape(-1).tolist()):
        if p == 0:
            out[b, p] = 0
            continue
        if i not in cache:
            cache[i] = KINDS.index(token_kind(p, decode(i)))
        out[b, p] = cache[i]
    return out


def _massive_mask(h: torch.Tensor, cfg: MassiveConfig, dim_mask: torch.Tensor) -> torch.Tensor:
    """``[B, T, d]`` bool: the entries of ``h`` that pass both thresholds, restricted to ``dim_mask``."""
    a = h.abs().float()
    med = a.reshape(a.shape[0], -1).median(dim=1).values
    return (a > cfg.abs_threshold) & (a >= cfg.ratio_threshold * med[:, None, None]) & dim_mask


@torch.no_grad()
def heldout_kind_means(model, heldout: torch.Tensor, hook: str, dims: list[int], cfg: MassiveConfig,
                       batch_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per token kind and dimension, the mean of the massive entries of ``heldout [N, T]`` at ``hook``.

    Returns ``(means [3, d_model], present [3, d_model] bool, counts [3])`` with rows in
    :data:`KINDS` order; only the dimensions ``dims`` are considered.
    """
    heldout = check_tokens(heldout)
    device = next(model.parameters()).device
    d_model = int(model.cfg.d_model)
    dim_mask = torch.zeros(d_model, dtype=torch.bool)
    dim_mask[dims] = True
    codes = kind_codes(heldout, _decoder(getattr(model, "tokenizer", None)))
    total = torch.zeros(len(KINDS), d_model, dtype=torch.float64)
    count = torch.zeros(len(KINDS), d_model, dtype=torch.float64)
    bs = batch_size or cfg.batch_size
    state = {}

    def fn(h, hook):
        hc = h.detach().float().cpu()
        m = _massive_mask(hc, cfg, dim_mask)
        onehot = torch.nn.functional.one_hot(state["codes"], len(KINDS)).double()  # [b, T, 3]
        total.add_(torch.einsum("btk,btd->kd", onehot, torch.where(m, hc, 0).double()))
        count.add_(torch.einsum("btk,btd->kd", onehot, m.double()))
        return None

    with scoped_hooks(model, fwd=[(hook, fn)]):
        for s in range(0, heldout.shape[0], bs):
            state["codes"] = codes[s:s + bs]
            model(heldout[s:s + bs].to(device))
    present = count > 0
    means = torch.where(present, total / count.clamp_min(1), 0.0).float()
    return means, present, count[:, dims].sum(1).long()


@torch.no_grad()
def massive_ablation(model, tokens: torch.Tensor, stats: MassiveStats, seed: int = 0,
                     hook: str | None = None, *, heldout: torch.Tensor | None = None) -> MassiveAblation:
    """Zero vs per-kind mean vs random-zero control of the massive entries of one layer, batched.

    ``hook``: the residual hook to intervene at; default the earliest hook where the massive
    activations reach half their largest magnitude (where the big ones *appear*: in
    SmolLM2-135M a few delimiter entries of ~800 show up at layer 2, the first-token entries of
    ~25,000 at layer 11).  The entries to overwrite are found again on ``tokens`` with
    ``stats.config`` thresholds, restricted to the dimensions detected at that hook.

    ``heldout``: token rows (``[N', T']``, none equal to a row of ``tokens``) from which the
    ``mean`` variant's values are taken: each massive entry of ``tokens`` is set to the mean of
    the held-out massive entries of its token kind (first token / delimiter / other) at its
    dimension.  Raises if ``heldout`` is missing, overlaps ``tokens``, or lacks a kind (e.g. a
    delimiter) that the analysed entries need.
    """
    tokens = check_tokens(tokens)
    if not stats.entries:
        raise ValueError("no massive activations were detected, so there is nothing to ablate "
                         f"(thresholds abs>{stats.config.abs_threshold}, ratio>={stats.config.ratio_threshold})")
    if heldout is None:
        raise ValueError("massive_ablation needs heldout=: token rows not in `tokens` from which the 'mean' "
                         "variant takes one mean per token kind (first token, delimiter); e.g. a separate "
                         "slice of the corpus")
    heldout = check_tokens(heldout)
    if heldout.shape[1] == tokens.shape[1]:
        same = (heldout[:, None, :] == tokens[None, :, :]).all(-1)  # [N', B]
        if bool(same.any()):
            i, j = same.nonzero()[0].tolist()
            raise ValueError(f"heldout row {i} equals analysed row {j}: held-out rows must not be in the analysed batch")
    if hook is None:
        big = max(abs(e.value) for e in stats.entries)
        first_layer = min(e.layer for e in stats.entries if abs(e.value) >= 0.5 * big)
        hook_name = next(e.hook for e in stats.entries if e.layer == first_layer)
    elif hook not in {e.hook for e in stats.entries}:
        raise ValueError(f"no massive activations were detected at {hook!r}; they are at "
                         f"{sorted({e.hook for e in stats.entries}, key=_layer_of)}")
    else:
        hook_name = hook
    dims = sorted({e.dim for e in stats.entries if e.hook == hook_name})
    cfg = stats.config
    means, present, n_held = heldout_kind_means(model, heldout, hook_name, dims, cfg)
    device = next(model.parameters()).device
    B = tokens.shape[0]
    variants = ["clean", "zero", "mean", "random_zero"]
    dim_mask = torch.zeros(int(model.cfg.d_model), dtype=torch.bool, device=device)
    dim_mask[dims] = True
    codes = kind_codes(tokens, _decoder(getattr(model, "tokenizer", None))).to(device)
    means, present = means.to(device), present.to(device)
    gen = torch.Generator().manual_seed(seed)
    info = {}

    def fn(h, hook):  # h: [4B, T, d]
        clean = h[:B]
        mask = _massive_mask(clean, cfg, dim_mask)
        n = int(mask.sum())
        info["n"] = n
        info["by_kind"] = {k: int((mask & (codes == i)[..., None]).sum()) for i, k in enumerate(KINDS)}
        missing = mask & ~present[codes]  # massive entries whose kind/dim has no held-out mean
        if bool(missing.any()):
            b, p, d = missing.nonzero()[0].tolist()
            k = KINDS[int(codes[b, p])]
            raise ValueError(f"the held-out rows have no massive {k!r} entry at {hook_name} dim {d} (the analysed "
                             f"batch has one at sequence {b}, position {p}), so there is no held-out {k} mean; "
                             f"give held-out text that contains {'a delimiter' if k == 'delimiter' else k + ' tokens'} "
                             "carrying the massive activation")
        # control: as many random entries of the same layer that are not massive
        free = (~mask).reshape(-1).nonzero().squeeze(-1).cpu()
        pick = free[torch.randperm(len(free), generator=gen)[:n]].to(h.device)
        rmask = torch.zeros(mask.numel(), dtype=torch.bool, device=h.device)
        rmask[pick] = True
        rmask = rmask.view_as(mask)
        h = h.clone()
        h[B:2 * B] = torch.where(mask, torch.zeros_like(clean), clean)
        h[2 * B:3 * B] = torch.where(mask, means[codes].to(h.dtype), clean)  # [B, T, d]: each entry's kind mean
        h[3 * B:] = torch.where(rmask, torch.zeros_like(clean), clean)
        return h

    batch = tokens.to(device).repeat(len(variants), 1)
    with scoped_hooks(model, fwd=[(hook_name, fn)]):
        logits = model(batch)
    loss = _next_token_loss(logits, batch[:, :]).view(len(variants), B).mean(1)
    lp = logits[:, :-1].float().log_softmax(-1).view(len(variants), B, tokens.shape[1] - 1, -1)
    kl = (lp[0].exp() * (lp[0] - lp)).sum(-1).mean((1, 2))
    mean_values = {k: [float(means[i, d]) if bool(present[i, d]) else None for d in dims] for i, k in enumerate(KINDS)}
    return MassiveAblation(hook_name, dims, mean_values, {k: int(n_held[i]) for i, k in enumerate(KINDS)}, info["n"],
                           info["by_kind"], {v: float(x) for v, x in zip(variants, loss)},
                           {v: float(x) for v, x in zip(variants, kl)})
