"""Integrated gradients, batched: the interpolation steps run as one batch (chunked by memory).

Algorithm (Sundararajan et al. 2017; docs/methods.md, Integrated gradients):
    IG_i = (x_i - x'_i) * sum_k w_k dF(x' + alpha_k (x - x'))/dx_i
with (alpha_k, w_k) from Gauss-Legendre (default) or a Riemann rule, the same nodes captum uses.
1. One forward pass of the input and the baseline gives the activations x, x' at the hook and
   F(x), F(x').
2. The k interpolated activations are stacked into a ``[k*B, ...]`` batch; a hook replaces the
   activation at the hook point with them; one backward of sum_k w_k sum_b F_kb gives every
   weighted gradient at once (chunks of ``max_tokens`` tokens bound the memory).
3. Completeness delta = sum_i IG_i - (F(x) - F(x')) is always returned (per prompt).

Two entry points, each configured by its dataclass or the dataclass's fields as keywords:
* :func:`layer_integrated_gradients` (:class:`LayerIGConfig`) -- attributions at any hook
  (``hook_embed`` by default, or e.g. ``blocks.5.hook_resid_pre``) for a metric on the logits; what
  captum's LayerIntegratedGradients computes (its "layer output" mode), see captum_ig.py.
* :func:`integrated_gradients` (:class:`IGConfig`) -- component scores for a Task.  Default
  ``path='hooks'``: each component hook is interpolated corrupt -> clean inside the corrupted run, so
  its attributions sum to activation patching of that hook (tested), and on a model linear in the
  activation IG == AtP == patching.  ``path='embeddings'`` is the EAP-IG node form (Hanna et al. 2024):
  interpolate the *input embeddings* and score (a_n(clean) - a_n(corrupt)) . grad_bar_n; completeness
  holds only at the embeddings, and its scores need not track patching (the gradient at node n is
  averaged over runs where every upstream node moves too, which is not the patching question).

Design: the steps are one batched pass through the model itself rather than captum's loop, so every
hook, bridge and architecture works unchanged; the fast paths (fastpath.py: blocks before the hook
replayed, last-position logits, on Gemma 3 the lean forward of interp/models/lean.py) only skip work
the metric cannot see, and ``fast=False`` or ``INTERP_REFERENCE=1`` runs the plain reference
(``IGResult.path`` / ``config['forward']`` say which ran, ``lean_skipped`` why not).  bench/bench_ig.py
times it against captum.

Cost: layer IG 2 + k forward/backward passes of B*T tokens (k = steps) from the hook's block on;
hook IG n_hooks * (k + 1) such passes from each chunk's first hook on.
Memory: ``max_tokens`` tokens of activations for the backward, plus the per-component caches.
"""

from __future__ import annotations

import re
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, replace
from typing import Callable, Sequence

import numpy as np
import torch

from interp.config import takes_config
from interp.fastpath import use_fast
from interp.models import scoped_hooks
from interp.models.hooks import save_hook
from interp.results import check_fields

from .atp import DIRECTIONS
from .components import (AttributionResult, cache_components, component_set, directed_result, directed_runs,
                         linear_scores)
from .fastpath import (LeanGemma3, PrefixCache, fast_forward, hook_layer, interpolate, lean_forward,
                       lean_start_layer, reads_last_position_only)

METHODS = ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid")
DEFAULT_STEPS = 32
_PATHS = {"denoise": "corrupt -> clean", "noise": "clean -> corrupt"}  # the path of each IG direction


