"""Training dynamics of massive activations: the five-parameter fit across checkpoints.

Gallego-Feliciano et al. 2025 (arXiv 2508.03616; docs/methods.md, Massive-activation dynamics) track, per layer ℓ, the ratio
r_ℓ(t) = top-1 |h^ℓ| / median |h^ℓ| of the residual output over training checkpoints t and fit

    f(t) = A · exp(-λ x) · log(x) + K,      x = γ t + t₀,      λ >= 0, γ > 0, t₀ > 0,

which rises to a peak at x* = exp(W(1/λ)) (W the Lambert W function; from λ x log x = 1), i.e.
t_peak = (exp(W(1/λ)) - t₀) / γ, and decays to K as t → ∞.

Algorithm (:func:`fit_dynamics`):

1. normalise the data: t' = t / max t, y' = (y - min y) / range(y) (constant curves are refused);
2. ``scipy.optimize.curve_fit`` with method ``trf`` (trust-region reflective, bounds above), the
   analytic Jacobian :func:`jacobian`, and the paper's initial values in normalised units:
   A = range(y'), K = min y' + A/2, λ = 1/std(t'), γ = 1/range(t'), t₀ = 1; a few more starts
   (λ, t₀ scaled) guard against a poor local optimum and the best R² wins;
3. map the parameters back to raw units (γ = γ'/max t, A = A'·range y, K = K'·range y + min y;
   λ, t₀ are unchanged because x is unchanged) and report R² = 1 - SS_res/SS_tot on raw data.

:func:`checkpoint_dynamics` loads every checkpoint of a folder (``step_<N>`` sub-folders holding
Hugging Face checkpoints, as :mod:`interp.toy.bigram_backcopy` writes them), computes
r_ℓ with :func:`interp.phenomena.massive.massive_stats` and fits every layer.

Memory: one checkpoint at a time; the fit is O(n_checkpoints) per layer.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np


def curve(t, A, lam, gamma, t0, K):
    """f(t) = A exp(-lam x) log x + K with x = gamma t + t0."""
    x = gamma * np.asarray(t, dtype=float) + t0
    return A * np.exp(-lam * x) * np.log(x) + K


def jacobian(t, A, lam, gamma, t0, K):
    """[len(t), 5] analytic derivatives of :func:`curve` w.r.t. (A, lam, gamma, t0, K)."""
    t = np.asarray(t, dtype=float)
    x = gamma * t + t0
    e, lg = np.exp(-lam * x), np.log(x)
    dx = A * e * (1.0 / x - lam * lg)  # df/dx
    return np.stack([e * lg, -A * x * e * lg, dx * t, dx, np.ones_like(t)], axis=1)


def t_peak(lam: float, gamma: float, t0: float) -> float:
    """Training time of the curve's extremum: (exp(W(1/lam)) - t0) / gamma (inf if lam == 0)."""
    from scipy.special import lambertw

    if lam <= 0:
        return math.inf
    return float((np.exp(lambertw(1.0 / lam).real) - t0) / gamma)


@dataclass
class DynamicsFit:
    """The five-parameter fit of one curve."""

    A: float
    """Amplitude."""
    lam: float
    """Decay rate λ (>= 0)."""
    gamma: float
    """Time scale γ (> 0) in 1/steps."""
    t0: float
    """Offset t₀ (> 0)."""
    K: float
    """Asymptote as t → ∞."""
    r2: float
    """Coefficient of determination on the raw data."""
    t_peak: float
    """Step of the extremum, (exp(W(1/λ)) - t₀)/γ."""
    n_points: int
    """Points fitted."""

    def predict(self, t) -> np.ndarray:
        return curve(t, self.A, self.lam, self.gamma, self.t0, self.K)


