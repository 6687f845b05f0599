"""LRP rules as modified local Jacobians, installed as scoped hooks on an unchanged forward pass.

Each rule replaces the backward pass of one kind of layer so that gradient x input equals the
LRP relevance (Arras et al. 2025, LXT; the RelP reference is FarnoushRJ/RelP@aa0e228, see
docs/methods.md, LRP rules).  The trick that keeps the forward pass *bit-identical*: at the layer's
output hook we return

    y.detach() + (s - s.detach())

where ``y`` is the layer's true output and ``s`` a surrogate computed from the layer's
(captured) input whose Jacobian is the rule's.  The value is exactly ``y`` (``s - s.detach()``
is exactly zero) and the gradient is the surrogate's.  Nothing on the model is modified;
hooks are added with :func:`interp.models.scoped_hooks` and removed in ``finally``.

Rules (registry :data:`LRP_RULES`, one per *site*):

=============  =========  ========================================================================
rule           site       modified backward (conservation)
=============  =========  ========================================================================
LN-rule        norm       y = w * (x - mean x) / scale.detach() (+ b): the normaliser is a constant;
                          centring keeps its gradient.  Conserves up to the bias b.  Applies to every
                          LayerNorm / RMSNorm of the residual path (ln1, ln2, Gemma's post-norms,
                          ln_final); Gemma's (1 + w) offset is honoured.
Identity-rule  act        act(x) -> x * (act(x)/stab(x)).detach(): the GELU / SiLU passes relevance
                          through unchanged (conserves).  stab(z) = z + (1[z=0] + sign z) * 1e-6.
Half-rule      gate       g = act * lin -> gradient lin/2 to act and act/2 to lin (uniform rule, N=2;
                          conserves).  Gated (SwiGLU / GeGLU) MLPs only.
AH-rule        attention  CP-LRP: the attention pattern is detached, relevance flows only through
                          the values (conserves for bias-free value projections).
epsilon-rule   linear     grad_in = W^T (g * z / (z + eps sign z)) at every linear layer's output;
                          off by default: plain gradients are already LRP-0 for linear layers.
=============  =========  ========================================================================

Architectures: Llama family (SmolLM2), Gemma 3, GPT-2 and GPT-NeoX through TransformerBridge's
hook points ``blocks.L.ln*.hook_in/out``, ``blocks.L.mlp.hook_pre / hook_pre_linear / hook_post``
and ``blocks.L.attn.hook_pattern``.  Gemma's q/k norms only feed the pattern and are left alone.
On Gemma 3 the post-norm outputs the LN-rule replaces are the ``attn`` / ``mlp`` component hooks
themselves (``hook_attn_out`` / ``hook_mlp_out`` alias ``ln1_post`` / ``ln2_post.hook_out``), so the rule
hooks must run before a hook that saves a component (components.cache_components registers them first).
A block norm the rules do not know raises a ``ValueError`` naming it.

Memory: one captured tensor per norm / MLP input during the pass (released on exit).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from interp.models import scoped_hooks
from interp.models.hooks import save_hook
from interp.models.modules import norm_params, original

from .components import arch_name


def stabilize(z: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """z + (1[z == 0] + sign z) * eps: keeps divisions by z finite (RelP reference)."""
    return z + ((z == 0).to(z.dtype) + z.sign()) * eps


def _grad_through(y: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Value of ``y`` exactly, gradient of ``s``."""
    s = s.to(y.dtype)
    return y.detach() + (s - s.detach())


@dataclass(frozen=True)
class LRPRule:
    """One rule: where it applies and the surrogate that carries its modified gradient."""

    name: str
    site: str
    """``norm``, ``act``, ``gate``, ``attention`` or ``linear``: one active rule per site (what each rule
    does: the module doc's table)."""
    surrogate: Callable
    """Site-specific: norm ``(x, w, b, eps, rms) -> s``; act ``(pre, act_value) -> s``;
    gate ``(a, lin) -> s``; attention ``(pattern) -> pattern'``; linear ``(z, eps) -> factor``."""


def _ln_rule(x, w, b, eps, rms):
    xf = x.float()
    xc = xf if rms else xf - xf.mean(-1, keepdim=True)
    scale = (xc.pow(2).mean(-1, keepdim=True) + eps).sqrt()
    return xc * (w.float() / scale).detach()


LRP_RULES: dict[str, LRPRule] = {}


def register_rule(rule: LRPRule) -> LRPRule:
    """Add an LRP rule to the registry (e.g. an AttnLRP variant for the ``attention`` site)."""
    LRP_RULES[rule.name] = rule
    return rule


register_rule(LRPRule("LN-rule", "norm", _ln_rule))  # normaliser detached (Ali et al. 2022)
register_rule(LRPRule("Identity-rule", "act", lambda pre, act: pre * (act / stabilize(pre)).detach()))
register_rule(LRPRule("Half-rule", "gate", lambda a, lin: 0.5 * (a * lin)))  # relevance split equally
register_rule(LRPRule("AH-rule", "attention", lambda pattern: pattern.detach()))  # CP-LRP
register_rule(LRPRule("epsilon-rule", "linear", lambda z, eps: (z / stabilize(z, eps)).detach()))

