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

:func:`massive_run` does both on the built-in domains (or a Bigram-Backcopy task), plus the
dynamics over training checkpoints, and returns a typed :class:`MassiveResult` (kind ``massive``,
what ``interp massive`` writes).

Memory: one layer's ``[B, T, d_model]`` residual at a time inside a hook, plus the detected
entries (capped by ``max_entries``).  Compute: one forward pass (detection), one pass over the
held-out rows (the means) and one forward pass on a 4x batch (ablation).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

import torch

from interp.models.hooks import layer_of, resolve_hooks, scoped_hooks
from interp.reports import Report
from interp.results import Result, check_fields, register

from .domains import default_domains, domain_tokens
from .dynamics import CheckpointDynamics, checkpoint_dynamics, list_checkpoints
from .sinks import check_tokens, decoder, next_token_loss, provenance, store_sequences

DELIMITER_CHARS = set(".,;:!?\n\t\r ")
KINDS = ("first", "delimiter", "other")


KIND_WORDS = {"first": "on the first token", "delimiter": "on delimiters", "other": "elsewhere"}
"""How a token kind reads in a caption."""


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
        check_fields(self, at_least={"abs_threshold": 0, "ratio_threshold": 0, "batch_size": 1})


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

    def table(self) -> list[dict]:
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
        return {k: sum(e.kind == k for e in self.entries) for k in KINDS}


def token_kind(pos: int, text: str) -> str:
    """``first`` for position 0, ``delimiter`` for tokens made only of punctuation/whitespace."""
    if pos == 0:
        return "first"
    if text and set(text) <= DELIMITER_CHARS:
        return "delimiter"
    return "other"


