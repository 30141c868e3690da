"""Aggregate the runs of the grid into tables, DVC metrics, DVC plots data and the report.

``collect_runs`` reads exactly the runs that the params imply (never a glob: a stale run left in
``data/runs`` must not leak into the numbers), ``summarise`` turns them into tables with paired
statistics, ``write_reports`` writes ``reports/``. ``run_aggregate`` is the stage's one call.
"""

from __future__ import annotations

import logging
import math
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from fewshot_dml import io, layout, report, rundir
from fewshot_dml.params import BASELINE, AggregateParams, Params
from fewshot_dml.stats import paired_gain
from fewshot_dml.tables import MODES, Tables

log = logging.getLogger(__name__)

KEYS = ["dataset", "size", "seed", "arm"]
_ACC_TOL = 1e-6  # metrics.json and infer's classifier accuracy come from the same logits


class MissingRunsError(FileNotFoundError):
    """Some of the files that the params imply are absent."""


def run_files(runs_dir: Path, infer_dir: Path, rid: str) -> dict[str, Path]:
    """The four files one run contributes (see docs/architecture.md)."""
    run = Path(runs_dir) / rid
    return {
        "metrics": run / rundir.METRICS,
        "run": run / rundir.RUN,
        "curve": run / rundir.CURVE,
        "infer": Path(infer_dir) / f"{rid}{layout.INFER_SUFFIX}",
    }


def collect_runs(params: Params, runs_dir: Path, infer_dir: Path) -> pd.DataFrame:
    """One row per (dataset, size, seed, arm) of the grid; raise listing every missing file."""
    grid = [
        (d, size, seed, arm)
        for d in params.datasets
        for size in params.sample_sizes
        for seed in params.seeds
        for arm in params.arms
    ]
    files = {cell: run_files(runs_dir, infer_dir, layout.run_id(*cell)) for cell in grid}
    missing = [str(p) for f in files.values() for p in f.values() if not p.is_file()]
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise MissingRunsError(
            f"{len(missing)} file(s) of the {len(grid)} runs that params.yaml implies are missing "
            f"(run the train and infer stages first): {shown}"
        )
    rows = [
        _read_run(cell, files[cell], params.infer.proxy_weight)
        for cell in tqdm(grid, desc="collect runs", unit="run", disable=len(grid) < 50)
    ]
    return pd.DataFrame(rows)


def _get(mapping: Any, key: str, where: Path | str) -> Any:
    if not isinstance(mapping, Mapping) or key not in mapping:
        raise ValueError(f"{where}: missing key {key!r} (expected the format of docs/architecture.md)")
    return mapping[key]


def _number(mapping: Any, key: str, where: Path | str) -> float:
    value = _get(mapping, key, where)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where}: {key}={value!r} is not a finite number")
    return float(value)


def _read_run(cell: tuple[str, int, int, str], files: Mapping[str, Path], weight: float) -> dict:
    metrics, run, infer = (io.read_json(files[k]) for k in ("metrics", "run", "infer"))
    for key, expected in zip(KEYS, cell, strict=True):
        if _get(run, key, files["run"]) != expected:
            raise ValueError(f"{files['run']}: {key}={run[key]!r}, expected {expected!r} for this run")
    accuracy = _number(metrics, "accuracy", files["metrics"])
    degenerate = _get(metrics, "degenerate", files["metrics"])
    if not isinstance(degenerate, list) or not all(isinstance(d, str) for d in degenerate):
        raise ValueError(f"{files['metrics']}: degenerate={degenerate!r}; expected a list of strings")
    classifier = _number(_get(infer, "classifier", files["infer"]), "accuracy", files["infer"])
    if abs(classifier - accuracy) > _ACC_TOL:
        raise ValueError(
            f"{files['infer']}: classifier accuracy {classifier} differs from {files['metrics']} "
            f"accuracy {accuracy}; the files come from different runs (re-run infer)"
        )
    proxy = _get(infer, "proxy", files["infer"])
    proxy_acc = math.nan
    if proxy is not None:
        got = _number(proxy, "weight", files["infer"])
        if abs(got - weight) > 1e-9:
            raise ValueError(f"{files['infer']}: proxy weight {got}, expected infer.proxy_weight={weight}")
        proxy_acc = _number(proxy, "accuracy", files["infer"])
    curve = tuple(
        (round(_number(p, "weight", files["infer"]), 6), _number(p, "accuracy", files["infer"]))
        for p in _get(infer, "proxy_curve", files["infer"])
    )
    return {
        **dict(zip(KEYS, cell, strict=True)),
        "accuracy": accuracy,
        "macro_f1": _number(metrics, "macro_f1", files["metrics"]),
        "classifier": accuracy,
        "proxy": proxy_acc,
        "prototype": _number(_get(infer, "prototype", files["infer"]), "accuracy", files["infer"]),
        "knn": _number(_get(infer, "knn", files["infer"]), "accuracy", files["infer"]),
        "proxy_curve": curve,
        "loss_curve": rundir.read_curve(files["curve"]),
        "degenerate": tuple(degenerate),
    }


