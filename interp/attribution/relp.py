"""Relevance patching (RelP): attribution patching with LRP propagation coefficients.

Algorithm (Jafari, Eberle, Khakzar, Nanda 2025, arXiv 2508.21258; docs/methods.md, RelP):
    RelP(n) = (a_n(x_clean) - a_n(x_corrupt)) . grad~_{a_n} m |_(x_corrupt)
where grad~ is the gradient of a *modified backward pass* (lrp_rules.py) over the unchanged
forward pass.  Steps: 1. forward clean, cache activations; 2. inside ``lrp_rules(model)``
forward corrupt, cache activations, one backward of sum_b m_b; 3. multiply, reduce.

Rule sets (``RULE_SETS``): ``default`` = LN-, Identity-, Half-rule, the paper's and its reference
implementation's default, and ours everywhere; ``default+cp-lrp`` adds the AH-rule (CP-LRP: the
attention pattern detached), which makes every layer conservative but tracks activation patching
less closely (tests/test_relp.py, slow).  Any list of rule names from ``LRP_RULES`` works.

Cost: as AtP, 2 forward + 1 backward, plus a few elementwise surrogate ops per layer.
Memory: as AtP plus one captured input per norm / MLP during the backward.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from interp.config import takes_config

from .atp import AtPConfig, gradient_patching
from .components import AttributionResult
from .lrp_rules import resolve_rules, rule_hooks


@dataclass(frozen=True)
class RelPConfig(AtPConfig):
    """Settings of :func:`relevance_patching`: AtP's ``direction``, the LRP rules and their epsilon."""

    rules: str | tuple[str, ...] = "default"
    """A rule-set name (``default``, ``default+cp-lrp``, ``default+cp-lrp+epsilon``) or a tuple of rule names."""
    epsilon: float = 1e-6
    """Stabiliser of the epsilon-rule (used only when it is active)."""

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.rules, str):
            object.__setattr__(self, "rules", tuple(self.rules))
        resolve_rules(self.rules)  # validates: unknown names, two rules for one site, renamed sets
        if self.epsilon <= 0:
            raise ValueError("epsilon must be > 0")


@takes_config(RelPConfig)
def relevance_patching(model, task, components: Sequence[str] = ("resid", "attn_head", "mlp"),
                       per_position=False, *, config: RelPConfig) -> AttributionResult:
    """RelP scores for every component (see module doc); the model is left exactly as it was.  Settings:
    the fields of :class:`RelPConfig` as keywords (``direction``, ``rules``, ``epsilon``), or ``config=``;
    not both."""
    rules = resolve_rules(config.rules)
    return gradient_patching(model, task, components, per_position, config, method="relp",
                             extra_fwd=rule_hooks(model, rules, config.epsilon),
                             record={"rules": [r.name for r in rules], "epsilon": config.epsilon})