def _massive(h: torch.Tensor, cfg: MassiveConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(|h| [b, T, d], median |h| per sequence [b], mask [b, T, d])`` of residual states ``h``: the mask
    holds the entries that pass both thresholds."""
    a = h.detach().float().abs()
    med = a.flatten(1).median(dim=1).values
    return a, med, (a > cfg.abs_threshold) & (a >= cfg.ratio_threshold * med[:, None, None])


class _Detector:
    """Per-sequence detection shared by the live and the store path."""

    def __init__(self, hooks, cfg: MassiveConfig, decode):
        self.hooks, self.cfg, self.decode = hooks, cfg, decode
        self.per_seq = {h: [] for h in hooks}  # per batch: (top-1 [b], median [b], top-1 dimension [b])
        self.entries: list[MassiveEntry] = []
        self.n_entries = 0

    def add(self, hook: str, h: torch.Tensor, seq_ids: torch.Tensor, tokens: torch.Tensor) -> None:
        """``h [b, T, d]`` residual states of sequences ``seq_ids [b]`` with token ids ``tokens [b, T]``."""
        a, med, mask = _massive(h, self.cfg)
        top, arg = a.flatten(1).max(dim=1)
        self.per_seq[hook].append((top.cpu(), med.cpu(), (arg % a.shape[-1]).cpu()))
        idx = mask.nonzero().cpu()
        self.n_entries += len(idx)
        idx = idx[:max(self.cfg.max_entries - len(self.entries), 0)]
        vals = h.detach().float()[idx[:, 0], idx[:, 1], idx[:, 2]].cpu()
        for (i, p, d), v, m in zip(idx.tolist(), vals.tolist(), med.cpu()[idx[:, 0]].tolist()):
            text = self.decode(int(tokens[i, p]))
            self.entries.append(MassiveEntry(hook, layer_of(hook), int(seq_ids[i]), p, d, v,
                                             abs(v) / max(m, 1e-30), text, token_kind(p, text)))

    def result(self) -> MassiveStats:
        per_hook = [[torch.cat(x) for x in zip(*self.per_seq[h])] for h in self.hooks]
        top, med, dim = (torch.stack(x) for x in zip(*per_hook))  # [hooks, sequences]: top-1, median, its dim
        return MassiveStats(list(self.hooks), top.mean(1), med.mean(1), (top / med.clamp_min(1e-30)).mean(1),
                            dim.mode(1).values.tolist(), self.entries, self.n_entries, self.cfg)


@torch.no_grad()
def massive_stats(model, tokens: torch.Tensor, config: MassiveConfig | None = None) -> MassiveStats:
    """Detect massive activations of ``model`` on ``tokens [B, T]`` (one hooked pass per batch)."""
    cfg = config or MassiveConfig()
    tokens = check_tokens(tokens)
    hooks = resolve_hooks(model, cfg.hooks)
    det = _Detector(hooks, cfg, decoder(getattr(model, "tokenizer", None)))
    device = next(model.parameters()).device

    def fn(h, hook, name):  # ``start``, ``chunk``: the batch being run (the loop below)
        det.add(name, h, torch.arange(start, start + len(chunk)), chunk)

    with scoped_hooks(model, fwd=[(h, functools.partial(fn, name=h)) for h in hooks]):
        for start in range(0, tokens.shape[0], cfg.batch_size):
            chunk = tokens[start:start + cfg.batch_size]
            model(chunk.to(device))
    return det.result()


def massive_stats_from_store(store, config: MassiveConfig | None = None, tokenizer=None) -> MassiveStats:
    """Detect massive activations from an ``interp.store.ActivationStore`` (rows + ``seq_pos``).

    Each sequence's rows are read in position order (:func:`interp.phenomena.sinks.store_sequences`)
    and passed to the same detector as :func:`massive_stats`.
    """
    cfg = config or MassiveConfig()
    hooks = sorted(fnmatch.filter(store.hooks, cfg.hooks), key=layer_of)
    if not hooks:
        raise ValueError(f"the store holds no hook matching {cfg.hooks!r}; it holds {store.hooks}")
    det = _Detector(hooks, cfg, decoder(tokenizer))
    all_tokens = store.tokens[:].long()
    for hook in hooks:
        for sid, rows, ids, _ in store_sequences(store, hook):
            det.add(hook, rows[None], torch.tensor([sid]), all_tokens[ids][None])
    return det.result()


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


def kind_codes(tokens: torch.Tensor, decode) -> torch.Tensor:
    """``[B, T]`` index into :data:`KINDS` of every position (:func:`token_kind` of its decoded token)."""
    rows = tokens.tolist()
    return torch.tensor([[KINDS.index(token_kind(p, decode(i))) for p, i in enumerate(row)] for row in rows])


@torch.no_grad()
def massive_ablation(model, tokens: torch.Tensor, stats: MassiveStats, hook: str | None = None, *,
                     heldout: torch.Tensor | None = None) -> MassiveAblation:
    """Zero vs per-kind mean vs random-zero control of the massive entries of one layer, batched.

    ``hook``: the residual hook to intervene at; default the earliest hook where the massive
    activations reach half their largest magnitude (where the big ones *appear*: in
    SmolLM2-135M a few delimiter entries of ~800 show up at layer 2, the first-token entries of
    ~25,000 at layer 11).  The entries to overwrite are found again on ``tokens`` with
    ``stats.config`` thresholds, restricted to the dimensions detected at that hook.

    ``heldout``: token rows (``[N', T']``, none equal to a row of ``tokens``) from which the
    ``mean`` variant's values are taken: each massive entry of ``tokens`` is set to the mean of
    the held-out massive entries of its token kind (first token / delimiter / other) at its
    dimension (the held-out entries are detected by :func:`massive_stats` with the same thresholds,
    none left out).  Raises if ``heldout`` is missing, overlaps ``tokens``, or lacks a kind (e.g. a
    delimiter) that the analysed entries need.
    """
    tokens, cfg = check_tokens(tokens), stats.config
    if not stats.entries:
        raise ValueError("no massive activations were detected, so there is nothing to ablate "
                         f"(thresholds abs>{cfg.abs_threshold}, ratio>={cfg.ratio_threshold})")
    if heldout is None:
        raise ValueError("massive_ablation needs heldout=: token rows not in `tokens` from which the 'mean' "
                         "variant takes one mean per token kind (first token, delimiter); e.g. a separate "
                         "slice of the corpus")
    rows = check_tokens(heldout).tolist()
    same = [(i, j) for i, h in enumerate(rows) for j, t in enumerate(tokens.tolist()) if h == t]
    if same:
        raise ValueError("heldout row {} equals analysed row {}: held-out rows must not be in the analysed "
                         "batch".format(*same[0]))
    hooks = sorted({e.hook for e in stats.entries}, key=layer_of)
    if hook is not None and hook not in hooks:
        raise ValueError(f"no massive activations were detected at {hook!r}; they are at {hooks}")
    big = max(abs(e.value) for e in stats.entries)
    hook_name = hook or min((e for e in stats.entries if abs(e.value) >= big / 2), key=lambda e: e.layer).hook
    dims = sorted({e.dim for e in stats.entries if e.hook == hook_name})
    dim_mask = torch.isin(torch.arange(int(model.cfg.d_model)), torch.tensor(dims))
    held = massive_stats(model, heldout, dataclasses.replace(cfg, hooks=hook_name, max_entries=2**62))
    total = torch.zeros(len(KINDS), len(dim_mask), dtype=torch.float64)  # [kind, dim] sums and counts
    count = torch.zeros_like(total)
    for e in held.entries:
        if dim_mask[e.dim]:
            total[KINDS.index(e.kind), e.dim] += e.value
            count[KINDS.index(e.kind), e.dim] += 1
    means, present = (total / count.clamp_min(1)).float(), count > 0
    device = next(model.parameters()).device
    B, variants = tokens.shape[0], ["clean", "zero", "mean", "random_zero"]
    codes = kind_codes(tokens, decoder(getattr(model, "tokenizer", None))).to(device)
    gen = torch.Generator().manual_seed(0)
    info = {}

    def fn(h, hook):  # h: [4B, T, d]
        clean = h[:B]
        mask = _massive(clean, cfg)[2] & dim_mask.to(h.device)
        info["n"] = n = int(mask.sum())
        info["by_kind"] = {k: int((mask & (codes == i)[..., None]).sum()) for i, k in enumerate(KINDS)}
        missing = mask & ~present.to(h.device)[codes]  # massive entries whose kind/dim has no held-out mean
        if bool(missing.any()):
            b, p, d = missing.nonzero()[0].tolist()
            k = KINDS[int(codes[b, p])]
            raise ValueError(f"the held-out rows have no massive {k!r} entry at {hook_name} dim {d} (the analysed "
                             f"batch has one at sequence {b}, position {p}), so there is no held-out {k} mean; "
                             f"give held-out text that contains {'a delimiter' if k == 'delimiter' else k + ' tokens'} "
                             "carrying the massive activation")
        # control: as many random entries of the same layer that are not massive (the n top random scores)
        score = torch.rand(mask.shape, generator=gen).masked_fill(mask.cpu(), -1).flatten()
        rmask = torch.zeros_like(score, dtype=torch.bool).scatter(0, score.topk(n).indices, True).view_as(mask)
        # [B, T, d] each: clean, zero, each entry's kind mean, the random control zeroed
        return torch.cat([clean, torch.where(mask, 0.0, clean), torch.where(mask, means.to(h)[codes], clean),
                          torch.where(rmask.to(h.device), 0.0, clean)])

    batch = tokens.to(device).repeat(len(variants), 1)
    with scoped_hooks(model, fwd=[(hook_name, fn)]):
        logits = model(batch)
    loss = next_token_loss(logits, batch).view(len(variants), B).mean(1)
    lp = logits[:, :-1].float().log_softmax(-1).view(len(variants), B, tokens.shape[1] - 1, -1)
    kl = (lp[0].exp() * (lp[0] - lp)).sum(-1).mean((1, 2))
    mean_values = {k: [float(means[i, d]) if bool(present[i, d]) else None for d in dims] for i, k in enumerate(KINDS)}
    return MassiveAblation(hook_name, dims, mean_values, dict(zip(KINDS, count.sum(1).long().tolist())),
                           info["n"], info["by_kind"], dict(zip(variants, loss.tolist())),
                           dict(zip(variants, kl.tolist())))


@register
@dataclass
class MassiveResult(Result):
    """Massive activations of one model: detection, ablation and (over checkpoints) their dynamics."""

    kind: ClassVar[str] = "massive"
    axes: ClassVar[dict[str, str]] = {
        "stats.entries.dim": "residual dimension", "stats.entries.layer": "layer",
        "stats.ratio#0": "layer", "stats.ratio": "top-1 / median |h|", "stats.top1#0": "layer", "stats.top1": "|h|",
        "ablation.loss#0": "variant", "ablation.loss": "next-token loss (nats)",
        "ablation.kl#0": "variant", "ablation.kl": "KL(clean || variant) (nats)",
        "dynamics.steps": "training step", "dynamics.ratio": "top-1 / median |h|"}

    stats: MassiveStats
    """Detection on the analysed tokens."""
    n_seqs: int
    """Analysed sequences."""
    seq_len: int
    """Tokens per sequence (first token included)."""
    source: str = ""
    """Where the tokens come from (built-in domains, or a Bigram-Backcopy task)."""
    ablation: MassiveAblation | None = None
    """Zero / held-out-mean / random-zero overwrite of the massive entries (None: none were found)."""
    dynamics: CheckpointDynamics | None = None
    """The top-1 / median ratio per layer over training checkpoints and its fit (with ``checkpoints``)."""
    checkpoints: str | None = None
    """Folder of ``step_<N>`` checkpoints the dynamics come from."""
    meta: dict = field(default_factory=dict)
    """Provenance: ``model``, ``weight_hash``, ``device``, ``seconds``, ``versions``."""

    def summary(self) -> str:
        st, c = self.stats, self.stats.config
        where = f"{self.n_seqs} x {self.seq_len} tokens ({self.source}) of {self.meta.get('model', 'the model')}"
        if not st.n_entries:
            top = int(st.ratio.argmax())
            text = (f"**No massive activations** (|a| > {c.abs_threshold:g} and >= {c.ratio_threshold:g}x the layer "
                    f"median) in {where}: the largest top-1 / median ratio is {float(st.ratio[top]):.0f}x, "
                    f"after layer {layer_of(st.hooks[top])}.")
        else:
            k = st.kinds()
            big = max(st.entries, key=lambda e: abs(e.value))
            dims = sorted({e.dim for e in st.entries})
            text = (f"**{st.n_entries} massive activations** (|a| > {c.abs_threshold:g} and >= {c.ratio_threshold:g}x "
                    f"the layer median) in {where}: {k['first']} on the first token, {k['delimiter']} on delimiters, "
                    f"{k['other']} elsewhere (of {len(st.entries)} listed), in dimension"
                    f"{'s' if len(dims) > 1 else ''} {', '.join(map(str, dims[:6]))}{' ...' if len(dims) > 6 else ''}, "
                    f"from layer {min(e.layer for e in st.entries)} on; the largest is {big.value:.0f} "
                    f"({big.ratio:.0f}x the median) after layer {big.layer}, dim {big.dim}.")
        ab = self.ablation
        if ab is not None:
            kl = {k: round(v, 3) + 0.0 for k, v in ab.kl.items()}  # + 0.0: a rounding -0.000 reads 0.000
            text += (f" Zeroing the {ab.n_overwritten} after layer {layer_of(ab.hook)} changes the loss from {ab.loss['clean']:.3f} to "
                     f"{ab.loss['zero']:.3f} nats (KL {kl['zero']:.3f}); setting them to their held-out mean gives "
                     f"{ab.loss['mean']:.3f} (KL {kl['mean']:.3f}); zeroing as many random entries "
                     f"{ab.loss['random_zero']:.3f} (KL {kl['random_zero']:.3f}).")
        dyn = self.dynamics
        if dyn is not None:
            ok = [(j, f) for j, f in enumerate(dyn.fits) if f is not None]
            text += f" Over {len(dyn.steps)} checkpoints the five-parameter fit converged on {len(ok)} of {len(dyn.fits)} layers"
            text += (f" (layer {layer_of(dyn.hooks[ok[0][0]])}: R² {ok[0][1].r2:.3f}, A {ok[0][1].A:+.3g})."
                     if ok else ".")
        return text

    def report(self):
        st, ab, dyn = self.stats, self.ablation, self.dynamics
        config = {**asdict(st.config), "n_seqs": self.n_seqs, "seq_len": self.seq_len, "source": self.source,
                  "checkpoints": self.checkpoints}
        r = Report.of(self, f"Massive activations: {self.meta.get('model', '')}".rstrip(": "), config)
        if st.entries:
            layers, dims = sorted({e.layer for e in st.entries}), sorted({e.dim for e in st.entries})
            z = [[max((abs(e.value) for e in st.entries if e.layer == L and e.dim == d), default=0.0) for d in dims]
                 for L in layers]
            r.add_heatmap("Largest massive activation by layer and dimension", z, [str(d) for d in dims],
                          [f"L{L}" for L in layers], x_title="residual dimension", y_title="layer",
                          fields=("stats.entries.dim", "stats.entries.layer"),
                          caption="Max |a| of the detected entries after each layer (blocks.ℓ.hook_resid_post), "
                                  "only the layers and dimensions that hold one.")
            r.add_table("Massive activations by layer, dimension and token kind", st.table())
        if ab is not None:
            kinds = ", ".join(f"{n} {KIND_WORDS.get(k, k)}" for k, n in ab.n_by_kind.items())
            cap = (f"{ab.n_overwritten} entries overwritten after layer {layer_of(ab.hook)} (dimensions "
                   f"{', '.join(map(str, ab.dims))}; {kinds}). zero: set to 0; mean: each set to the held-out mean of its "
                   "token kind; random zero: as many random non-massive entries of that layer zeroed (control).")
            for key, title, caption in (
                    ("loss", "Next-token loss with the massive activations overwritten", cap),
                    ("kl", "KL from the clean next-token distribution",
                     "Mean KL(clean || variant) of the next-token distribution per token, same variants.")):
                names, values = zip(*list(getattr(ab, key).items())[key == "kl":])  # no KL of the clean run
                r.add_bars(title, [v.replace("_", " ") for v in names], {"": list(values)}, x_title="variant",
                           y_title=self.axes[f"ablation.{key}"],
                           fields=(f"ablation.{key}#0", f"ablation.{key}"), caption=caption)
        n = [layer_of(h) for h in st.hooks]  # the scanned layers (a hooks glob may pick some)
        r.add_line("Top-1 / median |h| per layer", n, {"ratio": st.ratio}, x_title="layer", y_title="top-1 / median |h|",
                   log_y=True, fields=("stats.ratio#0", "stats.ratio"),
                   caption="Mean over sequences of max |h| / median |h| of blocks.ℓ.hook_resid_post.")
        r.add_line("Top-1 and median |h| per layer", n, {"top-1": st.top1, "median": st.median}, x_title="layer",
                   y_title="|h|", log_y=True, fields=("stats.top1#0", "stats.top1"),
                   caption="Mean over sequences of the largest |h| and of the median |h| of blocks.ℓ.hook_resid_post "
                           "(log scale): their ratio is the figure above.")
        if dyn is not None:
            ratio, names = torch.tensor(dyn.ratio), [f"L{layer_of(h)}" for h in dyn.hooks]
            ys = {name: ratio[:, j] for j, name in enumerate(names)}
            ys.update({f"{name} fit": f.predict(dyn.steps) for name, f in zip(names, dyn.fits) if f is not None})
            r.add_line("Top-1 / median |h| over training, with the five-parameter fit", dyn.steps, ys,
                       x_title="training step", y_title="top-1 / median |h|", fields=("dynamics.steps", "dynamics.ratio"),
                       caption=f"The ratio of each layer at each of the {len(dyn.steps)} checkpoints (Lℓ) and the "
                               "fitted curve at the same steps (Lℓ fit; a layer whose fit did not converge has none).")
            sym = {"lam": "λ", "gamma": "γ", "t0": "t₀", "r2": "R²", "t_peak": "peak step", "n_points": "checkpoints"}
            r.add_table("Fit f(t) = A exp(-λx) log x + K, x = γt + t₀, per layer",
                        [{"layer": name, **({sym.get(k, k): v for k, v in vars(f).items()} if f else {"error": e})}
                         for name, f, e in zip(names, dyn.fits, dyn.errors)])
        r.add_section("Method", (
            "Sun et al. 2024: a scalar of the residual state after layer ℓ is massive when |a| > "
            f"{st.config.abs_threshold:g} and |a| >= {st.config.ratio_threshold:g} x the median |h| of that sequence "
            "and layer. The ablation overwrites them after the earliest layer reaching half the largest magnitude and "
            "compares next-token loss and KL(clean || variant); the mean variant takes one mean per token kind and "
            "dimension from held-out sequences. Dynamics: Gallego-Feliciano et al. 2025's five-parameter fit of the "
            "ratio over checkpoints."))
        return r


def massive_run(model=None, checkpoints=None, config: MassiveConfig | None = None, n_seqs: int = 4,
                seq_len: int = 64, heldout_seqs: int = 4, hook: str | None = None, device=None) -> MassiveResult:
    """Detect, ablate and (with ``checkpoints``) follow massive activations over training.

    ``model``: a loaded model, a name or a checkpoint folder (None: the last of ``checkpoints``, else
    smollm2-135m).  Tokens: ``n_seqs`` windows of ``seq_len`` tokens of each built-in domain, the
    held-out rows of the mean ablation the next ``heldout_seqs`` windows; for a Bigram-Backcopy
    checkpoint (``bb_task.json`` beside it) 16 sequences of its task and ``heldout_seqs`` of another
    seed.  ``checkpoints``: a folder of ``step_<N>`` checkpoints whose per-layer ratio is fitted
    (:func:`interp.phenomena.dynamics.checkpoint_dynamics`).
    """
    from interp.models import load_model  # looked up per call (the CLI tests stop it there)
    from interp.toy.bigram_backcopy import load_task  # toy imports phenomena at its top

    if heldout_seqs < 1:
        raise ValueError(f"heldout_seqs must be >= 1, got {heldout_seqs}")
    t0 = time.time()
    folder = checkpoints or (model if isinstance(model, (str, Path)) and Path(model).is_dir() else None)
    task = load_task(folder) if folder else None

    def tokens_for(m, held: bool = False):
        if task is not None:
            return task.sample(heldout_seqs if held else 16, torch.Generator().manual_seed(2 if held else 1))
        n = n_seqs + heldout_seqs if held else n_seqs
        return torch.cat([domain_tokens(m, d, seq_len, n)[n_seqs if held else 0:] for d in default_domains()])

    dynamics = None
    if checkpoints:
        dynamics = checkpoint_dynamics(checkpoints, tokens_for, config, device=device)
        model = model or str(list_checkpoints(checkpoints)[-1][1])
    if model is None or isinstance(model, (str, Path)):
        model = load_model(str(model or "smollm2-135m"), device=device)
    tokens = tokens_for(model)
    stats = massive_stats(model, tokens, config)
    ablation = (massive_ablation(model, tokens, stats, hook=hook, heldout=tokens_for(model, held=True))
                if stats.entries else None)
    source = "Bigram-Backcopy task" if task is not None else "built-in domains " + ", ".join(
        d.name for d in default_domains())
    return MassiveResult(stats=stats, n_seqs=tokens.shape[0], seq_len=tokens.shape[1], source=source,
                         ablation=ablation, dynamics=dynamics, checkpoints=str(checkpoints) if checkpoints else None,
                         meta=provenance(model, time.time() - t0))
