"""The study's tables from one row per run: accuracies, paired gains with their tests, curves.

Comparisons (treated over baseline, paired by seed on the same split):

* the DML arm over ``cce`` in every inference mode (proxy inference against the CCE classifier);
* ``setfit`` over ``cce`` and the DML arm over ``setfit``, classifier against classifier.

Every per-cell test of a report is one Holm family; the overall (blocked) tests are another. A cell
or an overall gain is "won" (or "lost") only where its Holm-adjusted p is below ``aggregate.alpha``,
and an overall gain is "not called" where more than :data:`MAX_DEGENERATE` of either arm's runs are
degenerate: such a difference measures the collapse, not the loss.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from fewshot_dml.catalog.arms import BASELINE, DML, SETFIT
from fewshot_dml.config.sections import AggregateParams
from fewshot_dml.report.stats import (
    across_cells_gain,
    blocked_gain,
    holm,
    paired_differences,
    paired_gain,
)
from fewshot_dml.report.tables import MODES, Tables


def unique(series: pd.Series) -> list:
    """Values in order of first appearance (collect_runs emits params order)."""
    return list(dict.fromkeys(series.tolist()))


def roles(dml: str) -> dict[str, str]:
    """Each arm's role (``cce``, ``setfit``, ``dml``): reports and metrics name arms by role, so that
    `dvc metrics diff` and `dvc plots diff` line up experiments of different DML losses."""
    return {BASELINE: BASELINE, SETFIT: SETFIT, dml: DML}


def comparisons(dml: str) -> list[tuple[str, str, str]]:
    """``(treated, baseline, mode)`` of every comparison the report makes, primary first."""
    return [(dml, BASELINE, m) for m in MODES] + [(SETFIT, BASELINE, "classifier"), (dml, SETFIT, "classifier")]


def summarise(df: pd.DataFrame, agg: AggregateParams) -> Tables:
    """Means, stds, paired gains and their tests per dataset x size (x arm) x inference mode."""
    arms = unique(df["arm"])
    dml = [a for a in arms if a not in (BASELINE, SETFIT)]
    if BASELINE not in arms or SETFIT not in arms or len(dml) != 1:
        raise ValueError(f"expected the arms {BASELINE!r}, {SETFIT!r} and one DML loss; got {arms}")
    pairs = _all_pairs(df, dml[0])
    health = {arm: (int(df.loc[df["arm"] == arm, "degenerate"].map(bool).sum()), int((df["arm"] == arm).sum())) for arm in arms}
    return Tables(
        dml_arm=dml[0],
        arms=tuple(arms),
        runs=df[["dataset", "size", "seed", "arm", *MODES, "dev_accuracy", "majority_accuracy"]].copy(),
        accuracy=_accuracy_table(df),
        gains=_gains_table(pairs, agg),
        overall=_overall_table(pairs, agg, health),
        proxy_curve=_proxy_curve_table(df[df["arm"] == dml[0]]),
        loss_curves=_loss_curve_table(df),
        confusion=_confusion(df),
        label_names={r.dataset: tuple(r.label_names) for r in df.itertuples()},
        degenerate=_degenerate_table(df),
        checkpoints=_checkpoint_table(df),
        confidence=agg.confidence,
        alpha=agg.alpha,
    )


def _cells(df: pd.DataFrame) -> list[tuple[str, int]]:
    return list(dict.fromkeys(zip(df["dataset"], df["size"], strict=True)))


def _accuracy_table(df: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for dataset, size in _cells(df):
        cell = df[(df["dataset"] == dataset) & (df["size"] == size)]
        for arm in unique(cell["arm"]):
            runs = cell[cell["arm"] == arm]
            for mode in MODES:
                values = runs[mode].dropna()
                if values.empty:  # e.g. proxy inference for an arm without proxies
                    continue
                rows.append(
                    {
                        "dataset": dataset,
                        "size": size,
                        "arm": arm,
                        "mode": mode,
                        "accuracy_mean": values.mean(),
                        "accuracy_std": values.std(ddof=1),
                        "macro_f1_mean": runs[f"{mode}_f1"].mean(),
                        "n": len(values),
                        "dev_mean": runs["dev_accuracy"].mean() if mode == "classifier" else np.nan,
                        "majority_mean": runs["majority_accuracy"].mean(),
                        "flagged": int(runs["degenerate"].map(bool).sum()),
                    }
                )
    return pd.DataFrame(rows)


def _paired(cell: pd.DataFrame, treated: str, baseline: str, mode: str) -> tuple[np.ndarray, np.ndarray, str] | None:
    """Seed-aligned values of ``treated`` (mode) and ``baseline`` (same mode, else its classifier)."""
    t = cell[cell["arm"] == treated].set_index("seed")
    b = cell[cell["arm"] == baseline].set_index("seed")
    if sorted(t.index) != sorted(b.index):
        raise ValueError(
            f"{cell['dataset'].iat[0]}/{cell['size'].iat[0]}: seeds {sorted(b.index)} of {baseline} "
            f"and {sorted(t.index)} of {treated} differ; the gain is paired by seed"
        )
    if t[mode].isna().all():
        return None
    base_mode = mode if b[mode].notna().all() else "classifier"
    seeds = sorted(t.index)
    return t.loc[seeds, mode].to_numpy(), b.loc[seeds, base_mode].to_numpy(), base_mode


Pairs = dict[tuple[str, str, str], list[tuple[str, int, np.ndarray, np.ndarray, str]]]


def _all_pairs(df: pd.DataFrame, dml: str) -> Pairs:
    """Per comparison: ``(dataset, size, treated, baseline, baseline_mode)`` of every cell it applies to.

    Computed once and read by both the per-cell and the overall table.
    """
    pairs: Pairs = {}
    for treated, baseline, mode in comparisons(dml):
        pairs[(treated, baseline, mode)] = []
        for dataset, size in _cells(df):
            paired = _paired(df[(df["dataset"] == dataset) & (df["size"] == size)], treated, baseline, mode)
            if paired is not None:
                pairs[(treated, baseline, mode)].append((dataset, size, *paired))
    return pairs


def _corrected(rows: list[dict], alpha: float, max_degenerate: float | None = None) -> pd.DataFrame:
    """The rows as a table with Holm-adjusted p-values (one family) and the verdict they support; with
    ``max_degenerate``, a row whose arms have a larger share of degenerate runs is ``not called``."""
    out = pd.DataFrame(rows)
    out["p_holm"] = holm([None if pd.isna(p) else p for p in out["p_value"]])
    out["verdict"] = [verdict(g, p, alpha) for g, p in zip(out["gain_pp"], out["p_holm"], strict=True)]
    if max_degenerate is not None and len(out):
        share = np.maximum(out["degenerate_treated"] / out["runs_treated"], out["degenerate_baseline"] / out["runs_baseline"])
        out.loc[share > max_degenerate, "verdict"] = NOT_CALLED
    return out


def _gains_table(pairs: Pairs, agg: AggregateParams) -> pd.DataFrame:
    rows = []
    for (treated, baseline, mode), cells in pairs.items():
        for dataset, size, t, b, base_mode in cells:
            res = paired_gain(t, b, confidence=agg.confidence)
            rows.append(
                {
                    "treated": treated,
                    "baseline": baseline,
                    "dataset": dataset,
                    "size": size,
                    "mode": mode,
                    "baseline_mode": base_mode,
                    "n": res.n,
                    "gain_pp": res.gain_pp,
                    "ci_low_pp": res.ci_low_pp,
                    "ci_high_pp": res.ci_high_pp,
                    "p_value": res.p_value,
                    "p_min": res.p_min,
                    "note": "; ".join(res.notes),
                }
            )
    return _corrected(rows, agg.alpha)


NOT_CALLED = "not called"  # the verdict of an overall comparison resting on too many degenerate runs
# The share of an arm's runs that may be degenerate before an overall comparison is not called (#27: "an
# overall comparison with more than ~10% degenerate runs in either arm is not called won or lost"). A rule of
# the report, not a tunable: raising it would let a collapse decide a verdict.
MAX_DEGENERATE = 0.10


def verdict(gain: float, p_holm: float | None, alpha: float) -> str:
    """``won``/``lost`` (by the sign of ``gain``) where Holm's p is below ``alpha``; ``not shown`` otherwise."""
    if p_holm is None or pd.isna(p_holm) or p_holm >= alpha:
        return "not shown"
    return "won" if gain > 0 else "lost"


