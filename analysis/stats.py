"""Experiment statistics on counts and arrays.

Library calls where they exist (scipy's Welch t-test, statsmodels' Holm, power and clustered
regressions); the few formulas written here are those no well-kept library offers for counts
(the unpooled two-proportion test with its log-ratio interval, the always-valid confidence
sequence, multivariate CUPED). Every test reports its p-value and its interval from the same
standard error. Every function returns plain floats (or None where a value is undefined, never
NaN) so the readouts serialise to strict JSON.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import NormalIndPower

# GrowthBook's default tuning of its sequential mode: the confidence sequence is narrowest
# around this many units in total (gbstats `sequential_tuning_parameter`).
SEQUENTIAL_TUNING_N = 5000


def finite(value: float | None) -> float | None:
    """None for NaN/inf (JSON has no NaN), the float otherwise."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass
class Comparison:
    """Treatment vs control on one metric. abs_* is treatment − control, rel_* is
    treatment / control − 1 (its interval from the log ratio, so not symmetric); `se` is the
    standard error of abs_lift, the one behind both the p-value and abs_ci; `se_log_ratio`
    the one behind rel_ci."""

    control_value: float
    treatment_value: float
    abs_lift: float
    abs_ci_low: float | None
    abs_ci_high: float | None
    rel_lift: float | None
    rel_ci_low: float | None
    rel_ci_high: float | None
    se: float | None
    se_log_ratio: float | None
    statistic: float | None
    df: float | None
    p_value: float | None

    def as_dict(self) -> dict[str, float | None]:
        return {k: finite(v) for k, v in asdict(self).items()}


def _log_ratio_interval(
    ratio: float, se_log: float | None, crit: float
) -> tuple[float | None, float | None]:
    if se_log is None or ratio <= 0:
        return None, None
    log_ratio = math.log(ratio)
    return math.exp(log_ratio - crit * se_log) - 1, math.exp(log_ratio + crit * se_log) - 1


def two_proportion_ztest(
    x_control: int, n_control: int, x_treatment: int, n_treatment: int, alpha: float = 0.05
) -> Comparison:
    """Unpooled (Wald) z-test: the p-value and the absolute interval use the same standard
    error (statsmodels' test_proportions_2indep / confint_proportions_2indep, method 'wald').
    The relative interval is that of the log risk ratio (Katz), asymmetric at small counts."""
    if min(n_control, n_treatment) <= 0:
        raise ValueError("both variants need at least one user")
    p1, p2 = x_control / n_control, x_treatment / n_treatment
    se = math.sqrt(p1 * (1 - p1) / n_control + p2 * (1 - p2) / n_treatment)
    zcrit = float(stats.norm.ppf(1 - alpha / 2))
    diff = p2 - p1
    if se > 0:
        z = diff / se
        p_value = float(2 * stats.norm.sf(abs(z)))
        low, high = diff - zcrit * se, diff + zcrit * se
    else:  # both rates 0 or 1: no variance, nothing to test
        z, p_value, low, high = None, (1.0 if diff == 0 else None), None, None
    rel = p2 / p1 - 1 if p1 > 0 else None
    se_log = (
        math.sqrt((1 - p1) / x_control + (1 - p2) / x_treatment)
        if min(x_control, x_treatment) > 0
        else None
    )
    rel_low, rel_high = _log_ratio_interval(p2 / p1 if p1 > 0 else 0.0, se_log, zcrit)
    return Comparison(
        p1, p2, diff, low, high, rel, rel_low, rel_high, se or None, se_log, z, None, p_value
    )


def welch_ttest(control: np.ndarray, treatment: np.ndarray, alpha: float = 0.05) -> Comparison:
    """Welch's unequal-variance t-test (scipy.stats.ttest_ind, equal_var=False) and its
    Welch–Satterthwaite interval; the relative interval is that of the log ratio of the means
    (delta method on the log scale, the same t quantile)."""
    a, b = np.asarray(control, dtype=float), np.asarray(treatment, dtype=float)
    if min(a.size, b.size) < 2:
        raise ValueError("each variant needs at least two users for a t-test")
    ma, mb = float(a.mean()), float(b.mean())
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = math.sqrt(va + vb)
    diff = mb - ma
    rel = mb / ma - 1 if ma > 0 else None
    if se == 0:
        p = 1.0 if diff == 0 else None
        return Comparison(ma, mb, diff, diff, diff, rel, None, None, None, None, None, None, p)
    result = stats.ttest_ind(b, a, equal_var=False)
    ci = result.confidence_interval(1 - alpha)
    tcrit = float(stats.t.ppf(1 - alpha / 2, result.df))
    se_log = math.sqrt(va / ma**2 + vb / mb**2) if min(ma, mb) > 0 else None
    rel_low, rel_high = _log_ratio_interval(mb / ma if ma > 0 else 0.0, se_log, tcrit)
    return Comparison(
        ma, mb, diff, float(ci.low), float(ci.high), rel, rel_low, rel_high, se, se_log,
        float(result.statistic), float(result.df), float(result.pvalue),
    )  # fmt: skip


