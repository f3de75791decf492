"""Experiment statistics on counts and arrays (scipy only; statsmodels is the test reference).

Every function returns plain floats (or None where a value is undefined, never NaN) so the
readouts serialise to strict JSON.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import optimize, stats


def finite(value: float | None) -> float | None:
    """None for NaN/inf (JSON has no NaN), the float otherwise."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass
class ProportionTest:
    control_rate: float
    treatment_rate: float
    abs_lift: float
    abs_ci_low: float | None
    abs_ci_high: float | None
    rel_lift: float | None
    rel_ci_low: float | None
    rel_ci_high: float | None
    z: float | None
    p_value: float | None

    def as_dict(self) -> dict[str, float | None]:
        return {k: finite(v) for k, v in asdict(self).items()}


def two_proportion_ztest(
    x_control: int, n_control: int, x_treatment: int, n_treatment: int, alpha: float = 0.05
) -> ProportionTest:
    """z-test with pooled variance for the p-value; unpooled (Wald) interval for the absolute
    lift; delta-method interval for the relative lift (treatment / control − 1)."""
    if min(n_control, n_treatment) <= 0:
        raise ValueError("both variants need at least one user")
    p1, p2 = x_control / n_control, x_treatment / n_treatment
    pooled = (x_control + x_treatment) / (n_control + n_treatment)
    se_pooled = math.sqrt(pooled * (1 - pooled) * (1 / n_control + 1 / n_treatment))
    var1, var2 = p1 * (1 - p1) / n_control, p2 * (1 - p2) / n_treatment
    se = math.sqrt(var1 + var2)
    zcrit = stats.norm.ppf(1 - alpha / 2)
    diff = p2 - p1
    z = diff / se_pooled if se_pooled > 0 else None
    p_value = 2 * stats.norm.sf(abs(z)) if z is not None else (1.0 if diff == 0 else None)
    rel = rel_low = rel_high = None
    if p1 > 0:
        rel = p2 / p1 - 1
        se_rel = math.sqrt(var2 / p1**2 + p2**2 * var1 / p1**4)
        rel_low, rel_high = rel - zcrit * se_rel, rel + zcrit * se_rel
    return ProportionTest(
        p1, p2, diff, diff - zcrit * se, diff + zcrit * se, rel, rel_low, rel_high, z, p_value
    )


@dataclass
class MeanTest:
    control_mean: float
    treatment_mean: float
    diff: float
    ci_low: float | None
    ci_high: float | None
    t: float | None
    df: float | None
    p_value: float | None

    def as_dict(self) -> dict[str, float | None]:
        return {k: finite(v) for k, v in asdict(self).items()}


def welch_ttest(control: np.ndarray, treatment: np.ndarray, alpha: float = 0.05) -> MeanTest:
    """Welch's unequal-variance t-test with a Welch–Satterthwaite interval for the difference."""
    a, b = np.asarray(control, dtype=float), np.asarray(treatment, dtype=float)
    if min(a.size, b.size) < 2:
        raise ValueError("each variant needs at least two users for a t-test")
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    diff = b.mean() - a.mean()
    se = math.sqrt(va + vb)
    if se == 0:
        return MeanTest(
            a.mean(), b.mean(), diff, diff, diff, None, None, 1.0 if diff == 0 else None
        )
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    t = diff / se
    p = 2 * stats.t.sf(abs(t), df)
    tcrit = stats.t.ppf(1 - alpha / 2, df)
    return MeanTest(a.mean(), b.mean(), diff, diff - tcrit * se, diff + tcrit * se, t, df, p)


def winsorize(values: np.ndarray, upper_quantile: float) -> tuple[np.ndarray, float]:
    """Cap values at the given quantile of the pooled sample; returns (capped, cap)."""
    cap = float(np.quantile(values, upper_quantile)) if values.size else 0.0
    return np.minimum(values, cap), cap


def srm_test(observed: dict[str, int], planned: dict[str, float], threshold: float = 0.001) -> dict:
    """Chi-square goodness of fit of exposures against the planned split."""
    names = list(planned)
    counts = np.array([observed.get(n, 0) for n in names], dtype=float)
    total = counts.sum()
    if total == 0:
        return {"chi2": None, "p_value": None, "flagged": False}
    expected = np.array([planned[n] for n in names]) * total
    chi2, p = stats.chisquare(counts, expected)
    return {"chi2": finite(chi2), "p_value": finite(p), "flagged": bool(p < threshold)}


