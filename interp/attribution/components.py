"""The component set every attribution method scores, and the typed result they return.

A *component type* names a family of activations by a TransformerLens hook template and says
which axes of the activation index separate components ("units"):

==========  ==============================  =====================  ==========================
type        hook                            activation             units per layer
==========  ==============================  =====================  ==========================
resid       blocks.{layer}.hook_resid_pre   [B, T, d_model]        1 (summed over d_model)
attn_head   blocks.{layer}.attn.hook_z      [B, T, H, d_head]      H (summed over d_head)
attn        blocks.{layer}.hook_attn_out    [B, T, d_model]        1 (all heads + output bias)
mlp         blocks.{layer}.hook_mlp_out     [B, T, d_model]        1
==========  ==============================  =====================  ==========================

``attn`` and ``mlp`` are what each sublayer adds to the residual stream, so a block's update is their sum
(``resid_post - resid_pre = attn + mlp``; tests/test_attribution_archs.py checks it on every tiny
architecture).  On Gemma 2/3, whose sublayer outputs pass a post-norm (post-attention / post-feedforward
RMSNorm) before the addition, TransformerBridge aliases ``hook_attn_out`` / ``hook_mlp_out`` to
``ln1_post.hook_out`` / ``ln2_post.hook_out``: the normalised outputs, not the raw ``attn.hook_out`` /
``mlp.hook_out``.  Patching the raw output would go through the post-norm's scale (a change of the
raw output's norm is divided away) and would not be the residual-stream addition.

``unit_axes`` is the number of axes after ``[B, T]`` that index units; the remaining trailing
axes are summed when a score is formed.  New types register with
:func:`register_component_type`: an SAE's feature activations at a hook
(``blocks.{layer}.hook_sae_acts``, ``[B, T, F]``) are ``unit_axes=1`` with nothing summed,
so every method here scores SAE features unchanged once the SAE is spliced in as a hook.

Scores are ``[L, *units]``, or ``[L, *units, T]`` per position, averaged over the batch.

Every method is called ``method(model, task, components, per_position, ...)``: what to score, then its
settings, given one way (:func:`interp.config.takes_config`): as keywords that are exactly the fields of the method's
config dataclass (``PatchingConfig``, ``AtPConfig``, ``RelPConfig``, ``IGConfig``) or as ``config=``.

Memory: :func:`cache_components` keeps one activation per hook: for SmolLM2-135M, B=16,
T=16: 30 x 3 x 256 x 576 floats = 53 MB (and as much again for gradients).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Callable, ClassVar, Iterable, Sequence

import torch

from interp.models import scoped_hooks
from interp.models.hooks import component_label, head_label, mlp_hook
from interp.results import Result, register


@dataclass(frozen=True)
class ComponentType:
    """A family of components addressed by a hook template."""

    name: str
    """Short name used as the key of ``result.scores`` (``resid``, ``attn_head``, ``mlp``)."""
    hook: str
    """TransformerLens hook name with ``{layer}`` in place of the layer index."""
    unit_axes: int
    """How many axes after ``[B, T]`` index separate components (0: one per layer)."""
    doc: str = ""
    """One line for reports."""

    def hook_name(self, layer: int) -> str:
        return self.hook.format(layer=layer)


COMPONENT_TYPES: dict[str, ComponentType] = {}


def register_component_type(ct: ComponentType) -> ComponentType:
    """Add a component type (e.g. SAE features at a spliced hook) to the registry."""
    COMPONENT_TYPES[ct.name] = ct
    return ct


register_component_type(ComponentType("resid", "blocks.{layer}.hook_resid_pre", 0, "residual stream before block L"))
register_component_type(ComponentType("attn_head", "blocks.{layer}.attn.hook_z", 1, "attention head output (z, per head)"))
register_component_type(ComponentType("attn", "blocks.{layer}.hook_attn_out", 0,
                                      "attention output of the layer (all heads; the RelP paper's 'attn')"))
register_component_type(ComponentType("mlp", "blocks.{layer}.hook_mlp_out", 0, "MLP output"))


def component_types(names: str | Sequence[str]) -> list[ComponentType]:
    """The registered types for ``names``; a ``ValueError`` lists the known ones otherwise."""
    names = [names] if isinstance(names, str) else list(names)
    bad = [n for n in names if n not in COMPONENT_TYPES]
    if bad or not names:
        raise ValueError(f"no or unknown component type(s) {bad}; choose from {sorted(COMPONENT_TYPES)}")
    return [COMPONENT_TYPES[n] for n in names]


def component_set(components: Sequence[str], per_position):
    """``(types, per_pos)``: the registered types of ``components`` and the set of names of those scored per
    position (``per_position``: bool or list of type names)."""
    types = component_types(components)
    return types, {t.name for t in types} if per_position is True else set(per_position or ())


SHARE = "score (share of the gap)"
TYPE_NAMES = {"resid": "residual stream", "attn": "attention outputs", "attn_head": "heads", "mlp": "MLP outputs"}
"""What a component type is called in summaries and figure titles."""
PATCHING_SHARE = "activation patching (share of the gap)"


def score_axes(path: str = "", reference: bool = False) -> dict[str, str]:
    """``Result.axes`` entries for the figures :func:`add_score_figures` draws from the
    AttributionResult at field ``path`` of a result ("" = the result itself, ``"scores.*"`` = every
    value of a dict field): dimension 0 of every score tensor is the layer, dimension 1 of
    ``attn_head`` the head, and the scores themselves a share of the clean - corrupted gap
    (``reference``: activation patching's, the x of the scatters)."""
    p = f"{path}.scores" if path else "scores"
    share = PATCHING_SHARE if reference else SHARE
    out = {f"{p}.{t}#0": "layer" for t in TYPE_NAMES} | {f"{p}.{t}": share for t in TYPE_NAMES}
    return out | {f"{p}.attn_head#1": "head"}


@register
@dataclass
class AttributionResult(Result):
    """Scores of one method over a component set, with the metric values that frame them."""

    kind: ClassVar[str] = "attribution"
    axes: ClassVar[dict[str, str]] = score_axes()

    method: str
    """``patch``, ``atp``, ``relp``, ``ig`` (plus details in ``config``)."""
    scores: dict[str, torch.Tensor]
    """Per component type: ``[L, *units]`` or ``[L, *units, T]`` (batch-mean metric change)."""
    seconds: float
    """Wall time of the method (model forward/backward passes included)."""
    metric_clean: float
    """Batch-mean metric on the clean prompts."""
    metric_corrupt: float
    """Batch-mean metric on the corrupted prompts."""
    per_position: list[str] = field(default_factory=list)
    """Component types scored per token position."""
    config: dict = field(default_factory=dict)
    """The method's settings (rules, steps, direction, ...)."""
    extras: dict = field(default_factory=dict)
    """Method-specific diagnostics (e.g. IG completeness delta)."""

    def normalized(self, ctype: str, summed: bool = False) -> torch.Tensor:
        """Scores (``summed``: per component, as :meth:`per_component`) divided by (metric_clean -
        metric_corrupt): 1.0 = the whole effect; nan everywhere when the two metrics are equal (no effect to
        share)."""
        s = self.per_component(ctype) if summed else self.scores[ctype]
        gap = self.metric_clean - self.metric_corrupt
        return s / gap if gap else torch.full_like(s, float("nan"))

    def per_component(self, ctype: str) -> torch.Tensor:
        """``[L, *units]`` scores of ``ctype``, summed over positions when scored per position."""
        s = self.scores[ctype]
        return s.sum(-1) if ctype in self.per_position else s

    def top(self, k: int = 5) -> list[tuple[str, float]]:
        """The ``k`` components with the largest |score| as (display name, score), all types pooled."""
        items = []
        for ctype in self.scores:
            s = self.per_component(ctype)
            items += [(display_name(ctype, i), float(s[i])) for i in itertools.product(*map(range, s.shape))]
        return sorted(items, key=lambda x: -abs(x[1]))[:k]

    def summary(self) -> str:
        gap = self.metric_clean - self.metric_corrupt
        n = {c: self.per_component(c).numel() for c in self.scores}
        counts = ", ".join(f"{TYPE_NAMES.get(c, c)} {k}" for c, k in n.items())
        top = "; ".join(f"{n} {v:+.3g}" + (f" ({v / gap:+.0%} of the gap)" if gap else "") for n, v in self.top(3))
        return (f"Largest effects: {top} (per-position scores summed over positions). **{self.method}** scored "
                f"{sum(n.values())} components ({counts}) in {self.seconds:.3g} s; metric clean "
                f"{self.metric_clean:.3g}, corrupted {self.metric_corrupt:.3g}.")

    def report(self):
        from interp.reports import Report

        r = Report(f"Attribution scores: {self.method}", config=self.config,
                   meta={"timings": {self.method: self.seconds}}, summary=self.summary())
        add_score_figures(r, {self.method: self})
        return r


def directed_runs(task, direction: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(source, base)`` prompts: ``denoise`` puts clean values into the corrupted run, ``noise`` the
    reverse."""
    return (task.clean, task.corrupt) if direction == "denoise" else (task.corrupt, task.clean)


def directed_result(method: str, direction: str, t0: float, m_src: torch.Tensor, m_base: torch.Tensor,
                    per_pos: set[str], **fields) -> AttributionResult:
    """The result of a ``direction`` run (:func:`directed_runs`): the per-prompt metrics of the source and
    base runs put back in clean / corrupted order, the wall time since ``t0``."""
    m = [v.float().mean().item() for v in (m_src, m_base)]
    m_clean, m_corr = m if direction == "denoise" else m[::-1]
    return AttributionResult(method=method, seconds=time.perf_counter() - t0, metric_clean=m_clean,
                             metric_corrupt=m_corr, per_position=sorted(per_pos), **fields)


def display_name(ctype: str, idx: Sequence[int]) -> str:
    """The display form of a component: ``L3H2`` / ``MLP3`` (interp.models.hooks), ``attn3``, ``resid3``."""
    if ctype == "attn_head":
        return head_label(idx[0], idx[1])
    if ctype == "mlp":
        return component_label(mlp_hook(idx[0]))
    return f"{ctype}{idx[0]}" + "".join(f"[{i}]" for i in idx[1:])


def add_score_figures(r, results: dict[str, "AttributionResult"], reference: str | None = None,
                      paths: dict[str, str] | None = None) -> None:
    """Figures of each method's scores (normalised by the clean - corrupted gap) into report ``r``:
    layer x head heatmaps, per-layer bars for MLP / attention / residual, and, when ``reference``
    names one of ``results``, each other method against it as a scatter with Pearson r (over every
    score, per position where both are per position: the r a comparison reports).

    ``paths``: method -> field path of its AttributionResult in the result being reported ("" for
    the result itself, the default); each figure records the fields its axes show (declare them with
    :func:`score_axes`)."""
    from interp.reports import figures as F

    def fld(m: str, ctype: str) -> str:
        return f"{(paths or {}).get(m, '')}.scores.{ctype}".lstrip(".")

    main = next((m for m in results if m != reference), next(iter(results)))
    for ctype in next(iter(results.values())).scores:
        name = TYPE_NAMES.get(ctype, ctype)
        title = name[:1].upper() + name[1:]
        mats = {m: res.normalized(ctype, summed=True) for m, res in results.items() if ctype in res.scores}
        if ctype == "attn_head":
            for m, z in mats.items():
                r.add_layer_heads(f"Attention heads: {m}", z, fld(m, ctype),
                                  caption=f"Each cell: the metric change {m} assigns to one head, as a share of the "
                                          "clean - corrupted gap (summed over positions).")
        elif all(z.ndim == 1 for z in mats.values()):
            L = len(next(iter(mats.values())))
            r.add_bars(f"{title} per layer", [f"L{l}" for l in range(L)],
                       {("patching" if m == reference else m): z for m, z in mats.items()}, x_title="layer",
                       y_title=SHARE, fields=(fld(main, ctype) + "#0", fld(main, ctype)),
                       caption=f"Each layer's {name} ({COMPONENT_TYPES[ctype].hook.format(layer='L') if ctype in COMPONENT_TYPES else ctype}), "
                               "summed over positions, as a share of the clean - corrupted gap, per method.")
        if reference not in mats:
            continue
        ref = results[reference]
        for m, res in results.items():
            if m == reference or ctype not in res.scores:
                continue
            full = ctype in res.per_position and ctype in ref.per_position
            x, y = (a.normalized(ctype, summed=not full) for a in (ref, res))
            labels = [display_name(ctype, i[:-1] if full else i) + (f" @ position {i[-1]}" if full else "")
                      for i in itertools.product(*map(range, x.shape))]  # hover names, in reshape(-1) order
            ref_name = "patching" if reference == "patch" else reference
            r.add_figure(F.method_vs_patching(f"{title}: {m} vs {ref_name}", x, y, m, labels,
                                              x_title=PATCHING_SHARE, y_title=SHARE),
                         fields=(fld(reference, ctype), fld(m, ctype)))


# ------------------------------------------------------------------------------------------
# caching activations (and gradients) at every component hook
# ------------------------------------------------------------------------------------------
LEAF_HOOK = "hook_embed"


def cache_components(
    model,
    tokens: torch.Tensor,
    types: Sequence[ComponentType],
    metric: Callable[[torch.Tensor], torch.Tensor] | None = None,
    extra_fwd: Iterable[tuple[str, Callable]] = (),
    method: str = "",
) -> tuple[dict[str, list[torch.Tensor]], dict[str, list[torch.Tensor]] | None, torch.Tensor]:
    """Run ``tokens`` once, caching every component activation; with ``metric``, also backprop.

    Returns ``(acts, grads, metric_values)``: ``acts[type][layer]`` detached activations,
    ``grads[type][layer]`` = d sum_b metric_b / d act (or ``None`` without ``metric``), and the
    per-prompt metric ``[B]`` (or the logits when ``metric`` is None).  Gradients flow through
    whatever backward the model has at call time, so RelP calls this inside its rule scope.
    A component whose saved activation gets no gradient (it does not feed the metric on this bridge)
    raises a ``RuntimeError`` naming ``method``, the hooks and the architecture, never a zero score.
    """
    store: dict[tuple[str, int], torch.Tensor] = {}
    want_grad, L = metric is not None, model.cfg.n_layers
    # ``extra_fwd`` first: a hook that replaces a value (an LRP rule's surrogate at a norm's output, which on
    # Gemma 3 is the very point hook_attn_out / hook_mlp_out alias) must run before the saver, so the saver
    # keeps the tensor the rest of the forward uses; saved before the replacement, it would be cut off from
    # the metric and get no gradient.
    fwd = [(LEAF_HOOK, lambda x, hook: x.detach().requires_grad_(True))] if want_grad else []
    fwd += list(extra_fwd)
    fwd += [(t.hook_name(l), lambda x, hook, key=(t.name, l): store.setdefault(key, x))  # saves x, returns it
            for t in types for l in range(L)]
    with torch.set_grad_enabled(want_grad), scoped_hooks(model, fwd=fwd):
        logits = model(tokens.to(next(model.parameters()).device))
        acts = {t.name: [store[(t.name, l)].detach() for l in range(L)] for t in types}
        if not want_grad:
            return acts, None, logits
        m = metric(logits)
        keys = [k for k in store if store[k].requires_grad]
        gs = dict(zip(keys, torch.autograd.grad(m.sum(), [store[k] for k in keys], allow_unused=True))) if keys else {}
    # A leaf saved at a hook (a placeholder a hook created, e.g. the feature slot of a layer without a dictionary)
    # does not depend on the input: its score is exactly 0.  A computed activation without a gradient is a
    # broken graph and is refused.
    cut = [k for k in store if gs.get(k) is None and not store[k].is_leaf]
    if cut:
        names = [t.hook_name(l) for t in types for l in range(L) if (t.name, l) in cut]
        raise RuntimeError(
            f"{method or 'this gradient method'} cannot score {sorted({k[0] for k in cut})} on "
            f"{arch_name(model)}: no gradient reaches {names[:4]}{' ...' if len(names) > 4 else ''} "
            f"({len(names)} hook(s)); the "
            f"activation saved there does not feed the metric on this bridge, so its score would be a silent zero")
    grads = {t.name: [gs[(t.name, l)].detach() if gs.get((t.name, l)) is not None else torch.zeros_like(acts[t.name][l])
                      for l in range(L)] for t in types}
    return acts, grads, m.detach()


def arch_name(model) -> str:
    """The Hugging Face architecture name of a bridge (for error messages)."""
    cfg = getattr(model, "cfg", None)
    arch = getattr(cfg, "architecture", None) or getattr(cfg, "original_architecture", None)
    return str(arch) if arch else type(model).__name__


def reduce_products(ct: ComponentType, prod: torch.Tensor, per_position: bool) -> torch.Tensor:
    """``prod [B, T, *units, *rest]`` -> batch-mean score ``[*units]`` or ``[*units, T]``."""
    prod = prod.reshape(*prod.shape[:2 + ct.unit_axes], -1).sum(-1).mean(0)  # [T, *units]
    return prod.movedim(0, -1) if per_position else prod.sum(0)


def linear_scores(types, acts_a, acts_b, grads, per_pos: set[str]) -> dict[str, torch.Tensor]:
    """(a - b) . g per component in float32, stacked over layers (the AtP / RelP / IG score form)."""
    return {t.name: torch.stack([
        reduce_products(t, (a.float() - b.float()) * g.float(), t.name in per_pos)
        for a, b, g in zip(acts_a[t.name], acts_b[t.name], grads[t.name])]).cpu() for t in types}