def _unique(series: pd.Series) -> list:
    """Values in order of first appearance (collect_runs emits params order)."""
    return list(dict.fromkeys(series.tolist()))


def summarise(df: pd.DataFrame, agg: AggregateParams) -> Tables:
    """Means, stds and paired gains per dataset x size (x arm) x inference mode."""
    arms = _unique(df["arm"])
    dml = [a for a in arms if a != BASELINE]
    if BASELINE not in arms or len(dml) != 1:
        raise ValueError(f"expected the arms {BASELINE!r} and one DML loss; got {arms}")
    return Tables(
        dml_arm=dml[0],
        accuracy=_accuracy_table(df),
        gains=_gains_table(df, dml[0], agg),
        proxy_curve=_proxy_curve_table(df[df["arm"] == dml[0]]),
        loss_curves=_loss_curve_table(df),
        degenerate=_degenerate_table(df),
        confidence=agg.confidence,
    )


def _degenerate_table(df: pd.DataFrame) -> pd.DataFrame:
    """Flagged runs stay in every mean and test (a collapse is that arm's result; dropping it would
    flatter the arm that failed); this table lists them so the report can mark and count them."""
    rows = [{"dataset": r.dataset, "size": r.size, "seed": r.seed, "arm": r.arm, "symptom": symptom}
            for r in df.itertuples() for symptom in r.degenerate]
    return pd.DataFrame(rows, columns=["dataset", "size", "seed", "arm", "symptom"])


def _cells(df: pd.DataFrame) -> list[tuple[str, int]]:
    return list(dict.fromkeys(zip(df["dataset"], df["size"], strict=True)))


