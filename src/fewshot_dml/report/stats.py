"""Paired statistics of one arm against another, paired by seed, and their multiplicity correction.

Both arms of one seed share the split and the batches, so the unit of analysis is the per-seed
difference ``d``. Per cell (dataset x size):

* the mean gain with a Student-t interval (n - 1 df; ``scipy.stats.ttest_1samp``);
* an exact two-sided sign-flip permutation test of the mean difference (``scipy.stats.permutation_test``
  over all 2^n sign patterns): valid for any symmetric null, exact at n = 5 seeds, where the smallest
  p it can reach is 2 / 2^n = 0.0625 -- printed beside every p so nobody reads "p = 0.06" as "almost";
* Holm's step-down correction across the cells of one report (family-wise error at ``alpha``).

Overall (:func:`blocked_gain`): the mean over cells of the per-cell mean gains -- the number comparable
to the studies' "+3.27 pp" -- with a randomised-block analysis over all cell x seed pairs: the cell is
a fixed block, the residual variance is pooled within cells (N - K df), and the test is the sign-flip
test stratified by cell (exact up to 2^16 patterns, Monte Carlo beyond). It is conditional on these
datasets; :func:`across_cells_gain` gives the t-interval over the K cell means (K - 1 df), the one to
quote for datasets not in the study.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

# Accuracies are k/N; their float differences carry noise of ~1e-16 that would break the ties a
# permutation test counts on (0.8 - 0.7 != 0.7 - 0.6). Rounding far below 1/N restores exact ties.
_DIFF_DECIMALS = 12
_EXACT_MAX_N = 16  # 2^16 sign patterns; beyond that the permutation test is Monte Carlo
_MONTE_CARLO = 20_000


@dataclass(frozen=True)
class PairedResult:
    """Gain of ``treated`` over ``baseline`` in percentage points, with its uncertainty."""

    n: int  # pairs (seeds, or cell x seed pairs for a blocked result)
    gain_pp: float  # mean paired difference x 100 (blocked: mean of the cell means)
    ci_low_pp: float  # Student-t interval; NaN when undefined (n < 2, or no residual df)
    ci_high_pp: float
    df: int  # degrees of freedom of the t-interval
    p_value: float | None  # two-sided sign-flip permutation test; None when undefined
    p_min: float  # the smallest p-value the test can reach with these n (1 when there is no test)
    exact: bool  # the permutation test enumerated every sign pattern
    notes: tuple[str, ...]


def paired_differences(treated: Sequence[float], baseline: Sequence[float]) -> np.ndarray:
    """``treated - baseline`` per seed, rounded so that equal gains compare equal."""
    t = np.asarray(treated, dtype=np.float64)
    b = np.asarray(baseline, dtype=np.float64)
    if t.shape != b.shape or t.ndim != 1:
        raise ValueError(f"paired samples must be 1-d and of equal length; got {t.shape} and {b.shape}")
    if not (np.isfinite(t).all() and np.isfinite(b).all()):
        raise ValueError(f"paired samples must be finite; got {t.tolist()} and {b.tolist()}")
    return np.round(t - b, _DIFF_DECIMALS)


def t_interval(diffs: np.ndarray, confidence: float) -> tuple[float, float]:
    """Student-t interval of the mean with n - 1 df (scipy); NaNs when n < 2."""
    if diffs.size < 2:
        return math.nan, math.nan
    if not np.any(diffs - diffs[0]):  # constant: scipy warns and returns NaN; the interval is the point
        return float(diffs[0]), float(diffs[0])
    ci = stats.ttest_1samp(diffs, 0.0).confidence_interval(confidence)
    return float(ci.low), float(ci.high)


def sign_flip_p(diffs: np.ndarray, weights: np.ndarray | None = None, *, seed: int = 0) -> tuple[float | None, float, bool, str | None]:
    """Two-sided sign-flip permutation p of ``sum(weights * diffs)`` (default: the mean).

    Returns ``(p, p_min, exact, note)``; ``p`` is None where the test is undefined (no pair, or every
    difference zero). Exact enumeration up to 2^16 patterns, else ``_MONTE_CARLO`` random patterns
    with scipy's (count + 1) / (resamples + 1) estimate.
    """
    n = int(diffs.size)
    if n < 2:
        return None, 1.0, True, f"no test with n={n}; need >= 2"
    w = np.full(n, 1.0 / n) if weights is None else np.asarray(weights, np.float64)
    exact = n <= _EXACT_MAX_N
    p_min = 2.0 / 2.0**n if exact else 1.0 / (_MONTE_CARLO + 1)
    if not np.any(diffs):
        return None, p_min, exact, "no test: every paired difference is zero"

    def statistic(x: np.ndarray, axis: int) -> np.ndarray:
        return np.sum(np.moveaxis(x, axis, -1) * w, axis=-1)

    res = stats.permutation_test(
        (diffs,),
        statistic,
        permutation_type="samples",
        vectorized=True,
        n_resamples=np.inf if exact else _MONTE_CARLO,
        alternative="two-sided",
        rng=np.random.default_rng(seed),
    )
    return float(min(1.0, res.pvalue)), p_min, exact, None


def paired_gain(treated: Sequence[float], baseline: Sequence[float], *, confidence: float) -> PairedResult:
    """Mean gain (pp), t-interval (pp) and exact sign-flip p of ``treated`` over ``baseline``."""
    diffs = paired_differences(treated, baseline)
    if diffs.size == 0:
        raise ValueError("paired_gain needs at least one pair")
    low, high = t_interval(diffs, confidence)
    p, p_min, exact, note = sign_flip_p(diffs)
    notes = [f"no interval with n={diffs.size}; need >= 2"] if diffs.size < 2 else []
    return PairedResult(
        n=int(diffs.size),
        gain_pp=float(diffs.mean() * 100.0),
        ci_low_pp=low * 100.0,
        ci_high_pp=high * 100.0,
        df=int(diffs.size) - 1,
        p_value=p,
        p_min=p_min,
        exact=exact,
        notes=tuple(notes + ([note] if note else [])),
    )


def blocked_gain(cells: Sequence[np.ndarray], *, confidence: float, seed: int = 0) -> PairedResult:
    """Mean of the per-cell mean gains over ``cells`` (each an array of paired differences).

    Randomised-block model d_cs = mu + tau_c + e_cs with the cell as a fixed block: the estimate is
    the unweighted mean of the cell means (every dataset counts once, as in the studies' average),
    its variance sum_c sigma^2 / n_c / K^2 with sigma^2 pooled within cells on N - K df. The test
    flips signs within every cell independently (stratified), the statistic being the same estimate.
    Written by hand: scipy has no blocked paired design; the t quantile and the permutation are scipy's.
    """
    cells = [np.asarray(c, np.float64) for c in cells]
    if not cells or any(c.size == 0 for c in cells):
        raise ValueError("blocked_gain needs at least one cell, each with at least one pair")
    k, sizes = len(cells), np.array([c.size for c in cells])
    n, df = int(sizes.sum()), int(sizes.sum()) - k
    estimate = float(np.mean([c.mean() for c in cells]))
    notes = []
    if df < 1:
        low = high = math.nan
        notes.append(f"no interval: {n} pairs in {k} cells leave no residual df")
    else:
        sse = float(sum(((c - c.mean()) ** 2).sum() for c in cells))
        se = math.sqrt(sse / df * float(np.sum(1.0 / sizes)) / k**2)
        half = float(stats.t.ppf(0.5 + confidence / 2, df)) * se
        low, high = estimate - half, estimate + half
    flat = np.concatenate(cells)
    weights = np.concatenate([np.full(c.size, 1.0 / (k * c.size)) for c in cells])
    p, p_min, exact, note = sign_flip_p(flat, weights, seed=seed)
    return PairedResult(
        n=n,
        gain_pp=estimate * 100.0,
        ci_low_pp=low * 100.0,
        ci_high_pp=high * 100.0,
        df=df,
        p_value=p,
        p_min=p_min,
        exact=exact,
        notes=tuple(notes + ([note] if note else [])),
    )


def across_cells_gain(cell_means: Sequence[float], *, confidence: float) -> tuple[float, float, float, int]:
    """``(mean, low, high, df)`` in pp of the t-interval over the cell means (datasets as random)."""
    means = np.asarray(cell_means, np.float64)
    low, high = t_interval(means, confidence)
    return float(means.mean() * 100.0), low * 100.0, high * 100.0, int(means.size) - 1


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values (family-wise error); None stays None and is not counted.

    Written by hand: scipy has only Benjamini-Hochberg (``false_discovery_control``), and statsmodels
    for six lines is not worth a dependency. adjusted_(i) = max_{j <= i} min(1, (m - j + 1) p_(j)).
    """
    index = [i for i, p in enumerate(p_values) if p is not None]
    m = len(index)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, i in enumerate(sorted(index, key=lambda i: (p_values[i], i))):
        running = max(running, min(1.0, (m - rank) * float(p_values[i])))
        adjusted[i] = running
    return adjusted


def detectable_note(n: int, tests: int, alpha: float) -> str:
    """What the per-cell exact test can and cannot show with ``n`` seeds and Holm over ``tests`` tests."""
    p_min = 2.0 / 2.0**n
    need = next(k for k in range(1, 64) if 2.0 / 2.0**k <= alpha / max(tests, 1))
    if p_min > alpha:
        return (
            f"With n = {n} seeds the exact per-cell test cannot reach p < {p_min:.4g}, so no single cell can "
            f"be called won at alpha = {alpha:g}; a per-cell claim needs n >= {need} seeds under Holm over "
            f"{tests} tests. The overall blocked test is the confirmatory one."
        )
    if p_min * tests > alpha:
        return (
            f"With n = {n} seeds the smallest per-cell p is {p_min:.4g}; after Holm over {tests} tests even "
            f"a cell where every seed improves may not reach alpha = {alpha:g} (that needs n >= {need})."
        )
    return f"With n = {n} seeds the smallest per-cell p is {p_min:.4g}, low enough for Holm over {tests} tests."