def _overall_table(pairs: Pairs, agg: AggregateParams, health: dict[str, tuple[int, int]]) -> pd.DataFrame:
    """Per comparison: the blocked mean gain over every dataset x size cell (see stats.blocked_gain), with
    each arm's degenerate and total runs (``health``: arm -> (degenerate, runs))."""
    rows = []
    for (treated, baseline, mode), paired in pairs.items():
        cells = [paired_differences(t, b) for _, _, t, b, _ in paired]
        if not cells:
            continue
        res = blocked_gain(cells, confidence=agg.confidence, seed=agg.seed)
        _, low, high, df_across = across_cells_gain([c.mean() for c in cells], confidence=agg.confidence)
        rows.append(
            {
                "treated": treated,
                "baseline": baseline,
                "mode": mode,
                "cells": len(cells),
                "n": res.n,
                "df": res.df,
                "gain_pp": res.gain_pp,
                "ci_low_pp": res.ci_low_pp,
                "ci_high_pp": res.ci_high_pp,
                "p_value": res.p_value,
                "p_min": res.p_min,
                "exact": res.exact,
                "across_low_pp": low,
                "across_high_pp": high,
                "across_df": df_across,
                "degenerate_treated": health[treated][0],
                "runs_treated": health[treated][1],
                "degenerate_baseline": health[baseline][0],
                "runs_baseline": health[baseline][1],
            }
        )
    return _corrected(rows, agg.alpha, MAX_DEGENERATE)


