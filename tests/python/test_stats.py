"""Experiment statistics: proven by simulation, with statsmodels and scipy as the reference."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import statsmodels.api as sm
from scipy import stats as sps
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_effectsize,
)
from statsmodels.stats.proportion import (
    test_proportions_2indep as proportions_2indep_test,
)
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from analysis import stats
from analysis.experiments import ExperimentError, readout, validate_readout
from railflow.experiment_registry import REGISTRY_PATH, Experiment, RegistryError, load_registry
from railflow.settings import REPO_ROOT

RUNS = 2000


def test_conversion_intervals_cover_the_true_lift_at_the_nominal_rate() -> None:
    rng = np.random.default_rng(7)
    p_c, p_t, n = 0.20, 0.23, 3000
    xc, xt = rng.binomial(n, p_c, RUNS), rng.binomial(n, p_t, RUNS)
    abs_hits = rel_hits = 0
    for a, b in zip(xc, xt, strict=True):
        r = stats.two_proportion_ztest(int(a), n, int(b), n)
        abs_hits += r.abs_ci_low <= p_t - p_c <= r.abs_ci_high
        rel_hits += r.rel_ci_low <= p_t / p_c - 1 <= r.rel_ci_high
    assert 0.93 <= abs_hits / RUNS <= 0.97
    assert 0.93 <= rel_hits / RUNS <= 0.97


def test_relative_interval_misses_evenly_on_both_sides_at_small_counts() -> None:
    """Baseline 0.02, 3,000 users per arm: the delta-method interval misses 5.1% above and
    0.6% below; the log-ratio interval about 2.5% on each side."""
    rng = np.random.default_rng(11)
    n, p_c, lift = 3000, 0.02, 0.2
    above = below = 0
    for a, b in zip(
        rng.binomial(n, p_c, RUNS), rng.binomial(n, p_c * (1 + lift), RUNS), strict=True
    ):
        r = stats.two_proportion_ztest(int(a), n, int(b), n)
        above += r.rel_ci_low > lift
        below += r.rel_ci_high < lift
        assert r.rel_ci_high - r.rel_lift > r.rel_lift - r.rel_ci_low  # not symmetric
    assert 0.01 <= above / RUNS <= 0.04 and 0.01 <= below / RUNS <= 0.04


def test_revenue_intervals_cover_the_true_lift() -> None:
    rng = np.random.default_rng(8)
    abs_hits = rel_hits = 0
    runs = RUNS
    for _ in range(runs):
        a = rng.exponential(20, 800) * (rng.random(800) < 0.3)
        b = rng.exponential(22, 800) * (rng.random(800) < 0.3)
        r = stats.welch_ttest(a, b)
        abs_hits += r.abs_ci_low <= 0.3 * 2 <= r.abs_ci_high
        rel_hits += r.rel_ci_low <= 22 / 20 - 1 <= r.rel_ci_high
    assert 0.93 <= abs_hits / runs <= 0.97
    assert 0.93 <= rel_hits / runs <= 0.97


def test_p_value_and_interval_agree_at_an_uneven_split() -> None:
    """Same standard error behind both: p < 0.05 exactly when the 95% CI excludes 0 (1:3)."""
    rng = np.random.default_rng(12)
    n_c, n_t = 1000, 3000
    disagree = 0
    for a, b in zip(rng.binomial(n_c, 0.1, RUNS), rng.binomial(n_t, 0.115, RUNS), strict=True):
        r = stats.two_proportion_ztest(int(a), n_c, int(b), n_t)
        disagree += (r.p_value < 0.05) != (r.abs_ci_low > 0 or r.abs_ci_high < 0)
    assert disagree == 0


def test_ztest_equals_statsmodels() -> None:
    r = stats.two_proportion_ztest(180, 1000, 215, 1010)
    z, p = proportions_2indep_test(215, 1010, 180, 1000, method="wald", return_results=False)
    low, high = confint_proportions_2indep(215, 1010, 180, 1000, method="wald")
    assert (r.statistic, r.p_value) == pytest.approx((z, p), rel=1e-9)
    assert (r.abs_ci_low, r.abs_ci_high) == pytest.approx((low, high), rel=1e-9)
    rel_low, rel_high = confint_proportions_2indep(
        215, 1010, 180, 1000, method="log", compare="ratio"
    )
    assert (r.rel_ci_low + 1, r.rel_ci_high + 1) == pytest.approx((rel_low, rel_high), rel=1e-3)


def test_welch_equals_statsmodels() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(10, 3, 400), rng.normal(10.6, 4, 350)
    r = stats.welch_ttest(a, b)
    cm = CompareMeans(DescrStatsW(b), DescrStatsW(a))
    t, p, df = cm.ttest_ind(usevar="unequal")
    low, high = cm.tconfint_diff(usevar="unequal")
    assert (r.statistic, r.p_value, r.df) == pytest.approx((t, p, df), rel=1e-9)
    assert (r.abs_ci_low, r.abs_ci_high) == pytest.approx((low, high), rel=1e-9)


@pytest.mark.parametrize(("baseline", "mde"), [(0.05, 0.10), (0.2, 0.05), (0.5, 0.02)])
def test_power_equals_statsmodels(baseline: float, mde: float) -> None:
    h = proportion_effectsize(baseline * (1 + mde), baseline)
    expected = NormalIndPower().solve_power(effect_size=h, alpha=0.05, power=0.8, ratio=1.0)
    assert stats.sample_size_per_arm(baseline, mde) == pytest.approx(expected, rel=1e-6)
    back = stats.minimum_detectable_effect(baseline, math.ceil(expected))
    assert back == pytest.approx(mde, rel=0.01)


def test_holm_matches_the_definition() -> None:
    adjusted = stats.holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": None})
    assert adjusted == pytest.approx({"a": 0.03, "b": 0.06, "c": 0.06, "d": None})


def _looks(rng: np.random.Generator, p_c: float, p_t: float, runs: int, looks: int, step: int):
    """Cumulative conversions of `runs` experiments read out at `looks` equally spaced looks."""
    n = step * np.arange(1, looks + 1)
    xc = rng.binomial(step, p_c, (runs, looks)).cumsum(axis=1)
    xt = rng.binomial(step, p_t, (runs, looks)).cumsum(axis=1)
    rc, rt = xc / n, xt / n
    se = np.sqrt(rc * (1 - rc) / n + rt * (1 - rt) / n)
    return rt - rc, se, n, (xc, xt)


def test_sequential_intervals_hold_over_twenty_looks() -> None:
    """An A/A test read out 20 times and stopped at the first significant look: the fixed
    test is wrong about a quarter of the time, the confidence sequence at most 5.5%; and the
    sequence covers a true lift at every one of the 20 looks at least 94% of the time."""
    rng = np.random.default_rng(13)
    looks, step = 20, 250
    diff, se, n, (xc, xt) = _looks(rng, 0.1, 0.1, RUNS, looks, step)
    # the vectorised z agrees with the reference (statsmodels, unpooled Wald)
    for run, look in ((0, 0), (5, 19), (17, 9)):
        z, _ = proportions_2indep_test(
            xt[run, look], n[look], xc[run, look], n[look], method="wald", return_results=False
        )
        assert diff[run, look] / se[run, look] == pytest.approx(z, rel=1e-9)
    half = stats.sequential_halfwidth(se, 2 * n)
    fixed_false_positive = (np.abs(diff) > sps.norm.ppf(0.975) * se).any(axis=1).mean()
    sequential_false_positive = (np.abs(diff) > half).any(axis=1).mean()
    assert fixed_false_positive > 0.15  # peeking at a fixed-horizon test does inflate it
    assert sequential_false_positive <= 0.055
    diff, se, n, _ = _looks(rng, 0.1, 0.115, RUNS, looks, step)
    half = stats.sequential_halfwidth(se, 2 * n)
    covered = (np.abs(diff - 0.015) <= half).all(axis=1).mean()
    assert covered >= 0.94


def test_sequential_interval_is_wider_than_fixed_and_shrinks() -> None:
    r = stats.two_proportion_ztest(200, 2000, 250, 2000)
    seq = stats.sequential(r, 4000)
    assert seq["abs_ci_low"] < r.abs_ci_low and seq["abs_ci_high"] > r.abs_ci_high
    assert seq["rel_ci_low"] < r.rel_ci_low and seq["rel_ci_high"] > r.rel_ci_high
    assert stats.sequential_halfwidth(0.01, 20_000) < stats.sequential_halfwidth(0.02, 5_000)


def test_cuped_reduces_variance_without_bias() -> None:
    rng = np.random.default_rng(3)
    n = 4000
    x = rng.gamma(2, 10, n)
    searches = rng.poisson(x / 5)
    t = rng.random(n) < 0.5
    y = 0.8 * x + 0.5 * searches + rng.normal(0, 5, n) + 2.0 * t
    plain = stats.welch_ttest(y[~t], y[t])
    one = stats.cuped(y, x, t)
    both = stats.cuped(y, np.column_stack([x, searches, np.ones(n)]), t)  # constant dropped
    assert one["theta"][0] == pytest.approx(np.cov(y, x)[0, 1] / x.var(ddof=1), rel=1e-9)
    assert both["variance_reduction"] > one["variance_reduction"] > 0.5
    # the reduction reported is that of the difference's variance: the squared width ratio
    width = (both["abs_ci_high"] - both["abs_ci_low"]) / (plain.abs_ci_high - plain.abs_ci_low)
    assert both["variance_reduction"] == pytest.approx(1 - width**2, abs=1e-3)
    assert both["abs_ci_low"] <= 2.0 <= both["abs_ci_high"]
    # the same adjustment as a regression on the centred covariates (statsmodels OLS)
    ols = sm.OLS(y, sm.add_constant(np.column_stack([t, x, searches]).astype(float))).fit()
    assert both["abs_lift"] == pytest.approx(ols.params[1], abs=0.05)


def test_search_level_effect_covers_the_planted_effect_with_clustered_errors() -> None:
    """Several searches per user sharing a user effect (+0.6 log-odds per search): the
    clustered intervals cover the true marginal effects (from the true probabilities, as the
    world's truth does) and are wider than the naive ones."""
    rng = np.random.default_rng(21)
    users = 3000
    treated_user = rng.random(users) < 0.5
    user = np.repeat(np.arange(users), rng.integers(1, 6, users))
    base = -0.2 + rng.normal(0, 1.0, users)[user]
    p_c, p_t = 1 / (1 + np.exp(-base)), 1 / (1 + np.exp(-(base + 0.6)))
    treated = treated_user[user]
    booked = rng.random(user.size) < np.where(treated, p_t, p_c)
    effect = stats.search_level_effect(booked, treated, user.astype(str))
    assert effect is not None and effect["users"] == users
    logit = np.log(p_t.mean() / (1 - p_t.mean())) - np.log(p_c.mean() / (1 - p_c.mean()))
    assert effect["log_odds_ci_low"] < logit < effect["log_odds_ci_high"]
    assert effect["abs_ci_low"] < p_t.mean() - p_c.mean() < effect["abs_ci_high"]
    assert effect["rel_ci_low"] < p_t.mean() / p_c.mean() - 1 < effect["rel_ci_high"]
    naive = sm.Logit(booked.astype(float), sm.add_constant(treated.astype(float)))
    naive_width = np.diff(naive.fit(disp=0).conf_int()[1])[0]
    assert effect["log_odds_ci_high"] - effect["log_odds_ci_low"] > 1.1 * naive_width
    assert stats.search_level_effect(booked, np.zeros(user.size), user) is None


DESIGN = Experiment(
    experiment_id="x",
    hypothesis="h",
    owner="o",
    unit="user",
    planned_split={"control": 0.5, "treatment": 0.5},
    start_day=0,
    planned_duration_days=30,
    planned_users_per_arm=None,
    primary_metric="conversion",
    secondary_metrics=("revenue_per_user", "bookings_per_user"),
    guardrail_metrics=("refund_rate",),
    exposure_trigger=None,
)
PAST_END = {"is_past_planned_duration": True, "data_end_at": None, "planned_end_at": None}


def outcomes(
    rows: list[tuple[str, str, bool, float]], refunds: list[float] | None = None
) -> pl.DataFrame:
    at = datetime(2026, 4, 1, tzinfo=UTC)
    return pl.DataFrame(
        {
            "experiment_id": [r[0] for r in rows],
            "variant": [r[1] for r in rows],
            "is_converted": [r[2] for r in rows],
            "bookings": [int(r[2]) for r in rows],
            "searches": [1 + int(r[2]) for r in rows],
            "revenue_eur": [r[3] for r in rows],
            "refund_eur": refunds or [0.0 for _ in rows],
            # revenue is net of refunds: gross = net + refund (no discount here)
            "gross_revenue_eur": [
                r[3] + f for r, f in zip(rows, refunds or [0.0] * len(rows), strict=True)
            ],
            "discount_eur": [0.0 for _ in rows],
            "pre_exposure_searches": [i % 3 for i in range(len(rows))],
            "pre_exposure_bookings": [0 for _ in rows],
            "pre_exposure_revenue_eur": [0.0 for _ in rows],
            "pre_exposure_quoted_eur": [0.0 for _ in rows],
            "exposed_at": [at for _ in rows],
            "outcome_window_end_at": [at.replace(day=15) for _ in rows],
            "is_outcome_window_complete": [True for _ in rows],
        }
    )


def _arms(n: int, conv_c: int, conv_t: int) -> list[tuple[str, str, bool, float]]:
    """n users per arm, the first conv_* of each converted (10 EUR each)."""
    return [
        ("x", variant, i < conv, 10.0 * (i < conv))
        for variant, conv in (("control", conv_c), ("treatment", conv_t))
        for i in range(n)
    ]


def test_primary_metric_decides_unadjusted_and_holm_covers_secondary_only() -> None:
    # conversion p ≈ 0.03: significant alone, not after a Holm step over three metrics
    df = outcomes(_arms(2000, 400, 455))
    doc = readout("x", df, design=DESIGN, status=PAST_END)
    validate_readout(doc)
    conv = doc["metrics"]["conversion"]
    assert 0.01 < conv["p_value"] < 0.05 and "p_value_holm" not in conv
    assert doc["decision"] == "ship" and doc["analysis"]["mode"] == "fixed-horizon"
    assert set(doc["holm_adjusted_p_values"]) == {"revenue_per_user", "bookings_per_user"}
    p = [doc["metrics"][m]["p_value"] for m in ("revenue_per_user", "bookings_per_user")]
    expected = stats.holm(dict(zip(("r", "b"), p, strict=True)))
    assert doc["holm_adjusted_p_values"]["revenue_per_user"] == pytest.approx(expected["r"])
    # before the planned end the same data is read sequentially: not enough yet
    early = readout("x", df, design=DESIGN, status=None)
    assert early["analysis"]["mode"] == "sequential" and early["decision"] == "inconclusive"
    seq = early["metrics"]["conversion"]["sequential"]
    assert seq["abs_ci_low"] < 0 < seq["abs_ci_high"]


def test_a_broken_guardrail_blocks_a_ship() -> None:
    rows = _arms(2000, 400, 520)
    # treatment refunds 5 EUR on 400 of its 520 sales, control refunds nothing
    refunds = [0.0] * 2000 + [5.0 if i < 400 else 0.0 for i in range(2000)]
    doc = readout("x", outcomes(rows, refunds), design=DESIGN, status=PAST_END)
    assert doc["metrics"]["refund_rate"]["guardrail_broken"]
    assert doc["decision"] == "don't ship" and "refund_rate" in doc["decision_reason"]


def test_a_treatment_that_sells_more_is_not_blamed_for_refunding_in_proportion() -> None:
    # both arms refund one sale in four; treatment sells 30% more, so it refunds more per
    # user (refund_per_user is worse) while the refund rate, refunds per euro sold, is equal
    rows = _arms(2000, 400, 520)
    refunds = [5.0 if i < conv and i % 4 == 0 else 0.0 for conv in (400, 520) for i in range(2000)]
    doc = readout("x", outcomes(rows, refunds), design=DESIGN, status=PAST_END)
    rate = doc["metrics"]["refund_rate"]
    assert rate["control_value"] == pytest.approx(rate["treatment_value"])
    assert rate["abs_ci_low"] < 0 < rate["abs_ci_high"] and not rate["guardrail_broken"]
    assert rate["cuped"] is None
    assert doc["decision"] == "ship"
    validate_readout(doc)


def test_ratio_metric_is_welch_with_unit_denominators_and_covers_the_true_ratio() -> None:
    rng = np.random.default_rng(7)
    num_c, num_t = rng.gamma(2.0, 3.0, 500), rng.gamma(2.0, 3.5, 400)
    ones_c, ones_t = np.ones(500), np.ones(400)
    ratio = stats.ratio_ztest(num_c, ones_c, num_t, ones_t)
    welch = stats.welch_ttest(num_c, num_t)
    # with every denominator 1 the ratio of sums is the mean and the delta method its SE
    assert ratio.abs_lift == pytest.approx(welch.abs_lift)
    assert ratio.se == pytest.approx(welch.se, rel=1e-9)
    assert ratio.se_log_ratio == pytest.approx(welch.se_log_ratio, rel=1e-9)
    # refunds per euro sold: bookings ~ Poisson, 10 EUR each, each refunded with prob. 0.1
    # in both arms; the 95% interval of the difference covers 0 in about 95% of worlds
    covered, rel_covered, runs = 0, 0, 1000
    for _ in range(runs):
        sold = [rng.poisson(0.4, 1500) * 10.0 for _ in range(2)]
        refunded = [rng.binomial((s / 10).astype(int), 0.1) * 10.0 for s in sold]
        r = stats.ratio_ztest(refunded[0], sold[0], refunded[1], sold[1])
        covered += r.abs_ci_low < 0 < r.abs_ci_high
        rel_covered += r.rel_ci_low < 0 < r.rel_ci_high
    assert 0.93 <= covered / runs <= 0.97 and 0.93 <= rel_covered / runs <= 0.97
    # an arm that sold nothing has no ratio: an empty comparison, no p-value, no NaN in JSON
    empty = stats.ratio_ztest(np.zeros(10), np.zeros(10), np.ones(10), np.ones(10))
    assert empty.p_value is None and empty.as_dict()["control_value"] is None


def test_bad_inputs_give_messages_not_nan() -> None:
    single = outcomes([("x", "control", True, 10.0), ("x", "control", False, 0.0)])
    doc = readout("x", single, design=DESIGN)
    validate_readout(doc)
    assert doc["metrics"]["conversion"] is None
    assert any("treatment has no users" in w for w in doc["warnings"])
    assert doc["decision"] in {"inconclusive", "invalid: SRM"}
    all_zero = outcomes([("x", v, False, 0.0) for v in ["control", "treatment"] * 20])
    doc = readout("x", all_zero, design=DESIGN)
    validate_readout(doc)
    assert "NaN" not in json.dumps(doc)
    assert doc["metrics"]["conversion"]["rel_lift"] is None
    all_one = outcomes([("x", v, True, 5.0) for v in ["control", "treatment"] * 20])
    validate_readout(readout("x", all_one, design=DESIGN))
    with pytest.raises(ExperimentError, match="no exposures"):
        readout("missing", all_zero, design=DESIGN)
    with pytest.raises(ExperimentError, match="not in the registry"):
        readout("x", all_zero)
    with pytest.raises(ValueError, match="at least one user"):
        stats.two_proportion_ztest(0, 0, 1, 10)


def test_registry_is_read_by_every_part() -> None:
    registry = load_registry()
    assert list(registry) == ["medium_intent_discount", "aa_test", "srm_checkout_redesign"]
    assert registry["medium_intent_discount"].exposure_trigger == "medium_intent_search"
    assert replace(registry["aa_test"], experiment_id="x").primary_metric == "conversion"


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "revenue_per_user|bookings",
            "revenue_per_usr|bookings",
            "unknown metric 'revenue_per_usr'",
        ),
        (",0.5,0.5,30,", ",0.5,0.6,30,", "does not sum to 1"),
        (",pricing,user,", ",pricing,session,", "unit 'session' is not supported"),
        ("medium_intent_search", "high_intent_search", "unknown trigger 'high_intent_search'"),
    ],
    ids=["unknown-metric", "split", "unit", "trigger"],
)
def test_a_bad_registry_row_is_refused_in_one_line(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    text = REGISTRY_PATH.read_text()
    assert old in text
    bad = tmp_path / "registry.csv"
    bad.write_text(text.replace(old, new, 1))
    with pytest.raises(RegistryError, match=message):
        load_registry(bad)
    proc = subprocess.run(
        [sys.executable, "-m", "railflow.experiment_registry", "--path", str(bad)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and "Traceback" not in proc.stderr
    assert lines[0].startswith("error: experiment registry registry.csv line ")
    assert message in lines[0]