def quadrature(steps: int, method: str = "gausslegendre") -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes alpha_k in [0, 1] and weights w_k (sum 1) of the path integral."""
    if method not in METHODS:
        raise ValueError(f"unknown IG method {method!r}; choose from {METHODS}")
    if steps < (1 if method == "gausslegendre" else 2):
        raise ValueError(f"IG needs steps >= {1 if method == 'gausslegendre' else 2}, got {steps}")
    if method == "gausslegendre":
        x, w = np.polynomial.legendre.leggauss(steps)
        return torch.tensor(0.5 * (x + 1), dtype=torch.float64), torch.tensor(0.5 * w, dtype=torch.float64)
    # captum's Riemann nodes; weights 1/steps, except the trapezoid rule's: its nodes are 1/(steps-1)
    # apart, so its weights are 1/(steps-1) with halved ends and sum to 1.  (captum weights them 1/steps,
    # summing to (steps-1)/steps: its trapezoid attributions are ours times (steps-1)/steps.)
    w = torch.full((steps,), 1.0 / (steps - (method == "riemann_trapezoid")), dtype=torch.float64)
    lo, hi = {"left": (0, 1 - 1 / steps), "right": (1 / steps, 1), "middle": (0.5 / steps, 1 - 0.5 / steps),
              "trapezoid": (0, 1)}[method.split("_")[1]]
    if method == "riemann_trapezoid":
        w[[0, -1]] /= 2
    return torch.linspace(lo, hi, steps, dtype=torch.float64), w


@dataclass(frozen=True)
class LayerIGConfig:
    """Settings of :func:`layer_integrated_gradients`."""

    steps: int = DEFAULT_STEPS
    """Quadrature nodes on the path (interpolation steps)."""
    method: str = "gausslegendre"
    """Quadrature rule, one of ``METHODS`` (captum's names)."""
    max_tokens: int = 4096
    """Tokens per batched forward/backward pass; bounds the memory of the steps."""
    fast: bool | None = None
    """Skip work the metric cannot see (fastpath.py); None: on unless ``INTERP_REFERENCE=1``; False: the
    plain reference path."""

    def __post_init__(self):
        quadrature(self.steps or DEFAULT_STEPS, self.method)  # validates the rule and the number of steps


@dataclass(frozen=True)
class IGConfig(LayerIGConfig):
    """Settings of :func:`integrated_gradients` (component scores)."""

    steps: int | None = None
    """Quadrature nodes; None: 8 for ``path='hooks'``, ``DEFAULT_STEPS`` for ``path='embeddings'``."""
    path: str = "hooks"
    """``hooks``: each component hook interpolated in the base run; ``embeddings``: the input embeddings."""
    direction: str = "denoise"
    """``denoise``: paths corrupt -> clean inside the corrupted run (patching source ``denoise``);
    ``noise``: clean -> corrupt inside the clean run (source ``noise``)."""

    def __post_init__(self):
        super().__post_init__()
        check_fields(self, {"path": ("hooks", "embeddings"), "direction": DIRECTIONS})


@dataclass
class IGResult:
    """Attributions at one hook and the completeness check."""

    attributions: torch.Tensor
    """Same shape as the activation at the hook, ``[B, T, ...]``."""
    delta: torch.Tensor
    """``[B]``: sum of attributions - (F(x) - F(baseline)) (captum's convergence delta)."""
    f_input: torch.Tensor
    """``[B]``: F at the input."""
    f_baseline: torch.Tensor
    """``[B]``: F at the baseline."""
    hook: str
    steps: int
    method: str
    seconds: float
    path: str = "plain"
    """Which forward ran the steps: ``plain`` (the bridge, whole model), ``replay`` (the bridge,
    blocks before the hook replayed, last-position logits) or ``lean`` (interp/models/lean.py)."""
    lean_skipped: str = ""
    """Why the lean forward did not run (empty when it did): not fast, a metric of other positions,
    an architecture or hook it does not cover, a user hook, or a failed self-check."""

    @property
    def relative_delta(self) -> float:
        """|sum delta| / |sum (F(x) - F(x'))| over the batch."""
        return float(self.delta.sum().abs() / (self.f_input - self.f_baseline).sum().abs().clamp_min(1e-12))

    def token_scores(self) -> torch.Tensor:
        """``[B, T]``: attributions summed over the feature axes."""
        return self.attributions.reshape(*self.attributions.shape[:2], -1).sum(-1)


def _acts_at(model, tokens, hook, metric, prefix: PrefixCache | None = None, rows: slice | None = None):
    """Activation at ``hook``, metric ``[B]`` and whether the metric reads only the last position."""
    box = {}
    with torch.no_grad(), scoped_hooks(model, fwd=[(hook, save_hook(box, "a", torch.Tensor.detach))]), \
            (prefix.capture(rows) if prefix is not None else nullcontext()):
        logits = model(tokens.to(next(model.parameters()).device))
        f = metric(logits).detach()
    return box["a"], f, reads_last_position_only(metric, logits)


def _path_integral(x, base, q, chunk: int, f_of: Callable):
    """sum_k w_k grad F at the points base + alpha_k (x - base), chunk points at a time: ``f_of(points
    [c*B, ...]) -> (F [c*B], {name: tensor})``; the weighted gradients also flow to the returned tensors
    (summed over the copies, ``[B, ...]`` each)."""
    alphas, weights = q
    g = torch.zeros_like(x, dtype=torch.float32)
    side_g: dict[str, torch.Tensor] = {}
    for s in range(0, len(alphas), chunk):
        a = alphas[s:s + chunk].to(x.device, torch.float32)
        w = weights[s:s + chunk].to(x.device, torch.float32)
        pts = interpolate(base, x, a).flatten(0, 1).to(x.dtype).requires_grad_(True)
        with torch.enable_grad():
            f, side = f_of(pts)
            gs = torch.autograd.grad((f.reshape(len(a), -1) * w[:, None]).sum(), [pts, *side.values()],
                                     allow_unused=True, materialize_grads=True)
        g += gs[0].reshape(-1, *x.shape).sum(0).float()
        for n, gn in zip(side, gs[1:]):
            side_g[n] = side_g.get(n, 0) + gn.reshape(len(a), -1, *gn.shape[1:]).sum(0).float()
    return g, side_g


def _lean(fast: bool | None, last: bool, make: Callable[[], tuple]) -> tuple:
    """``make()`` (``(lean forward, "")`` or ``(None, reason)``), unless the reference path was asked
    for or the metric reads positions other than the last: then ``(None, that reason)``."""
    if not use_fast(fast):
        return None, "reference path (fast=False or INTERP_REFERENCE=1)"
    return make() if last else (None, "the metric reads positions other than the last")


def _self_check(lean: LeanGemma3, got: torch.Tensor, want: torch.Tensor) -> str:
    """"" when the lean forward's metric equals the bridge's (float32 re-association scale); else a warning
    and the reason, recorded in the result."""
    want = want.float()
    if got.shape == want.shape and torch.allclose(got.float(), want, rtol=1e-3,
                                                  atol=1e-3 * (1 + want.abs().max().item())):
        return ""
    why = f"lean {lean.arch} forward failed its self-check against the model's metric"
    warnings.warn(why + "; using the bridge path", RuntimeWarning, stacklevel=4)
    return why


def _shared_prefix(differs: torch.Tensor) -> int:
    """The number of leading False in ``differs [T]`` (positions before the first difference), at most
    T - 1."""
    return min(int((~differs).int().cumprod(0).sum()), len(differs) - 1)


def _interpolate_lean(lean: LeanGemma3, hook: str, x_act, base_act, f_x, q, metric, max_tokens):
    """The path integral through a lean forward (interp/models/lean.py; residual-stream hooks,
    last-position metrics).

    Positions before the first one where input and baseline differ (``p0``) are the same in every
    copy; they run once (their keys/values are shared) and their gradient is not needed: their
    attribution is ``0 * grad`` = 0.  Returns ``(None, reason)`` when the lean forward does not reproduce
    the bridge's metric on the input (then the caller takes the bridge path), else ``(gradient, "")``.
    """
    B, T = x_act.shape[:2]
    start = lean_start_layer(hook)
    p0 = _shared_prefix((x_act != base_act).reshape(B, T, -1).any(-1).any(0))
    with torch.no_grad():
        prefix = lean.prefix_kv(x_act[:, :p0], start)  # a residual-stream hook: the block input itself
        why = _self_check(lean, metric(lean.logits(x_act[:, p0:], start, T, prefix)), f_x)
    if why:
        return None, why
    g = torch.zeros_like(x_act, dtype=torch.float32)
    g[:, p0:], _ = _path_integral(
        x_act[:, p0:], base_act[:, p0:], q, max(1, max_tokens // (B * (T - p0))),
        lambda pts: (metric(lean.logits(pts, start, T, prefix)), {}))
    return g, ""


@takes_config(LayerIGConfig)
def layer_integrated_gradients(
    model,
    tokens: torch.Tensor,
    metric: Callable[[torch.Tensor], torch.Tensor],
    hook: str = "hook_embed",
    baseline: torch.Tensor | str | None = None,
    *,
    config: LayerIGConfig,
) -> IGResult:
    """IG of ``metric(logits) -> [B]`` w.r.t. the activation at ``hook``; see the module doc.

    ``baseline``: token ids of the same shape as ``tokens`` (their activation at the hook is the
    baseline, as in captum's LayerIntegratedGradients), an activation tensor, or ``"zeros"`` /
    ``None`` (zero activation).  Settings: the fields of :class:`LayerIGConfig` as keywords
    (``steps``, ``method``, ``max_tokens``, ``fast``), or ``config=``; not both.  ``fast`` reuses the
    blocks before the hook and computes only the last position's logits when the metric reads only
    those; at a residual-stream hook of a covered architecture the steps run the lean forward
    (``result.path`` says which ran, ``result.lean_skipped`` why not).
    """
    cfg, fast = config, use_fast(config.fast)
    t0 = time.perf_counter()
    tokens = torch.atleast_2d(tokens)
    q = quadrature(cfg.steps, cfg.method)
    B, T = tokens.shape
    prefix = PrefixCache(model) if fast and hook_layer(hook) > 0 else None
    if isinstance(baseline, torch.Tensor) and not baseline.is_floating_point():
        if baseline.shape != tokens.shape:
            raise ValueError(f"baseline tokens {tuple(baseline.shape)} must match the input tokens {tuple(tokens.shape)}")
        both, f_both, last = _acts_at(model, torch.cat([tokens, baseline.to(tokens.device)]), hook, metric,
                                      prefix, slice(0, B))
        x_act, base_act, f_x, f_b = both[:B], both[B:], f_both[:B], f_both[B:]
    else:
        x_act, f_x, last = _acts_at(model, tokens, hook, metric, prefix)
        if isinstance(baseline, torch.Tensor):
            base_act = baseline.to(x_act.device, x_act.dtype).expand_as(x_act)
        elif baseline in (None, "zeros"):
            base_act = torch.zeros_like(x_act)
        else:
            raise ValueError(f"baseline must be token ids, an activation tensor or 'zeros', got {baseline!r}")
        with torch.no_grad(), scoped_hooks(model, fwd=[(hook, lambda x, hook: base_act)]):
            f_b = metric(model(tokens.to(x_act.device))).detach()
    path = "lean"
    lean, why = _lean(cfg.fast, last, lambda: lean_forward(model, hook))
    g, why = (None, why) if lean is None else _interpolate_lean(lean, hook, x_act, base_act, f_x, q, metric,
                                                                 cfg.max_tokens)
    if g is None:
        layer = hook_layer(hook) if prefix is not None else 0

        def f_of(pts):
            c = pts.shape[0] // B
            with scoped_hooks(model, fwd=[(hook, lambda x, hook: pts)]), \
                    fast_forward(model, prefix, c, layer, last and fast):
                return metric(model(tokens.to(pts.device).repeat(c, 1))), {}

        g, _ = _path_integral(x_act, base_act, q, max(1, cfg.max_tokens // (B * T)), f_of)
        path = "replay" if fast and (prefix is not None or last) else "plain"
    attr = (x_act.float() - base_act.float()) * g
    delta = attr.reshape(attr.shape[0], -1).sum(-1) - (f_x.float() - f_b.float())
    return IGResult(attributions=attr, delta=delta.cpu(), f_input=f_x.float().cpu(), f_baseline=f_b.float().cpu(),
                    hook=hook, steps=cfg.steps, method=cfg.method, seconds=time.perf_counter() - t0, path=path,
                    lean_skipped=why)


_LEAN_HOOK = re.compile(r"^blocks\.\d+\.(hook_resid_pre|attn\.hook_z|hook_mlp_out)$")


def _lean_for_hooks(model, types, task, base_tokens, acts_src, acts_base, m_base):
    """``((lean forward, the base run's (resid_pre, keys, values) per block, shared prefix length p0), "")``
    for hook IG, or ``(None, reason)``.  ``base_tokens``: the run the hooks are interpolated in;
    ``m_base`` its metric.

    ``p0``: positions before the first token where clean and corrupt differ, kept only if every
    cached component activation agrees exactly there (then those positions are the same in every
    interpolated copy, and their attributions are ``0 * grad`` = 0).
    """
    names = [t.hook_name(l) for t in types for l in range(model.cfg.n_layers)]
    bad = [n for n in names if not _LEAN_HOOK.match(n)]
    if bad:
        return None, f"component hook {bad[0]!r} has no lean edit point"
    lean, why = lean_forward(model, "hook_embed")
    if lean is None:
        return None, why
    T = base_tokens.shape[1]
    with torch.no_grad():
        plain = lean.plain(lean.embed(base_tokens.to(next(model.parameters()).device)), 0)
        why = _self_check(lean, task.metric(lean.logits(plain[0][0], 0, T)), m_base)
    if why:
        return None, why
    p0 = _shared_prefix((task.clean != task.corrupt).any(0))
    if not all(torch.equal(acts_src[t.name][l][:, :p0], acts_base[t.name][l][:, :p0])
               for t in types for l in range(model.cfg.n_layers)):
        p0 = 0
    return (lean, plain, p0), ""


def _hook_ig(model, task, types, per_pos: set[str], cfg: IGConfig) -> tuple:
    """IG per component hook: the patching analogue (EAP-IG-activations form).

    ``direction='denoise'``: for every hook h (one layer of one component type) the activation moves
    along a_h(x~) + alpha (a_h(x) - a_h(x~)) inside the corrupted run x~ (upstream is unaffected,
    downstream is recomputed), so by completeness the attributions at h sum to
    m(x~ | a_h <- a_h(x)) - m(x~): activation patching of the whole hook (patching source ``denoise``).
    ``direction='noise'``: the path a_h(x) + alpha (a_h(x~) - a_h(x)) inside the clean run x, summing
    to m(x | a_h <- a_h(x~)) - m(x) (source ``noise``).  A unit's score (head, position) is its share
    of that patch.  Each hook's ``steps`` interpolations plus one copy at alpha = 1 (the patched
    value, for the completeness check) run as one batch, several hooks per pass; the blocks before a
    chunk's first hook are replayed from the base run (on covered architectures the lean forward runs
    from the chunk's first block, and positions before the first token where clean and corrupt
    differ run once: ``config['forward']``, ``config['shared_prefix']``).
    Per-position scores split the *joint* patch of all positions; they are not single-cell patches,
    and where positions interact the two can differ, even in sign.
    """
    fast = use_fast(cfg.fast)
    L = model.cfg.n_layers
    prefix = PrefixCache(model) if fast else None
    # src: where each hook's path ends (the patch value); base: the run the path lies in
    src_tokens, base_tokens = directed_runs(task, cfg.direction)
    acts_src, _, logits_src = cache_components(model, src_tokens, types)
    with (prefix.capture() if prefix is not None else nullcontext()):
        acts_base, _, logits_base = cache_components(model, base_tokens, types)
    last = fast and reads_last_position_only(task.metric, logits_base)
    m_base = task.metric(logits_base).float()
    B, T = base_tokens.shape
    lean, why = _lean(cfg.fast, last,
                      lambda: _lean_for_hooks(model, types, task, base_tokens, acts_src, acts_base, m_base))
    p0 = lean[2] if lean is not None else 0
    device = next(model.parameters()).device
    a_, w_ = (x.to(device, torch.float32) for x in quadrature(cfg.steps, cfg.method))
    S = len(a_)
    jobs = [(l, t) for l in range(L) for t in types]
    per_chunk = max(1, cfg.max_tokens // ((S + 1) * B * T))
    grads = {t.name: [None] * L for t in types}
    effects = {t.name: [None] * L for t in types}  # the patch effect of each whole hook (alpha = 1 copy)
    for i in range(0, len(jobs), per_chunk):
        chunk = jobs[i:i + per_chunk]
        J, k = len(chunk), len(chunk) * (S + 1)
        leaves, hooks = [], []
        for j, (l, t) in enumerate(chunk):
            a_src, a_base = acts_src[t.name][l][:, p0:].float(), acts_base[t.name][l][:, p0:].float()
            leaf = interpolate(a_base, a_src, a_).requires_grad_(True)
            leaves.append(leaf)
            full = torch.cat([leaf, a_src.unsqueeze(0)])  # [S+1, B, ...]: the last copy is the patch itself

            def fn(act, hook, j=j, full=full):
                a = act.reshape(k, B, *act.shape[1:])
                a = torch.cat([a[:j * (S + 1)], full.to(a.dtype), a[(j + 1) * (S + 1):]])
                return a.reshape(act.shape)

            hooks.append((t.hook_name(l), fn))
        with torch.enable_grad():
            if lean is not None:  # the lean forward from the chunk's first block, shared prefix once
                ll, plain, start = lean[0], lean[1], chunk[0][0]
                kv = [(pk[:, :, :p0], pv[:, :, :p0]) for _, pk, pv in plain[start:]]  # causal: as in the base run
                edits = {name: (lambda x, fn=fn: fn(x, None)) for name, fn in hooks}
                f = task.metric(ll.logits(plain[start][0][:, p0:].repeat(k, 1, 1), start, T, kv, True, edits))
            else:
                with scoped_hooks(model, fwd=hooks), fast_forward(model, prefix, k, chunk[0][0], last):
                    f = task.metric(model(base_tokens.to(device).repeat(k, 1)))
            f = f.reshape(J, S + 1, B)
            out = (f[:, :S] * w_.view(1, S, 1)).sum()  # no graph when no hook of the pass reaches the metric
            gs = (torch.autograd.grad(out, leaves, allow_unused=True, materialize_grads=True)
                  if out.requires_grad else [torch.zeros_like(x) for x in leaves])  # zeros where none flows
        for (l, t), g, fj in zip(chunk, gs, f.detach()):
            grads[t.name][l] = torch.zeros_like(acts_src[t.name][l], dtype=torch.float32)
            grads[t.name][l][:, p0:] = g.sum(0)
            effects[t.name][l] = float((fj[S].float() - m_base).mean())
    scores = linear_scores(types, acts_src, acts_base, grads, per_pos)
    completeness = {k: [{"delta": float(scores[k][l].sum()) - e, "patch_effect": e} for l, e in enumerate(v)]
                    for k, v in effects.items()}  # by completeness the attributions at a hook sum to its patch
    worst = max(abs(r["delta"]) for v in completeness.values() for r in v)
    scale = max(abs(r["patch_effect"]) for v in completeness.values() for r in v)
    config = {"path": f"each hook's activation, {_PATHS[cfg.direction]}, in the "
                      f"{'corrupted' if cfg.direction == 'denoise' else 'clean'} run",
              "forward": "lean" if lean is not None else ("replay" if fast else "plain"),
              "shared_prefix": p0, "lean_skipped": why}
    return task.metric(logits_src), m_base, scores, config, {
        "hook_completeness": completeness, "max_abs_delta": worst,
        "max_abs_delta_over_max_effect": worst / max(scale, 1e-12)}


def _embedding_ig(model, task, types, per_pos: set[str], cfg: IGConfig) -> tuple:
    """EAP-IG node form: the input embeddings interpolated, every node scored (a_n(x) - a_n(x~)) . mean
    gradient at n (``direction='noise'``: clean -> corrupt, (a_n(x~) - a_n(x)) . mean gradient)."""
    q = quadrature(cfg.steps, cfg.method)
    L = model.cfg.n_layers
    src, base = directed_runs(task, cfg.direction)  # the path runs base -> source
    acts_c, acts_k = (cache_components(model, tokens, types)[0] for tokens in (src, base))
    e_c, f_c, _ = _acts_at(model, src, "hook_embed", task.metric)
    e_k, f_k, _ = _acts_at(model, base, "hook_embed", task.metric)
    names = {(t.name, l): t.hook_name(l) for t in types for l in range(L)}
    B, T = task.clean.shape

    def f_of(pts):  # the positional / rotary inputs are the same for both prompts: only the embeddings move
        c, store = pts.shape[0] // B, {}
        hooks = [("hook_embed", lambda x, hook: pts)]
        hooks += [(n, save_hook(store, n)) for n in names.values()]
        with scoped_hooks(model, fwd=hooks):
            return task.metric(model(task.clean.to(pts.device).repeat(c, 1))), store

    g_emb, g_col = _path_integral(e_c, e_k, q, max(1, cfg.max_tokens // (B * T)), f_of)
    grads = {t.name: [g_col.get(names[(t.name, l)], torch.zeros_like(acts_c[t.name][l]).float()) for l in range(L)]
             for t in types}
    scores = linear_scores(types, acts_c, acts_k, grads, per_pos)
    emb_attr = ((e_c.float() - e_k.float()) * g_emb).reshape(e_c.shape[0], -1).sum(-1)
    delta = float((emb_attr - (f_c - f_k).float()).mean())
    total = float((f_c - f_k).float().mean())
    return f_c, f_k, scores, {"path": f"input embeddings, {_PATHS[cfg.direction]}"}, {
        "completeness_delta": delta, "relative_delta": abs(delta) / max(abs(total), 1e-12)}


@takes_config(IGConfig)
def integrated_gradients(model, task, components: Sequence[str] = ("resid", "attn_head", "mlp"),
                         per_position=False, *, config: IGConfig) -> AttributionResult:
    """Component scores by IG: ``path='hooks'`` (default) interpolates each component hook in the
    corrupted run (completeness = patching of the hook); ``path='embeddings'`` interpolates the input
    embeddings corrupt -> clean and scores (a_n(x) - a_n(x~)) . mean gradient at every node (EAP-IG
    node form, cheaper, but not an estimate of patching node n: the gradient is taken on runs where
    *every* upstream node moves).  ``direction='noise'`` reverses both.  Settings: the fields of
    :class:`IGConfig` as keywords (``steps``, ``method``, ``max_tokens``, ``fast``, ``path``,
    ``direction``), or ``config=``; not both."""
    hooks = config.path == "hooks"
    cfg = config if config.steps else replace(config, steps=8 if hooks else DEFAULT_STEPS)
    types, per_pos = component_set(components, per_position)
    t0 = time.perf_counter()
    m_src, m_base, scores, method_config, extras = (_hook_ig if hooks else _embedding_ig)(model, task, types,
                                                                                        per_pos, cfg)
    return directed_result("ig", cfg.direction, t0, m_src, m_base, per_pos, scores=scores, extras=extras,
                           config={"direction": cfg.direction, "steps": cfg.steps, "method": cfg.method,
                                   **method_config})