def _degenerate_table(df: pd.DataFrame) -> pd.DataFrame:
    """Flagged runs stay in every mean and test (a collapse is that arm's result; dropping it would
    flatter the arm that failed); this table lists them so the report can mark and count them."""
    rows = [
        {"dataset": r.dataset, "size": r.size, "seed": r.seed, "arm": r.arm, "symptom": symptom}
        for r in df.itertuples()
        for symptom in r.degenerate
    ]
    return pd.DataFrame(rows, columns=["dataset", "size", "seed", "arm", "symptom"])


def _checkpoint_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per development checkpoint of every run: its index ``k`` (1..n), step and accuracy, the
    run's trained steps and whether the run kept it (``chosen``); empty for runs without a choice."""
    rows = [
        {
            "dataset": r.dataset,
            "size": r.size,
            "seed": r.seed,
            "arm": r.arm,
            "k": k,
            "of": len(r.dev_checkpoints),
            "step": point["step"],
            "steps": r.steps,
            "dev_accuracy": point["dev_accuracy"],
            "chosen": point["step"] == r.selected_step,
        }
        for r in df.itertuples()
        for k, point in enumerate(r.dev_checkpoints, 1)
    ]
    columns = ["dataset", "size", "seed", "arm", "k", "of", "step", "steps", "dev_accuracy", "chosen"]
    return pd.DataFrame(rows, columns=columns)


def _proxy_curve_table(df: pd.DataFrame) -> pd.DataFrame:
    columns = ["dataset", "size", "weight", "accuracy_mean", "accuracy_std", "n"]
    points = [{"dataset": r.dataset, "size": r.size, "weight": w, "accuracy": acc} for r in df.itertuples() for w, acc in r.proxy_curve]
    if not points:
        return pd.DataFrame(columns=columns)
    out = pd.DataFrame(points).groupby(["dataset", "size", "weight"], sort=False)["accuracy"].agg(["mean", "std", "count"])
    out = out.reset_index().rename(columns={"mean": "accuracy_mean", "std": "accuracy_std", "count": "n"})
    return _params_order(out, df, ["weight"])[columns]


def _loss_curve_table(df: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds per step of the optimised loss and of each component (NaN where absent)."""
    points = [
        {"dataset": r.dataset, "size": r.size, "arm": r.arm, "step": step, "loss": loss, "cce": cce, "dml": dml}
        for r in df.itertuples()
        for step, loss, cce, dml in r.loss_curve
    ]
    out = pd.DataFrame(points).groupby(["dataset", "size", "arm", "step"], sort=False)[["loss", "cce", "dml"]].mean()
    out = out.reset_index().rename(columns={"loss": "loss_mean", "cce": "cce_mean", "dml": "dml_mean"})
    return _params_order(out, df, ["arm", "step"])


def _confusion(df: pd.DataFrame) -> dict[tuple[str, int, str], np.ndarray]:
    """Classifier confusion matrices summed over seeds, per (dataset, size, arm)."""
    out: dict[tuple[str, int, str], np.ndarray] = {}
    for r in df.itertuples():
        key = (r.dataset, r.size, r.arm)
        out[key] = out.get(key, 0) + np.asarray(r.confusion, np.int64)
    return out


def _params_order(out: pd.DataFrame, df: pd.DataFrame, then: Sequence[str]) -> pd.DataFrame:
    """Sort by dataset and size in params order, then by ``then`` (arm in params order)."""
    rank = {c: {v: i for i, v in enumerate(unique(df[c]))} for c in ("dataset", "size", "arm")}
    return out.sort_values(
        ["dataset", "size", *then], kind="stable", key=lambda col: col.map(rank[col.name]) if col.name in rank else col
    ).reset_index(drop=True)