def _ratio_of_means(num: np.ndarray, den: np.ndarray) -> tuple[float, float]:
    """sum(num) / sum(den) over one arm's users and the delta-method variance of that ratio:
    the variance of the mean of the linearised values (num - R·den) / mean(den)."""
    ratio = float(num.sum() / den.sum())
    linearised = (num - ratio * den) / den.mean()
    return ratio, float(linearised.var(ddof=1) / num.size)


def ratio_ztest(
    num_control: np.ndarray,
    den_control: np.ndarray,
    num_treatment: np.ndarray,
    den_treatment: np.ndarray,
    alpha: float = 0.05,
) -> Comparison:
    """A ratio metric whose unit of randomisation is the user but whose denominator is not
    (refunds per euro sold): each arm's sum(num) / sum(den), compared with a z-test on the
    delta-method standard errors (GrowthBook's and Eppo's ratio metrics). The relative
    interval is that of the log ratio. An arm whose denominator sums to 0 has no ratio: the
    comparison is then empty (NaN values, no p-value)."""
    arms = [
        np.asarray(a, dtype=float) for a in (num_control, den_control, num_treatment, den_treatment)
    ]
    if min(arms[0].size, arms[2].size) < 2:
        raise ValueError("each variant needs at least two users for a ratio metric")
    if arms[1].sum() <= 0 or arms[3].sum() <= 0:
        nan = float("nan")
        return Comparison(nan, nan, nan, None, None, None, None, None, None, None, None, None, None)
    rc, vc = _ratio_of_means(arms[0], arms[1])
    rt, vt = _ratio_of_means(arms[2], arms[3])
    diff, se = rt - rc, math.sqrt(vc + vt)
    zcrit = float(stats.norm.ppf(1 - alpha / 2))
    rel = rt / rc - 1 if rc > 0 else None
    se_log = math.sqrt(vc / rc**2 + vt / rt**2) if min(rc, rt) > 0 else None
    rel_low, rel_high = _log_ratio_interval(rt / rc if rc > 0 else 0.0, se_log, zcrit)
    if se == 0:
        p = 1.0 if diff == 0 else None
        return Comparison(
            rc, rt, diff, None, None, rel, rel_low, rel_high, None, se_log, None, None, p
        )
    z = diff / se
    return Comparison(
        rc, rt, diff, diff - zcrit * se, diff + zcrit * se, rel, rel_low, rel_high, se, se_log,
        z, None, float(2 * stats.norm.sf(abs(z))),
    )  # fmt: skip


def sequential_halfwidth(
    se: float | np.ndarray,
    n_total: int | np.ndarray,
    alpha: float = 0.05,
    tuning_n: int = SEQUENTIAL_TUNING_N,
) -> float | np.ndarray:
    """Half-width of the always-valid (1 − alpha) confidence sequence of Howard et al. (2021,
    normal mixture), as in GrowthBook's sequential mode: valid at every look, however many.
    `se` is the standard error of the estimate on `n_total` units (both arms); the mixture is
    tuned to be narrowest around `tuning_n` units. Works on arrays (the simulations)."""
    log_alpha = -2 * math.log(alpha)
    rho = (log_alpha + math.log(log_alpha + 1)) / tuning_n
    n = np.asarray(n_total, dtype=float)
    sigma2 = np.asarray(se, dtype=float) ** 2 * n  # the per-unit variance behind se
    half = np.sqrt(sigma2 * 2 * (n * rho + 1) / (n**2 * rho) * np.log(np.sqrt(n * rho + 1) / alpha))
    return float(half) if half.ndim == 0 else half


def sequential(
    result: Comparison, n_total: int, alpha: float = 0.05, tuning_n: int = SEQUENTIAL_TUNING_N
) -> dict[str, float | bool | None]:
    """The comparison's always-valid intervals (absolute, and relative on the log scale) and
    whether the absolute one excludes 0."""
    if result.se is None:
        return {"abs_ci_low": None, "abs_ci_high": None, "rel_ci_low": None,
                "rel_ci_high": None, "significant": False}  # fmt: skip
    half = sequential_halfwidth(result.se, n_total, alpha, tuning_n)
    low, high = result.abs_lift - half, result.abs_lift + half
    rel_low = rel_high = None
    if result.se_log_ratio is not None and result.rel_lift is not None:
        log_half = sequential_halfwidth(result.se_log_ratio, n_total, alpha, tuning_n)
        log_ratio = math.log1p(result.rel_lift)
        rel_low, rel_high = math.exp(log_ratio - log_half) - 1, math.exp(log_ratio + log_half) - 1
    return {
        "abs_ci_low": finite(low),
        "abs_ci_high": finite(high),
        "rel_ci_low": finite(rel_low),
        "rel_ci_high": finite(rel_high),
        "significant": bool(low > 0 or high < 0),
    }


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
) -> dict[str, float | list[float] | None]:
    """CUPED with one or more pre-period covariates (the columns of x): y − (x − mean x)·θ with
    θ the pooled least-squares coefficients (one covariate: cov(y, x) / var(x)), then Welch.
    Constant covariates are dropped. `variance_reduction` is that of the difference in means."""
    y, t = np.asarray(y, float), np.asarray(is_treatment, bool)
    x = np.asarray(x, float).reshape(len(y), -1)
    centred = x - x.mean(axis=0)
    keep = centred.std(axis=0) > 0
    theta = np.zeros(x.shape[1])
    if keep.any():
        theta[keep] = np.linalg.lstsq(centred[:, keep], y - y.mean(), rcond=None)[0]
    adjusted = y - centred @ theta
    result = welch_ttest(adjusted[~t], adjusted[t], alpha).as_dict()
    raw = _diff_variance(y, t)
    reduction = 1 - _diff_variance(adjusted, t) / raw if raw > 0 else 0.0
    return {
        **result,
        "theta": [float(v) for v in theta],
        "variance_reduction": finite(reduction),
    }