def fit_dynamics(t, y) -> DynamicsFit:
    """Fit f(t) = A exp(-λ(γt+t₀)) log(γt+t₀) + K to ``(t, y)`` (see module docstring)."""
    from scipy.optimize import OptimizeWarning, curve_fit

    t, y = np.asarray(t, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    if t.shape != y.shape:
        raise ValueError(f"t and y differ in length: {t.shape[0]} vs {y.shape[0]}")
    if len(t) < 5:
        raise ValueError(f"the five-parameter fit needs at least 5 points, got {len(t)}")
    if not (np.isfinite(t).all() and np.isfinite(y).all()):
        raise ValueError("t and y must be finite")
    if (t < 0).any():
        raise ValueError("training times t must be >= 0")
    t_scale, y_min, y_range = t.max(), y.min(), np.ptp(y)
    if t_scale <= 0:
        raise ValueError("all training times are 0; need checkpoints at different steps")
    if y_range <= 0:
        raise ValueError("y is constant; there is no dynamics to fit")
    tn, yn = t / t_scale, (y - y_min) / y_range
    # A = range(y') = 1, K = min y' + A / 2 = 0.5 in the normalised units (exactly: y' spans 0..1)
    base = np.array([1.0, 1.0 / max(np.std(tn), 1e-9), 1.0 / max(np.ptp(tn), 1e-9), 1.0, 0.5])
    lo = [-np.inf, 0.0, 1e-9, 1e-9, -np.inf]
    fits = []
    starts = base * np.array([[1, 1, 1, 1, 1], [1, 0.3, 3, 0.1, 1], [1, 3, 1, 0.1, 1], [-1, 1, 1, 1, 1],
                              [3, 0.5, 10, 0.05, 1], [1, 0.1, 30, 0.01, 1]])  # (A, λ, γ, t₀, K) scaled
    for p0 in np.clip(starts, [-1e9, 0, 1e-6, 1e-6, -1e9], 1e9):
        try:
            # covariance is not used; flat directions are expected
            with warnings.catch_warnings(action="ignore", category=OptimizeWarning):
                p, _ = curve_fit(curve, tn, yn, p0=p0, jac=jacobian, method="trf", bounds=(lo, np.inf),
                                 max_nfev=20000)
        except (RuntimeError, ValueError):
            continue
        sse = float(((curve(tn, *p) - yn) ** 2).sum())
        if np.isfinite(sse):
            fits.append((sse, p))
    if not fits:
        raise RuntimeError("the dynamics fit did not converge from any start")
    A, lam, g, t0, K = min(fits, key=lambda f: f[0])[1]
    A, g, K = A * y_range, g / t_scale, K * y_range + y_min
    r2 = 1.0 - float(((curve(t, A, lam, g, t0, K) - y) ** 2).sum() / ((y - y.mean()) ** 2).sum())
    return DynamicsFit(float(A), float(lam), float(g), float(t0), float(K), r2, t_peak(lam, g, t0), len(t))


def list_checkpoints(directory: str | Path) -> list[tuple[int, Path]]:
    """``(step, folder)`` for every sub-folder whose name ends in digits and holds ``config.json``."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"checkpoint folder {str(directory)!r} does not exist")
    out = sorted((int(m.group(1)), p.parent) for p in directory.glob("*/config.json")
                 if (m := re.search(r"(\d+)$", p.parent.name)))
    if len(out) < 5:
        raise ValueError(f"{str(directory)!r} holds {len(out)} checkpoints (sub-folders like step_100 with "
                         "config.json); the five-parameter dynamics fit needs at least 5")
    return out


@dataclass
class CheckpointDynamics:
    """Per-layer massive-activation ratio over checkpoints, and its fit."""

    steps: list[int]
    """Training step of each checkpoint."""
    hooks: list[str]
    """Residual hooks (one per layer)."""
    ratio: list[list[float]]
    """[n_checkpoints][L] top-1/median |h| ratio r_ℓ(t)."""
    fits: list[DynamicsFit | None]
    """Per layer, the fit (``None`` where it failed; see ``errors``)."""
    errors: list[str | None]
    """Per layer, why the fit failed."""


def checkpoint_dynamics(directory, tokens_for, config=None, device=None) -> CheckpointDynamics:
    """Load each checkpoint in ``directory``, compute r_ℓ on ``tokens_for(model)``, fit every layer."""
    from interp.models import load_model

    from .massive import massive_stats

    steps, ratios, hooks = [], [], None
    for step, path in list_checkpoints(directory):
        model = load_model(str(path), device=device)
        st = massive_stats(model, tokens_for(model), config)
        if hooks is not None and st.hooks != hooks:
            raise ValueError(f"checkpoint {path} has hooks {st.hooks}, earlier ones {hooks}")
        hooks = st.hooks
        steps.append(step)
        ratios.append(st.ratio.tolist())
        del model
    fits, errors = (list(x) for x in zip(*(_fit_or_error(steps, y) for y in np.array(ratios).T)))
    return CheckpointDynamics(steps, hooks, ratios, fits, errors)


def _fit_or_error(t, y) -> tuple[DynamicsFit | None, str | None]:
    try:
        return fit_dynamics(t, y), None
    except (ValueError, RuntimeError) as e:
        return None, str(e)
