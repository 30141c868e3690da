"""Aggregate the runs of the grid into tables, DVC metrics, DVC plots data and the report.

``collect_runs`` reads exactly the runs that the params imply (never a glob: a stale run left in
``data/runs`` must not leak into the numbers), ``summary.summarise`` turns them into tables with
paired statistics, ``write_reports`` writes ``reports/``. ``run_aggregate`` is the stage's one call.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from fewshot_dml.catalog.arms import BASELINE
from fewshot_dml.config.params import Params
from fewshot_dml.config.sections import AggregateParams
from fewshot_dml.core import io, layout, rundir
from fewshot_dml.report import figures, schema
from fewshot_dml.report import results as report
from fewshot_dml.report.choice import render_tuning
from fewshot_dml.report.headline import HEADLINE_FILE, headline
from fewshot_dml.report.stats import blocked_gain, paired_differences
from fewshot_dml.report.summary import roles, summarise, unique
from fewshot_dml.report.tables import MODES, Tables

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
    grid = layout.grid(params.datasets, params.sample_sizes, params.seeds, params.arms)
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
    classifier = _get(infer, "classifier", files["infer"])
    if abs(_number(classifier, "accuracy", files["infer"]) - accuracy) > _ACC_TOL:
        raise ValueError(
            f"{files['infer']}: classifier accuracy {classifier['accuracy']} differs from {files['metrics']} "
            f"accuracy {accuracy}; the files come from different runs (re-run infer)"
        )
    modes: dict[str, float] = {}
    for mode in MODES:
        result = _get(infer, mode, files["infer"])
        if result is None:  # proxy inference of an arm without proxies
            modes[mode] = modes[f"{mode}_f1"] = math.nan
            continue
        if mode == "proxy" and abs(_number(result, "weight", files["infer"]) - weight) > 1e-9:
            raise ValueError(f"{files['infer']}: proxy weight {result['weight']}, expected infer.proxy_weight={weight}")
        modes[mode] = _number(result, "accuracy", files["infer"])
        modes[f"{mode}_f1"] = _number(result, "macro_f1", files["infer"])
    dev = _get(metrics, "dev_accuracy", files["metrics"])
    checkpoints = _get(metrics, "dev_checkpoints", files["metrics"])
    if not isinstance(checkpoints, list):
        raise ValueError(f"{files['metrics']}: dev_checkpoints={checkpoints!r}; expected a list of {{step, dev_accuracy}}")
    curve = tuple(
        (round(_number(p, "weight", files["infer"]), 6), _number(p, "accuracy", files["infer"]))
        for p in _get(infer, "proxy_curve", files["infer"])
    )
    return {
        **dict(zip(KEYS, cell, strict=True)),
        **modes,
        "dev_accuracy": math.nan if dev is None else _number(metrics, "dev_accuracy", files["metrics"]),
        "majority_accuracy": _number(metrics, "majority_accuracy", files["metrics"]),
        "confusion": np.asarray(_get(classifier, "confusion", files["infer"]), np.int64),
        "label_names": tuple(_get(run, "label_names", files["run"])),
        "proxy_curve": curve,
        "loss_curve": rundir.read_curve(files["curve"]),
        "degenerate": tuple(degenerate),
        "steps": int(_number(metrics, "steps", files["metrics"])),
        "selected_step": int(_number(metrics, "selected_step", files["metrics"])),
        "dev_checkpoints": tuple(
            {"step": int(_number(c, "step", files["metrics"])), "dev_accuracy": _number(c, "dev_accuracy", files["metrics"])}
            for c in checkpoints
        ),
    }


def _gain_entry(prefix: str, row: Any) -> dict[str, float]:
    values = (
        row.gain_pp,
        row.ci_low_pp,
        row.ci_high_pp,
        math.nan if row.p_value is None else row.p_value,
        math.nan if row.p_holm is None else row.p_holm,
    )
    return dict(zip(schema.gain_fields(prefix), values, strict=True))


def metrics_summary(tables: Tables, agg: AggregateParams) -> dict[str, dict[str, float]]:
    """The small numeric summary DVC tracks: per dataset (over its sizes) and overall, arms by role."""
    acc, role_of = tables.accuracy, roles(tables.dml_arm)
    cls = acc[acc["mode"] == "classifier"]
    proxy = acc[(acc["mode"] == "proxy") & (acc["arm"] == tables.dml_arm)]
    runs = tables.runs
    out: dict[str, dict[str, float]] = {}
    for dataset in unique(cls["dataset"]):
        rows = cls[cls["dataset"] == dataset]
        entry: dict[str, float] = {}
        for arm, role in role_of.items():
            entry[role] = rows.loc[rows["arm"] == arm, "accuracy_mean"].mean()
            entry[schema.dev(role)] = rows.loc[rows["arm"] == arm, "dev_mean"].mean()
        entry[schema.PROXY] = proxy.loc[proxy["dataset"] == dataset, "accuracy_mean"].mean()
        entry[schema.MAJORITY] = rows["majority_mean"].mean()
        # The gain over this dataset's sizes: one cell, or a blocked analysis over several.
        here = runs[runs["dataset"] == dataset]
        cells = [
            paired_differences(
                *(
                    here[(here["size"] == size) & (here["arm"] == arm)].sort_values("seed")["classifier"].to_numpy()
                    for arm in (tables.dml_arm, BASELINE)
                )
            )
            for size in unique(here["size"])
        ]
        res = blocked_gain(cells, confidence=agg.confidence, seed=agg.seed)
        entry.update(
            zip(
                schema.gain_fields(schema.GAIN)[:4],
                (res.gain_pp, res.ci_low_pp, res.ci_high_pp, math.nan if res.p_value is None else res.p_value),
                strict=True,
            ),
            n=res.n,
        )
        out[dataset] = entry
    overall: dict[str, float] = {key: float(np.mean([out[d][key] for d in out])) for key in schema.MEANS}
    ov = {(r.treated, r.baseline, r.mode): r for r in tables.overall.itertuples()}
    dml = tables.dml_arm
    arm_of = {role: arm for arm, role in role_of.items()}
    for prefix, treated, baseline in schema.COMPARISONS:
        overall.update(_gain_entry(prefix, ov[(arm_of[treated], arm_of[baseline], "classifier")]))
    primary = ov[(dml, BASELINE, "classifier")]
    cells = tables.gains[(tables.gains["treated"] == dml) & (tables.gains["baseline"] == BASELINE) & (tables.gains["mode"] == "classifier")]
    overall.update(
        n=primary.n, cells=primary.cells, won=int((cells["verdict"] == "won").sum()), lost=int((cells["verdict"] == "lost").sum())
    )
    flagged = tables.degenerate.drop_duplicates(["dataset", "size", "seed", "arm"])
    overall.update({f"degenerate_{role}": int((flagged["arm"] == arm).sum()) for arm, role in role_of.items()})
    out[schema.OVERALL] = overall
    return {name: _rounded(entry) for name, entry in out.items()}


def _rounded(entry: Mapping[str, float]) -> dict[str, float]:
    """Round for legibility; drop undefined values (std of one seed, proxy of a proxy-less loss)."""
    result: dict[str, float] = {}
    for key, value in entry.items():
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            result[key] = int(value)
        elif math.isfinite(value):
            digits = 4 if key.endswith(("_p", "_p_holm")) or not key.endswith("_pp") else 2
            result[key] = round(float(value), digits)
    return result


def write_reports(params: Params, tables: Tables, reports_dir: Path) -> dict[str, dict[str, float]]:
    """Write headline.json, metrics.json, results.md, tuning.md, plots/*.csv and figures/*.png; return the metrics."""
    reports_dir = Path(reports_dir)
    metrics = metrics_summary(tables, params.aggregate)
    with io.atomic_dir(reports_dir / "plots") as tmp:
        figures.write_plots(tables, tmp)
    with io.atomic_dir(reports_dir / "figures") as tmp:
        names = [f"figures/{name}" for name in figures.write_figures(tables, tmp)]
    role_of = roles(tables.dml_arm)
    called = {(role_of[r.treated], role_of[r.baseline]): r.verdict for r in tables.overall.itertuples() if r.mode == "classifier"}
    io.write_json(reports_dir / HEADLINE_FILE, headline(metrics, params.loss, params.aggregate.alpha, called))
    io.write_json(reports_dir / schema.METRICS_FILE, metrics)
    io.write_text(reports_dir / "results.md", report.render_results(params, tables, names))
    io.write_text(reports_dir / "tuning.md", render_tuning(params, tables))
    return metrics


def gain_sentence(overall: Mapping[str, float], confidence: float) -> str:
    """The overall gain as the log says it; where the interval or the test cannot be computed (one seed
    pair), it says why instead of printing NaN."""
    text = f"{overall['gain_pp']:+.2f} pp on average"
    if "gain_low_pp" in overall and "gain_high_pp" in overall:
        text += f" (blocked {confidence:.0%} CI [{overall['gain_low_pp']:+.2f}, {overall['gain_high_pp']:+.2f}]"
    else:
        text += f" (no interval: {overall['n']} seed pair(s) give no variance estimate"
    p = overall.get("gain_p_holm")
    return text + (f", Holm p {p:.3g})" if p is not None else "; no test)")


def run_aggregate(params: Params, runs_dir: Path, infer_dir: Path, reports_dir: Path) -> dict:
    """The aggregate stage: collect, summarise, write; return the metrics written."""
    df = collect_runs(params, Path(runs_dir), Path(infer_dir))
    log.info("collected %d runs", len(df))
    summarised = summarise(df, params.aggregate)
    metrics = write_reports(params, summarised, Path(reports_dir))
    overall = metrics["overall"]
    log.info(
        "%s over cce: %s; %d won, %d lost of %d cells after Holm",
        params.loss,
        gain_sentence(overall, params.aggregate.confidence),
        overall["won"],
        overall["lost"],
        overall["cells"],
    )
    for r in summarised.degenerate.itertuples():
        log.warning("degenerate run %s: %s", layout.run_id(r.dataset, r.size, r.seed, r.arm), r.symptom)
    return metrics