def _accuracy_table(df: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for dataset, size in _cells(df):
        cell = df[(df["dataset"] == dataset) & (df["size"] == size)]
        for arm in _unique(cell["arm"]):
            runs = cell[cell["arm"] == arm]
            for mode in MODES:
                values = runs[mode].dropna()
                if values.empty:  # e.g. proxy inference for an arm without proxies
                    continue
                rows.append({
                    "dataset": dataset, "size": size, "arm": arm, "mode": mode,
                    "accuracy_mean": values.mean(), "accuracy_std": values.std(ddof=1), "n": len(values),
                    "flagged": int(runs["degenerate"].map(bool).sum()),
                })
    return pd.DataFrame(rows)


def _cell_rng(seed: int, *key: object) -> np.random.Generator:
    # One stream per cell, so a cell's CI does not change when other datasets join the grid.
    return np.random.default_rng([seed, zlib.crc32("|".join(map(str, key)).encode())])


def _gains_table(df: pd.DataFrame, dml_arm: str, agg: AggregateParams) -> pd.DataFrame:
    rows = []
    for dataset, size in _cells(df):
        cell = df[(df["dataset"] == dataset) & (df["size"] == size)]
        base = cell[cell["arm"] == BASELINE].set_index("seed")
        treated = cell[cell["arm"] == dml_arm].set_index("seed")
        seeds = sorted(base.index)
        if seeds != sorted(treated.index):
            raise ValueError(f"{dataset}/{size}: seeds {seeds} of {BASELINE} and {sorted(treated.index)} "
                             f"of {dml_arm} differ; the gain is paired by seed")
        for mode in MODES:
            if treated[mode].isna().all():
                continue
            # The baseline has no proxies: proxy inference competes with the CCE classifier.
            base_mode = mode if base[mode].notna().all() else "classifier"
            res = paired_gain(
                treated.loc[seeds, mode].to_numpy(), base.loc[seeds, base_mode].to_numpy(),
                resamples=agg.bootstrap, confidence=agg.confidence,
                rng=_cell_rng(agg.seed, dataset, size, mode),
            )
            rows.append({
                "dataset": dataset, "size": size, "mode": mode, "baseline_mode": base_mode, "n": res.n,
                "gain_pp": res.gain_pp, "ci_low_pp": res.ci_low_pp, "ci_high_pp": res.ci_high_pp,
                "p_value": res.p_value, "win": res.gain_pp > 0, "note": "; ".join(res.notes),
            })
    return pd.DataFrame(rows)


def _proxy_curve_table(df: pd.DataFrame) -> pd.DataFrame:
    columns = ["dataset", "size", "weight", "accuracy_mean", "accuracy_std", "n"]
    points = [
        {"dataset": r.dataset, "size": r.size, "weight": w, "accuracy": acc}
        for r in df.itertuples() for w, acc in r.proxy_curve
    ]
    if not points:
        return pd.DataFrame(columns=columns)
    long = pd.DataFrame(points)
    out = long.groupby(["dataset", "size", "weight"], sort=False)["accuracy"].agg(["mean", "std", "count"])
    out = out.reset_index().rename(columns={"mean": "accuracy_mean", "std": "accuracy_std", "count": "n"})
    return _params_order(out, df, ["weight"])[columns]


def _loss_curve_table(df: pd.DataFrame) -> pd.DataFrame:
    points = [
        {"dataset": r.dataset, "size": r.size, "arm": r.arm, "step": step, "loss": loss}
        for r in df.itertuples() for step, loss in r.loss_curve
    ]
    out = pd.DataFrame(points).groupby(["dataset", "size", "arm", "step"], sort=False)["loss"].mean()
    out = out.reset_index().rename(columns={"loss": "loss_mean"})
    return _params_order(out, df, ["arm", "step"])


def _params_order(out: pd.DataFrame, df: pd.DataFrame, then: list[str]) -> pd.DataFrame:
    """Sort by dataset and size in params order, then by ``then`` (arm in params order)."""
    rank = {
        "dataset": {v: i for i, v in enumerate(_unique(df["dataset"]))},
        "size": {v: i for i, v in enumerate(_unique(df["size"]))},
        "arm": {v: i for i, v in enumerate(_unique(df["arm"]))},
    }
    keys = ["dataset", "size", *then]
    return out.sort_values(
        keys, key=lambda col: col.map(rank[col.name]) if col.name in rank else col, kind="stable"
    ).reset_index(drop=True)


def metrics_summary(tables: Tables) -> dict[str, dict[str, float]]:
    """The small numeric summary DVC tracks: per dataset (mean over sizes) and overall."""
    acc, gains = tables.accuracy, tables.gains
    classifier = acc[acc["mode"] == "classifier"]
    proxy = acc[(acc["mode"] == "proxy") & (acc["arm"] == tables.dml_arm)]
    cls_gains = gains[gains["mode"] == "classifier"]
    out: dict[str, dict[str, float]] = {}
    for dataset in _unique(classifier["dataset"]):
        rows = classifier[classifier["dataset"] == dataset]
        base, dml = rows[rows["arm"] == BASELINE], rows[rows["arm"] == tables.dml_arm]
        entry = {
            "cce": base["accuracy_mean"].mean(),
            "dml": dml["accuracy_mean"].mean(),
            "cce_std": base["accuracy_std"].mean(),
            "dml_std": dml["accuracy_std"].mean(),
            "dml_proxy": proxy.loc[proxy["dataset"] == dataset, "accuracy_mean"].mean(),
            "gain_pp": cls_gains.loc[cls_gains["dataset"] == dataset, "gain_pp"].mean(),
        }
        out[dataset] = entry
    overall = {
        key: float(np.mean([out[d][key] for d in out])) for key in ("cce", "dml", "dml_proxy", "gain_pp")
    }
    overall.update(wins=int(cls_gains["win"].sum()), cells=len(cls_gains))
    flagged = tables.degenerate.drop_duplicates(["dataset", "size", "seed", "arm"])
    overall.update(degenerate_cce=int((flagged["arm"] == BASELINE).sum()),
                   degenerate_dml=int((flagged["arm"] == tables.dml_arm).sum()))
    out["overall"] = overall
    return {name: _rounded(entry) for name, entry in out.items()}


def _rounded(entry: Mapping[str, float]) -> dict[str, float]:
    """Round for legibility; drop undefined values (std of one seed, proxy of a proxy-less loss)."""
    result: dict[str, float] = {}
    for key, value in entry.items():
        if isinstance(value, int):
            result[key] = value
        elif math.isfinite(value):
            result[key] = round(float(value), 2 if key.endswith("_pp") else 4)
    return result


def write_reports(params: Params, tables: Tables, reports_dir: Path) -> dict[str, dict[str, float]]:
    """Write metrics.json, results.md, plots/*.csv and figures/*.png; return the metrics."""
    reports_dir = Path(reports_dir)
    metrics = metrics_summary(tables)
    with io.atomic_dir(reports_dir / "plots") as tmp:
        report.write_plots(tables, tmp)
    with io.atomic_dir(reports_dir / "figures") as tmp:
        figures = [f"figures/{name}" for name in report.write_figures(tables, tmp)]
    io.write_json(reports_dir / "metrics.json", metrics)
    io.write_text(reports_dir / "results.md", report.render_results(params, tables, metrics, figures))
    return metrics


def run_aggregate(params: Params, runs_dir: Path, infer_dir: Path, reports_dir: Path) -> dict:
    """The aggregate stage: collect, summarise, write; return the metrics written."""
    df = collect_runs(params, Path(runs_dir), Path(infer_dir))
    log.info("collected %d runs", len(df))
    summarised = summarise(df, params.aggregate)
    metrics = write_reports(params, summarised, Path(reports_dir))
    overall = metrics["overall"]
    log.info("%s over cce: %+.2f pp on average, %d/%d cells won",
             params.loss, overall["gain_pp"], overall["wins"], overall["cells"])
    for r in summarised.degenerate.itertuples():
        log.warning("degenerate run %s: %s", layout.run_id(r.dataset, r.size, r.seed, r.arm), r.symptom)
    return metrics
