"""Experiment statistics: proven against simulation and against statsmodels."""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_effectsize, proportions_ztest
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from analysis import stats
from analysis.experiments import ExperimentError, readout, validate_readout

RUNS = 2000


def test_conversion_interval_covers_the_true_lift_at_the_nominal_rate() -> None:
    rng = np.random.default_rng(7)
    p_c, p_t, n = 0.20, 0.23, 3000
    xc = rng.binomial(n, p_c, RUNS)
    xt = rng.binomial(n, p_t, RUNS)
    abs_hits = rel_hits = 0
    for a, b in zip(xc, xt, strict=True):
        r = stats.two_proportion_ztest(int(a), n, int(b), n)
        abs_hits += r.abs_ci_low <= p_t - p_c <= r.abs_ci_high
        rel_hits += r.rel_ci_low <= p_t / p_c - 1 <= r.rel_ci_high
    assert 0.93 <= abs_hits / RUNS <= 0.97
    assert 0.93 <= rel_hits / RUNS <= 0.97


def test_welch_interval_covers_the_true_revenue_lift() -> None:
    rng = np.random.default_rng(8)
    hits = 0
    for _ in range(600):
        a = rng.exponential(20, 800) * (rng.random(800) < 0.3)
        b = rng.exponential(22, 800) * (rng.random(800) < 0.3)
        r = stats.welch_ttest(a, b)
        hits += r.ci_low <= 0.3 * 2 <= r.ci_high
    assert 0.93 <= hits / 600 <= 0.97


def test_aa_test_rejects_at_the_nominal_rate() -> None:
    rng = np.random.default_rng(9)
    n = 2000
    xc, xt = rng.binomial(n, 0.1, RUNS), rng.binomial(n, 0.1, RUNS)
    rejections = sum(
        stats.two_proportion_ztest(int(a), n, int(b), n).p_value < 0.05
        for a, b in zip(xc, xt, strict=True)
    )
    assert rejections / RUNS <= 0.06


def test_planted_srm_is_flagged_every_time_and_fair_split_rarely() -> None:
    rng = np.random.default_rng(10)
    planned = {"control": 0.5, "treatment": 0.5}
    for _ in range(200):
        n = 2000
        control = rng.binomial(n, 0.5)
        lost = rng.binomial(n - control, 0.3)  # 30% of treatment exposures never logged
        assert stats.srm_test({"control": control, "treatment": n - control - lost}, planned)[
            "flagged"
        ]
    fair = [
        stats.srm_test({"control": int(c), "treatment": 2000 - int(c)}, planned)["flagged"]
        for c in rng.binomial(2000, 0.5, 500)
    ]
    assert sum(fair) <= 3


def test_ztest_equals_statsmodels() -> None:
    r = stats.two_proportion_ztest(180, 1000, 215, 1010)
    z, p = proportions_ztest([215, 180], [1010, 1000])
    assert r.z == pytest.approx(z, rel=1e-9)
    assert r.p_value == pytest.approx(p, rel=1e-9)


def test_welch_equals_statsmodels() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(10, 3, 400), rng.normal(10.6, 4, 350)
    r = stats.welch_ttest(a, b)
    cm = CompareMeans(DescrStatsW(b), DescrStatsW(a))
    t, p, df = cm.ttest_ind(usevar="unequal")
    low, high = cm.tconfint_diff(usevar="unequal")
    assert (r.t, r.p_value, r.df) == pytest.approx((t, p, df), rel=1e-9)
    assert (r.ci_low, r.ci_high) == pytest.approx((low, high), rel=1e-9)


@pytest.mark.parametrize(("baseline", "mde"), [(0.05, 0.10), (0.2, 0.05), (0.5, 0.02)])
def test_power_equals_statsmodels(baseline: float, mde: float) -> None:
    h = proportion_effectsize(baseline * (1 + mde), baseline)
    expected = NormalIndPower().solve_power(effect_size=h, alpha=0.05, power=0.8, ratio=1.0)
    assert stats.sample_size_per_arm(baseline, mde) == pytest.approx(expected, rel=1e-6)
    n = math.ceil(expected)
    back = stats.minimum_detectable_effect(baseline, n)
    assert back == pytest.approx(mde, rel=0.01)


def test_holm_matches_the_definition() -> None:
    adjusted = stats.holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": None})
    assert adjusted == {"a": 0.03, "b": 0.06, "c": 0.06, "d": None}


def test_cuped_reduces_variance_without_bias() -> None:
    rng = np.random.default_rng(3)
    n = 4000
    x = rng.gamma(2, 10, n)
    t = rng.random(n) < 0.5
    y = 0.8 * x + rng.normal(0, 5, n) + 2.0 * t
    plain = stats.welch_ttest(y[~t], y[t])
    adjusted = stats.cuped(y, x, t)
    assert adjusted["variance_reduction"] > 0.5
    # the reduction reported is that of the difference's variance: the squared width ratio
    width = (adjusted["ci_high"] - adjusted["ci_low"]) / (plain.ci_high - plain.ci_low)
    assert adjusted["variance_reduction"] == pytest.approx(1 - width**2, abs=1e-4)
    assert adjusted["ci_low"] <= 2.0 <= adjusted["ci_high"]
    assert (adjusted["ci_high"] - adjusted["ci_low"]) < (plain.ci_high - plain.ci_low) / 1.5


def outcomes(rows: list[tuple[str, str, bool, float]]) -> pl.DataFrame:
    from datetime import UTC, datetime

    return pl.DataFrame(
        {
            "experiment_id": [r[0] for r in rows],
            "variant": [r[1] for r in rows],
            "is_converted": [r[2] for r in rows],
            "conversions": [int(r[2]) for r in rows],
            "revenue_eur": [r[3] for r in rows],
            "pre_exposure_revenue_eur": [0.0 for _ in rows],
            "exposed_at": [datetime(2026, 4, 1, tzinfo=UTC) for _ in rows],
            "is_outcome_window_complete": [True for _ in rows],
        }
    )


def test_bad_inputs_give_messages_not_nan() -> None:
    single = outcomes([("x", "control", True, 10.0), ("x", "control", False, 0.0)])
    doc = readout("x", single)
    validate_readout(doc)
    assert doc["metrics"]["conversion"] is None
    assert any("treatment has no users" in w for w in doc["warnings"])
    assert doc["decision"] in {"inconclusive", "invalid: SRM"}
    all_zero = outcomes([("z", v, False, 0.0) for v in ["control", "treatment"] * 20])
    doc = readout("z", all_zero)
    validate_readout(doc)
    assert "NaN" not in json.dumps(doc)
    assert doc["metrics"]["conversion"]["rel_lift"] is None
    all_one = outcomes([("o", v, True, 5.0) for v in ["control", "treatment"] * 20])
    validate_readout(readout("o", all_one))
    with pytest.raises(ExperimentError, match="no exposures"):
        readout("missing", all_zero)
    with pytest.raises(ValueError, match="at least one user"):
        stats.two_proportion_ztest(0, 0, 1, 10)