RULE_SETS = {
    # the RelP paper's and reference implementation's default: the one to use
    "default": ("LN-rule", "Identity-rule", "Half-rule"),
    # + CP-LRP on attention (pattern detached): conservative layer by layer, but it drops the
    # pattern's gradient and tracks activation patching less closely than ``default`` on IOI
    "default+cp-lrp": ("LN-rule", "Identity-rule", "Half-rule", "AH-rule"),
    "default+cp-lrp+epsilon": ("LN-rule", "Identity-rule", "Half-rule", "AH-rule", "epsilon-rule"),
}

def resolve_rules(rules: str | Sequence[str]) -> tuple[LRPRule, ...]:
    """A rule-set name or a list of rule names -> rule objects (one per site, validated)."""
    if isinstance(rules, str):
        if rules not in RULE_SETS:
            raise ValueError(f"unknown LRP rule set {rules!r}; choose from {sorted(RULE_SETS)} or list rules "
                             f"from {sorted(LRP_RULES)}")
        rules = RULE_SETS[rules]
    bad = [r for r in rules if r not in LRP_RULES]
    if bad:
        raise ValueError(f"unknown LRP rule(s) {bad}; choose from {sorted(LRP_RULES)}")
    out = tuple(LRP_RULES[r] for r in rules)
    sites = [r.site for r in out]
    dup = {s for s in sites if sites.count(s) > 1}
    if dup:
        raise ValueError(f"two LRP rules for the same site {sorted(dup)}; give one rule per site")
    return out


_NORM_CHILDREN = ("ln1", "ln2", "ln1_post", "ln2_post")


def _norm_paths(model) -> list[str]:
    """Every residual-path norm of ``model``; a ``ValueError`` naming the architecture for a block norm the
    rules do not know (its relevance would pass unmodified and RelP would be silently another method)."""
    paths = []
    for l, block in enumerate(model.blocks):
        unknown = [c for c, m in block.named_children() if "Normalization" in type(m).__name__ and c not in _NORM_CHILDREN]
        if unknown:
            raise ValueError(f"LN-rule cannot serve {arch_name(model)}: blocks.{l}.{unknown[0]} is a norm "
                             f"the LRP rules do not cover (known: {', '.join(_NORM_CHILDREN)})")
        paths += [f"blocks.{l}.{c}" for c in _NORM_CHILDREN if block._modules.get(c) is not None]
    if hasattr(model, "ln_final"):
        paths.append("ln_final")
    return paths


def _act_fn(mlp):
    comp = original(mlp)
    for a in ("act_fn", "act", "activation_fn"):
        if hasattr(comp, a):
            return getattr(comp, a)
    raise ValueError(f"cannot find the activation function of {type(comp).__name__} for the LRP rules")


def rule_hooks(model, rules: Sequence[LRPRule], epsilon: float = 1e-6) -> list[tuple[str, Callable]]:
    """The forward hooks that implement ``rules`` on ``model`` (used by :func:`lrp_rules`)."""
    by_site = {r.site: r for r in rules}
    lin_rule, norm_rule, act_rule, gate_rule, attn_rule = map(by_site.get, ("linear", "norm", "act", "gate",
                                                                            "attention"))
    hooks: list[tuple[str, Callable]] = []
    if lin_rule:  # every linear sublayer (scoped_hooks refuses one without a hook_out: none is skipped)
        from transformer_lens.model_bridge.generalized_components.linear import LinearBridge

        for sub in (f"blocks.{l}.{s}" for l in range(model.cfg.n_layers) for s in ("attn", "mlp")):
            for name, mod in model.get_submodule(sub).named_children():
                if isinstance(mod, LinearBridge):
                    hooks.append((f"{sub}.{name}.hook_out",
                                  lambda z, hook: _grad_through(z, z * lin_rule.surrogate(z, epsilon))))
    if norm_rule:
        for path in _norm_paths(model):  # (scoped_hooks names a norm without hook_in / hook_out)
            box: dict = {}

            def out(y, hook, box=box, params=norm_params(model.get_submodule(path), model)):
                return _grad_through(y, norm_rule.surrogate(box.pop("x"), *params))

            hooks += [(f"{path}.hook_in", save_hook(box, "x")), (f"{path}.hook_out", out)]
    gated = bool(getattr(model.cfg, "gated_mlp", False))
    if act_rule or (gated and gate_rule):
        for l in range(model.cfg.n_layers):
            p = f"blocks.{l}.mlp"
            box = {}

            def post(y, hook, box=box, act=_act_fn(model.blocks[l].mlp) if gated else None):
                pre, lin = box.pop("pre"), box.pop("lin", None)
                a = y if act is None else act(pre)
                if act_rule:
                    a = act_rule.surrogate(pre, a.detach())
                if lin is not None:
                    a = gate_rule.surrogate(a, lin) if gate_rule else a * lin
                return _grad_through(y, a)

            hooks += [(f"{p}.hook_pre", save_hook(box, "pre")), (f"{p}.hook_post", post)]
            if gated:
                hooks.append((f"{p}.hook_pre_linear", save_hook(box, "lin")))
    if attn_rule:
        hooks += [(f"blocks.{l}.attn.hook_pattern", lambda pat, hook: attn_rule.surrogate(pat))
                  for l in range(model.cfg.n_layers)]
    return hooks


@contextmanager
def lrp_rules(model, rules: str | Sequence[str] = "default", epsilon: float = 1e-6):
    """Within the block, ``model``'s backward pass follows the LRP ``rules``; the forward is unchanged.

    The hooks are removed on exit, also when the block raises.
    """
    hooks = rule_hooks(model, resolve_rules(rules), epsilon)
    with scoped_hooks(model, fwd=hooks):
        yield model
