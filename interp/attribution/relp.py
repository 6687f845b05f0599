"""Relevance patching (RelP): attribution patching with LRP propagation coefficients.

Algorithm (Jafari, Eberle, Khakzar, Nanda 2025, arXiv 2508.21258; docs/methods.md, RelP):
    RelP(n) = (a_n(x_clean) - a_n(x_corrupt)) . grad~_{a_n} m |_(x_corrupt)
where grad~ is the gradient of a *modified backward pass* (lrp_rules.py) over the unchanged
forward pass.  Steps: 1. forward clean, cache activations; 2. inside ``lrp_rules(model)``
forward corrupt, cache activations, one backward of sum_b m_b; 3. multiply, reduce.

Rule sets (``RULE_SETS``): ``default`` = LN-, Identity-, Half-rule, the paper's and its reference
implementation's default, and ours everywhere; ``default+cp-lrp`` adds the AH-rule (CP-LRP: the
attention pattern detached), which makes every layer conservative but tracks activation patching
less closely (tests/test_relp.py, slow).  ``all`` / ``all+epsilon`` are old names of the ``+cp-lrp``
sets (accepted with a warning).  Any list of rule names from ``LRP_RULES`` works.

Cost: as AtP, 2 forward + 1 backward, plus a few elementwise surrogate ops per layer.
Memory: as AtP plus one captured input per norm / MLP during the backward.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .atp import gradient_patching
from .components import AttributionResult
from .lrp_rules import RENAMED_RULE_SETS, resolve_rules, rule_hooks


@dataclass(frozen=True)
class RelPConfig:
    """Settings of :func:`relevance_patching`."""

    rules: str | tuple[str, ...] = "default"
    """A rule-set name (``default``, ``default+cp-lrp``, ``default+cp-lrp+epsilon``) or a tuple of rule names."""
    epsilon: float = 1e-6
    """Stabiliser of the epsilon-rule (used only when it is active)."""
    direction: str = "denoise"
    """``denoise`` (gradient at the corrupted run) or ``noise`` (at the clean run)."""

    def __post_init__(self):
        resolve_rules(self.rules)  # validates; an old set name warns once here and is replaced
        if isinstance(self.rules, str) and self.rules in RENAMED_RULE_SETS:
            object.__setattr__(self, "rules", RENAMED_RULE_SETS[self.rules])
        if self.epsilon <= 0:
            raise ValueError("epsilon must be > 0")


def relevance_patching(model, task, components: Sequence[str] = ("resid", "attn_head", "mlp"),
                       per_position=False, rules="default", config: RelPConfig | None = None) -> AttributionResult:
    """RelP scores for every component (see module doc); the model is left exactly as it was."""
    cfg = config or RelPConfig(rules=rules if isinstance(rules, str) else tuple(rules))
    hooks = rule_hooks(model, resolve_rules(cfg.rules), cfg.epsilon)
    names = [r.name for r in resolve_rules(cfg.rules)]
    return gradient_patching(model, task, components, per_position, cfg.direction, method="relp",
                             extra_fwd=hooks, config={"rules": names, "epsilon": cfg.epsilon})