def _diff_variance(values: np.ndarray, is_treatment: np.ndarray) -> float:
    """Variance of the difference in means between the arms (Welch's SE squared)."""
    a, b = values[~is_treatment], values[is_treatment]
    return float(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)


def holm(p_values: dict[str, float | None]) -> dict[str, float | None]:
    """Holm–Bonferroni adjusted p-values (statsmodels multipletests); None stays None and is
    not counted."""
    names = [name for name, p in p_values.items() if p is not None]
    adjusted: dict[str, float | None] = dict.fromkeys(p_values)
    if names:
        corrected = multipletests([p_values[n] for n in names], method="holm")[1]
        adjusted.update({n: float(p) for n, p in zip(names, corrected, strict=True)})
    return adjusted


def search_level_effect(
    converted: np.ndarray, is_treatment: np.ndarray, user_ids: np.ndarray, alpha: float = 0.05
) -> dict[str, float | int | None] | None:
    """The treatment's effect on one search, with standard errors clustered by user: log-odds
    (statsmodels Logit), absolute (linear probability model) and relative (Poisson GLM, log
    link) differences. None when an arm is missing or no search (or every one) converted."""
    import statsmodels.api as sm

    y = np.asarray(converted, float)
    t = np.asarray(is_treatment, float)
    if y.size == 0 or t.min() == t.max() or y.min() == y.max():
        return None
    groups = np.unique(np.asarray(user_ids), return_inverse=True)[1]
    x = sm.add_constant(t)
    cluster = {"cov_type": "cluster", "cov_kwds": {"groups": groups}}
    logit = sm.Logit(y, x).fit(disp=0, **cluster)
    linear = sm.OLS(y, x).fit(**cluster)
    poisson = sm.GLM(y, x, family=sm.families.Poisson()).fit(**cluster)
    log_odds_ci = logit.conf_int(alpha)[1]
    abs_ci = linear.conf_int(alpha)[1]
    log_ratio_ci = poisson.conf_int(alpha)[1]
    return {
        "searches_control": int((t == 0).sum()),
        "searches_treatment": int((t == 1).sum()),
        "users": int(groups.max() + 1),
        "control_rate": finite(y[t == 0].mean()),
        "treatment_rate": finite(y[t == 1].mean()),
        "log_odds_ratio": finite(logit.params[1]),
        "log_odds_ci_low": finite(log_odds_ci[0]),
        "log_odds_ci_high": finite(log_odds_ci[1]),
        "abs_lift": finite(linear.params[1]),
        "abs_ci_low": finite(abs_ci[0]),
        "abs_ci_high": finite(abs_ci[1]),
        "rel_lift": finite(math.expm1(poisson.params[1])),
        "rel_ci_low": finite(math.expm1(log_ratio_ci[0])),
        "rel_ci_high": finite(math.expm1(log_ratio_ci[1])),
        "p_value": finite(logit.pvalues[1]),
    }


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
    arms, normal approximation on Cohen's h: statsmodels' NormalIndPower)."""
    target = baseline * (1 + mde_relative)
    if not (0 < baseline < 1 and 0 < target < 1):
        raise ValueError("baseline and baseline × (1 + mde) must both be strictly between 0 and 1")
    if mde_relative == 0:
        raise ValueError("a lift of 0 cannot be detected: give a non-zero minimum effect")
    _check_power(power, alpha)
    h = abs(cohens_h(target, baseline))
    return float(NormalIndPower().solve_power(effect_size=h, alpha=alpha, power=power, ratio=1))


def minimum_detectable_effect(
    baseline: float, n_per_arm: float, alpha: float = 0.05, power: float = 0.8
) -> float | None:
    """Smallest relative lift detectable with n users per arm (None when baseline is 0 or 1,
    or when even a rate of 1 would be missed too often)."""
    if not 0 < baseline < 1 or n_per_arm <= 0:
        return None
    _check_power(power, alpha)
    h = float(NormalIndPower().solve_power(nobs1=n_per_arm, alpha=alpha, power=power, ratio=1))
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
