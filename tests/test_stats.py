"""Paired statistics against scipy and against hand enumeration on known inputs."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from fewshot_dml.report.stats import (
    across_cells_gain,
    blocked_gain,
    detectable_note,
    holm,
    paired_differences,
    paired_gain,
    sign_flip_p,
    t_interval,
)

TREATED = [0.81, 0.74, 0.80, 0.77, 0.79]
BASELINE = [0.75, 0.73, 0.74, 0.78, 0.70]


def _enumerated_p(diffs: np.ndarray, weights: np.ndarray) -> float:
    """Two-sided sign-flip p by listing every sign pattern (the definition)."""
    observed = abs(float(diffs @ weights))
    values = [abs(float((np.array(s) * diffs) @ weights)) for s in itertools.product((1, -1), repeat=diffs.size)]
    return float(np.mean([v >= observed - 1e-12 for v in values]))


def test_gain_interval_and_p_match_scipy_and_enumeration() -> None:
    res = paired_gain(TREATED, BASELINE, confidence=0.95)
    diffs = np.subtract(TREATED, BASELINE)
    ci = stats.ttest_1samp(diffs, 0).confidence_interval(0.95)
    assert res.n == 5 and res.df == 4
    assert res.gain_pp == pytest.approx(100 * diffs.mean())
    assert (res.ci_low_pp, res.ci_high_pp) == pytest.approx((100 * ci.low, 100 * ci.high))
    assert res.p_value == pytest.approx(_enumerated_p(paired_differences(TREATED, BASELINE), np.full(5, 0.2)))
    assert res.exact and res.p_min == pytest.approx(2 / 32)


def test_the_issue_example_the_t_interval_is_wide_where_the_bootstrap_was_not() -> None:
    # TREC in the old report: differences -0.5, -0.5 and -6.0 pp printed as "[-6.00, -0.50]".
    low, high = t_interval(np.array([-0.005, -0.005, -0.06]), 0.95)
    assert low * 100 < -10 and high * 100 > 5  # [-10.2, +5.6]: it includes zero
    p, p_min, exact, _ = sign_flip_p(np.array([-0.005, -0.005, -0.06]))
    assert p == pytest.approx(0.25) and p_min == pytest.approx(0.25) and exact


def test_the_smallest_p_is_reached_when_every_seed_agrees() -> None:
    p, p_min, _, _ = sign_flip_p(np.array([0.01, 0.02, 0.03, 0.04, 0.05]))
    assert p == pytest.approx(p_min) == pytest.approx(0.0625)


def test_identical_arms_give_a_zero_gain_and_no_test() -> None:
    res = paired_gain(BASELINE, BASELINE, confidence=0.95)
    assert res.gain_pp == 0.0 and (res.ci_low_pp, res.ci_high_pp) == (0.0, 0.0)
    assert res.p_value is None and res.notes == ("no test: every paired difference is zero",)


def test_one_seed_has_a_gain_but_no_interval() -> None:
    res = paired_gain([0.8], [0.7], confidence=0.95)
    assert res.gain_pp == pytest.approx(10.0)
    assert math.isnan(res.ci_low_pp) and math.isnan(res.ci_high_pp)
    assert any("n=1" in n for n in res.notes)


def test_float_noise_does_not_break_ties() -> None:
    # 0.8 - 0.7 and 0.7 - 0.6 differ in float arithmetic; rounded they are one value.
    diffs = paired_differences([0.8, 0.7, 0.6], [0.7, 0.6, 0.7])
    assert diffs[0] == diffs[1]


def test_paired_samples_must_have_one_length_and_be_finite() -> None:
    with pytest.raises(ValueError, match="equal length"):
        paired_differences([0.1, 0.2], [0.1])
    with pytest.raises(ValueError, match="finite"):
        paired_differences([0.1, float("nan")], [0.1, 0.2])


def test_blocked_gain_with_one_cell_is_the_paired_t_interval() -> None:
    diffs = paired_differences(TREATED, BASELINE)
    res = blocked_gain([diffs], confidence=0.95)
    ci = stats.ttest_1samp(diffs, 0).confidence_interval(0.95)
    assert (res.ci_low_pp, res.ci_high_pp) == pytest.approx((100 * ci.low, 100 * ci.high))
    assert res.p_value == pytest.approx(paired_gain(TREATED, BASELINE, confidence=0.95).p_value)


def test_blocked_gain_matches_least_squares_with_cell_dummies() -> None:
    rng = np.random.default_rng(0)
    cells = [rng.normal(m, 0.02, size=n) for m, n in ((0.03, 5), (-0.01, 5), (0.02, 4))]
    res = blocked_gain(cells, confidence=0.9)
    # OLS of d on one indicator per cell: the coefficients are the cell means, their covariance
    # sigma^2 (X'X)^-1 with sigma^2 on N - K df; the contrast is their plain mean.
    y = np.concatenate(cells)
    x = np.zeros((y.size, 3))
    x[np.arange(y.size), np.repeat(np.arange(3), [c.size for c in cells])] = 1
    beta, sse, *_ = np.linalg.lstsq(x, y, rcond=None)
    df = y.size - 3
    contrast = np.full(3, 1 / 3)
    se = math.sqrt(float(sse[0]) / df * contrast @ np.linalg.inv(x.T @ x) @ contrast)
    half = stats.t.ppf(0.95, df) * se
    assert res.df == df and res.n == y.size
    assert res.gain_pp == pytest.approx(100 * contrast @ beta)
    assert (res.ci_low_pp, res.ci_high_pp) == pytest.approx((100 * (contrast @ beta - half), 100 * (contrast @ beta + half)))


def test_blocked_p_is_the_stratified_sign_flip_over_every_pattern() -> None:
    cells = [np.array([0.02, 0.03, -0.01]), np.array([0.05, 0.01])]
    res = blocked_gain(cells, confidence=0.95)
    weights = np.array([1 / 6] * 3 + [1 / 4] * 2)
    assert res.exact and res.p_value == pytest.approx(_enumerated_p(np.concatenate(cells), weights))


def test_blocked_test_is_monte_carlo_and_seeded_beyond_sixteen_pairs() -> None:
    cells = [np.linspace(-0.01, 0.05, 7) for _ in range(5)]
    a, b = (blocked_gain(cells, confidence=0.95, seed=1) for _ in range(2))
    assert not a.exact and a.p_value == b.p_value and a.p_value < 0.01


def test_across_cells_gain_is_the_t_interval_of_the_cell_means() -> None:
    means = [0.01, 0.03, -0.02, 0.04]
    mean, low, high, df = across_cells_gain(means, confidence=0.95)
    ci = stats.ttest_1samp(means, 0).confidence_interval(0.95)
    assert (mean, low, high, df) == pytest.approx((1.5, 100 * ci.low, 100 * ci.high, 3))


def test_holm_on_a_textbook_example() -> None:
    # Holm (1979) step-down: sorted p = .01, .02, .03, .04 with m = 4 -> .04, .06, .06, .06.
    assert holm([0.03, 0.01, 0.04, 0.02]) == pytest.approx([0.06, 0.04, 0.06, 0.06])
    assert holm([0.5, None, 0.01]) == [pytest.approx(0.5), None, pytest.approx(0.02)]
    assert holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])  # 2 x 0.8 capped at 1; monotone after


def test_holm_is_never_below_bonferroni_step_one_or_above_bonferroni() -> None:
    rng = np.random.default_rng(3)
    p = rng.uniform(size=9).tolist()
    adj = holm(p)
    assert min(adj) == pytest.approx(min(1.0, 9 * min(p)))
    assert all(a <= min(1.0, 9 * q) + 1e-12 for a, q in zip(adj, p, strict=True))


def test_detectable_note_says_five_seeds_cannot_win_a_cell() -> None:
    assert "cannot reach p < 0.0625" in detectable_note(5, 7, 0.05)
    assert "n >= 9" in detectable_note(5, 7, 0.05)
    assert "low enough" in detectable_note(10, 2, 0.05)