def cuped(
    y: np.ndarray, x: np.ndarray, is_treatment: np.ndarray, alpha: float = 0.05
) -> dict[str, float | None]:
    """CUPED: y − θ(x − mean x) with θ = cov(y, x) / var(x) on the pooled sample, then Welch."""
    y, x, t = np.asarray(y, float), np.asarray(x, float), np.asarray(is_treatment, bool)
    var_x = x.var(ddof=1)
    theta = float(np.cov(y, x, ddof=1)[0, 1] / var_x) if var_x > 0 else 0.0
    adjusted = y - theta * (x - x.mean())
    result = welch_ttest(adjusted[~t], adjusted[t], alpha).as_dict()
    # what the readout gains: the variance of the difference, not of the pooled metric (rho^2)
    reduction = 1 - _diff_variance(adjusted, t) / raw if (raw := _diff_variance(y, t)) > 0 else 0.0
    return {**result, "theta": finite(theta), "variance_reduction": finite(reduction)}


def _diff_variance(values: np.ndarray, is_treatment: np.ndarray) -> float:
    """Variance of the difference in means between the arms (Welch's SE squared)."""
    a, b = values[~is_treatment], values[is_treatment]
    return float(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)


def holm(p_values: dict[str, float | None]) -> dict[str, float | None]:
    """Holm–Bonferroni adjusted p-values (None stays None and is not counted)."""
    valid = sorted((p, name) for name, p in p_values.items() if p is not None)
    m = len(valid)
    adjusted: dict[str, float | None] = {name: None for name in p_values}
    running = 0.0
    for i, (p, name) in enumerate(valid):
        running = max(running, min(1.0, (m - i) * p))
        adjusted[name] = running
    return adjusted


def _power_two_sided(h: float, n_per_arm: float, alpha: float) -> float:
    zcrit = stats.norm.ppf(1 - alpha / 2)
    shift = abs(h) * math.sqrt(n_per_arm / 2)
    return float(stats.norm.sf(zcrit - shift) + stats.norm.cdf(-zcrit - shift))


def cohens_h(p_treatment: float, p_control: float) -> float:
    return 2 * math.asin(math.sqrt(p_treatment)) - 2 * math.asin(math.sqrt(p_control))


def _check_power(power: float, alpha: float) -> None:
    # a two-sided test already rejects with probability alpha when there is no effect
    if not alpha < power < 1:
        raise ValueError(f"power must be above alpha ({alpha}) and below 1, e.g. 0.8")


def sample_size_per_arm(
    baseline: float, mde_relative: float, alpha: float = 0.05, power: float = 0.8
) -> float:
    """Users per arm to detect a relative lift `mde_relative` on `baseline` (two-sided, equal
    arms, normal approximation on Cohen's h — the same calculation as statsmodels'
    NormalIndPower)."""
    target = baseline * (1 + mde_relative)
    if not (0 < baseline < 1 and 0 < target < 1):
        raise ValueError("baseline and baseline × (1 + mde) must both be strictly between 0 and 1")
    if mde_relative == 0:
        raise ValueError("a lift of 0 cannot be detected: give a non-zero minimum effect")
    _check_power(power, alpha)
    h = cohens_h(target, baseline)
    return float(optimize.brentq(lambda n: _power_two_sided(h, n, alpha) - power, 1e-6, 1e12))


def minimum_detectable_effect(
    baseline: float, n_per_arm: float, alpha: float = 0.05, power: float = 0.8
) -> float | None:
    """Smallest relative lift detectable with n users per arm (None when baseline is 0 or 1)."""
    if not 0 < baseline < 1 or n_per_arm <= 0:
        return None
    _check_power(power, alpha)
    h = optimize.brentq(lambda e: _power_two_sided(e, n_per_arm, alpha) - power, 1e-9, 10)
    target_angle = h / 2 + math.asin(math.sqrt(baseline))
    if target_angle >= math.pi / 2:
        return None
    return math.sin(target_angle) ** 2 / baseline - 1


def chance_to_win(
    x_control: int, n_control: int, x_treatment: int, n_treatment: int, draws: int = 20000
) -> float:
    """Bayesian P(treatment rate > control rate) with Beta(1, 1) priors (seeded Monte Carlo)."""
    rng = np.random.default_rng(0)
    a = rng.beta(1 + x_control, 1 + n_control - x_control, draws)
    b = rng.beta(1 + x_treatment, 1 + n_treatment - x_treatment, draws)
    return float((b > a).mean())
