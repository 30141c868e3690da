"""Aggregate stage: exact arithmetic on synthetic runs, reports' schema, completeness, determinism."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from fewshot_dml import io
from fewshot_dml.aggregate import MissingRunsError, collect_runs, run_aggregate, summarise
from fewshot_dml.layout import run_id
from fewshot_dml.params import DATASETS, parse_params

REPO = Path(__file__).resolve().parents[1]
SEEDS = [0, 1, 2]
# Known accuracies per (dataset, arm): one value per seed. Gains in pp: mr +5, +2, +6 (mean 4.333),
# trec -2, 0, -5 (mean -2.333): the DML arm wins mr only.
ACC = {
    ("mr", "cce"): [0.70, 0.72, 0.74],
    ("mr", "proxyanchor"): [0.75, 0.74, 0.80],
    ("trec", "cce"): [0.50, 0.60, 0.55],
    ("trec", "proxyanchor"): [0.48, 0.60, 0.50],
}


def make_params(datasets=("mr", "trec"), seeds=SEEDS, sizes=(16,), loss="proxyanchor"):
    raw = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    raw.update(datasets=list(datasets), seeds=list(seeds), sample_sizes=list(sizes), loss=loss)
    raw["aggregate"]["bootstrap"] = 2000
    return parse_params(raw)


def write_run(root: Path, dataset: str, size: int, seed: int, arm: str, acc: float, proxies: bool,
              degenerate: tuple[str, ...] = ()) -> None:
    rid = run_id(dataset, size, seed, arm)
    run = root / "runs" / rid
    io.write_json(run / "metrics.json", {"accuracy": acc, "macro_f1": acc - 0.01, "n_train": size,
                                         "degenerate": list(degenerate)})
    io.write_json(run / "run.json", {"dataset": dataset, "size": size, "seed": seed, "arm": arm})
    io.write_text(run / "curve.csv", "step,lr,loss,cce,dml,pairs_ok\n"
                  + "".join(f"{s},1e-5,{(3 - s) * (seed + 1)},{1.0},,1\n" for s in (1, 2, 3)))
    pred = {"accuracy": acc, "macro_f1": acc}
    curve = [{"weight": w, "accuracy": acc + d, "macro_f1": 0.5} for w, d in ((0.0, -0.1), (0.5, 0.01), (1.0, 0.0))]
    io.write_json(root / "infer" / f"{rid}.json", {
        "classifier": pred,
        "proxy": {"weight": 0.5, "accuracy": acc + 0.01, "macro_f1": acc} if proxies else None,
        "proxy_curve": curve if proxies else [],
        "prototype": {"accuracy": acc - 0.02, "macro_f1": acc},
        "knn": {"k": 3, "accuracy": acc - 0.03, "macro_f1": acc},
    })


def write_grid(root: Path, params, acc=ACC) -> None:
    for d in params.datasets:
        for size in params.sample_sizes:
            for i, seed in enumerate(params.seeds):
                for arm in params.arms:
                    value = acc[(d, arm)][i] if (d, arm) in acc else 0.6 + 0.01 * i + 0.02 * (arm != "cce")
                    write_run(root, d, size, seed, arm, value, proxies=arm == "proxyanchor")


@pytest.fixture()
def grid(tmp_path: Path):
    params = make_params()
    write_grid(tmp_path, params)
    return params, tmp_path


def test_collect_runs_one_row_per_run_in_params_order(grid) -> None:
    params, root = grid
    df = collect_runs(params, root / "runs", root / "infer")
    assert len(df) == 2 * 3 * 2
    assert list(df[["dataset", "seed", "arm"]].itertuples(index=False, name=None))[:3] == [
        ("mr", 0, "cce"), ("mr", 0, "proxyanchor"), ("mr", 1, "cce")]
    cce = df[df["arm"] == "cce"]
    assert cce["proxy"].isna().all() and cce["proxy_curve"].map(len).eq(0).all()
    pa = df[(df["arm"] == "proxyanchor") & (df["dataset"] == "mr")]
    assert pa["proxy"].tolist() == pytest.approx([0.76, 0.75, 0.81])
    assert pa["knn"].tolist() == pytest.approx([0.72, 0.71, 0.77])


def test_collect_runs_ignores_runs_outside_the_grid(grid) -> None:
    params, root = grid
    write_run(root, "mr", 16, 7, "proxyanchor", 0.1, proxies=True)  # a stale run of another seed
    assert len(collect_runs(params, root / "runs", root / "infer")) == 12


def test_missing_runs_lists_every_missing_file(grid) -> None:
    params, root = grid
    (root / "runs" / "mr-16-1-cce" / "metrics.json").unlink()
    (root / "runs" / "trec-16-2-proxyanchor" / "curve.csv").unlink()
    (root / "infer" / "trec-16-0-cce.json").unlink()
    with pytest.raises(MissingRunsError, match="3 file") as err:
        collect_runs(params, root / "runs", root / "infer")
    for part in ("mr-16-1-cce/metrics.json", "trec-16-2-proxyanchor/curve.csv", "trec-16-0-cce.json"):
        assert part in str(err.value)


def test_run_json_of_another_run_is_rejected(grid) -> None:
    params, root = grid
    io.write_json(root / "runs" / "mr-16-0-cce" / "run.json", {"dataset": "mr", "size": 16, "seed": 1, "arm": "cce"})
    with pytest.raises(ValueError, match=r"mr-16-0-cce/run.json: seed=1, expected 0"):
        collect_runs(params, root / "runs", root / "infer")


def test_inconsistent_classifier_accuracy_is_rejected(grid) -> None:
    params, root = grid
    path = root / "infer" / "mr-16-0-cce.json"
    doc = io.read_json(path)
    doc["classifier"]["accuracy"] = 0.1
    io.write_json(path, doc)
    with pytest.raises(ValueError, match="different runs"):
        collect_runs(params, root / "runs", root / "infer")


def test_summary_arithmetic_is_exact(grid) -> None:
    params, root = grid
    tables = summarise(collect_runs(params, root / "runs", root / "infer"), params.aggregate)
    acc = tables.accuracy.set_index(["dataset", "arm", "mode"])
    assert acc.loc[("mr", "cce", "classifier"), "accuracy_mean"] == pytest.approx(0.72)
    assert acc.loc[("mr", "cce", "classifier"), "accuracy_std"] == pytest.approx(0.02)
    assert acc.loc[("trec", "proxyanchor", "proxy"), "accuracy_mean"] == pytest.approx(np.mean([0.49, 0.61, 0.51]))
    assert ("mr", "cce", "proxy") not in acc.index  # the baseline has no proxies
    assert set(acc["n"]) == {3}
    gains = tables.gains.set_index(["dataset", "mode"])
    assert gains.loc[("mr", "classifier"), "gain_pp"] == pytest.approx(13 / 3)
    assert gains.loc[("trec", "classifier"), "gain_pp"] == pytest.approx(-7 / 3)
    # proxy inference competes with the CCE classifier: mr diffs +6, +3, +7
    assert gains.loc[("mr", "proxy"), "baseline_mode"] == "classifier"
    assert gains.loc[("mr", "proxy"), "gain_pp"] == pytest.approx(16 / 3)
    assert gains.loc[("mr", "knn"), "baseline_mode"] == "knn"
    assert gains.loc[("mr", "knn"), "gain_pp"] == pytest.approx(13 / 3)
    assert gains.xs("classifier", level="mode")["win"].tolist() == [True, False]
    curve = tables.proxy_curve
    assert curve["weight"].tolist() == [0.0, 0.5, 1.0, 0.0, 0.5, 1.0]
    assert curve["accuracy_mean"].iloc[1] == pytest.approx(np.mean([0.76, 0.75, 0.81]))
    loss = tables.loss_curves
    assert loss[(loss["dataset"] == "mr") & (loss["arm"] == "cce")]["loss_mean"].tolist() == pytest.approx([4, 2, 0])


def test_metrics_json_schema_and_values(grid) -> None:
    params, root = grid
    metrics = run_aggregate(params, root / "runs", root / "infer", root / "reports")
    assert io.read_json(root / "reports" / "metrics.json") == metrics
    assert set(metrics) == {"mr", "trec", "overall"}
    assert set(metrics["mr"]) == {"cce", "dml", "dml_proxy", "gain_pp", "cce_std", "dml_std"}
    assert metrics["mr"] == {"cce": 0.72, "dml": 0.7633, "dml_proxy": 0.7733, "gain_pp": 4.33,
                             "cce_std": 0.02, "dml_std": 0.0321}
    assert metrics["overall"] == {"cce": 0.635, "dml": 0.645, "dml_proxy": 0.655, "gain_pp": 1.0,
                                  "wins": 1, "cells": 2, "degenerate_cce": 0, "degenerate_dml": 0}


def _numbers(obj) -> list:
    if isinstance(obj, dict):
        return [n for v in obj.values() for n in _numbers(v)]
    assert isinstance(obj, (int, float)) and not isinstance(obj, bool), obj
    return [obj]


def test_metrics_json_stays_small_for_seven_datasets(tmp_path: Path) -> None:
    params = make_params(datasets=DATASETS)
    write_grid(tmp_path, params)
    metrics = run_aggregate(params, tmp_path / "runs", tmp_path / "infer", tmp_path / "reports")
    numbers = _numbers(metrics)
    assert 7 * 6 + 8 == len(numbers) <= 60


def test_metrics_drop_undefined_values(tmp_path: Path) -> None:
    params = make_params(seeds=[0], loss="supcon")  # one seed: no std; supcon: no proxies
    write_grid(tmp_path, params, acc={})
    metrics = run_aggregate(params, tmp_path / "runs", tmp_path / "infer", tmp_path / "reports")
    assert set(metrics["mr"]) == {"cce", "dml", "gain_pp"}
    assert set(metrics["overall"]) == {"cce", "dml", "gain_pp", "wins", "cells", "degenerate_cce", "degenerate_dml"}
    results = (tmp_path / "reports" / "results.md").read_text(encoding="utf-8")
    assert "no bootstrap CI with n=1" in results and "has no proxies" in results
    assert (tmp_path / "reports" / "plots" / "proxy_weight.csv").read_text() == "dataset,size,weight,accuracy,accuracy_std\n"


def test_results_md_states_what_was_run_and_the_reference(grid) -> None:
    params, root = grid
    run_aggregate(params, root / "runs", root / "infer", root / "reports")
    text = (root / "reports" / "results.md").read_text(encoding="utf-8")
    assert "## What was run" in text
    for fact in ("`minilm`", "| datasets | mr, trec |", "| seeds | 0, 1, 2 |", "| few-shot sizes | 16 |",
                 "`kfold`, 4 folds", f"{params.train.steps} steps", "0.4·CCE + 0.6·proxyanchor", "w = 0.5", "k = 3"):
        assert fact in text, fact
    assert "CCE+ProxyAnchor (**published reference**) | +3.27 pp on average (up to +10.38 pp) | RoBERTa-large" in text
    assert "CCE+SoftTriple (**published reference**) | +2.89 pp on average (+0.04 to +13.48 pp)" in text
    assert "CCE+proxyanchor (**this run**) | +1.00 pp on average (-2.33 to +4.33 pp)" in text
    assert "| mr | 16 | `cce` | 72.00 ± 2.00 (n=3) |" in text
    assert "`classifier`: 1/2 cells won" in text
    for fig in ("accuracy", "proxy_weight", "loss_curves"):
        assert f"](figures/{fig}.png)" in text
        assert (root / "reports" / "figures" / f"{fig}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plots_csvs_have_dvc_columns(grid) -> None:
    params, root = grid
    run_aggregate(params, root / "runs", root / "infer", root / "reports")
    plots = root / "reports" / "plots"
    expected = {
        "accuracy.csv": ["dataset", "size", "arm", "mode", "accuracy_mean", "accuracy_std"],
        "proxy_weight.csv": ["dataset", "size", "weight", "accuracy", "accuracy_std"],
        "loss_curves.csv": ["dataset", "size", "arm", "step", "loss"],
    }
    for name, columns in expected.items():
        with (plots / name).open(newline="") as fh:
            rows = list(csv.reader(fh))
        assert rows[0] == columns
        assert len(rows) > 1
    assert rows[1] == ["mr", "16", "cce", "1", "4.000000"]


def test_outputs_are_byte_identical_across_runs(grid) -> None:
    params, root = grid
    outputs = []
    for name in ("a", "b"):
        run_aggregate(params, root / "runs", root / "infer", root / name)
        files = sorted(p for p in (root / name).rglob("*") if p.is_file())
        outputs.append({p.relative_to(root / name).as_posix(): p.read_bytes() for p in files})
    assert outputs[0] == outputs[1]
    assert len(outputs[0]) == 8  # metrics.json, results.md, 3 plots, 3 figures
    assert not [p for p in root.rglob("*.tmp")]


def test_gain_ci_and_p_value_come_from_the_paired_seeds(grid) -> None:
    params, root = grid
    tables = summarise(collect_runs(params, root / "runs", root / "infer"), params.aggregate)
    row = tables.gains.set_index(["dataset", "mode"]).loc[("mr", "classifier")]
    assert row["ci_low_pp"] <= row["gain_pp"] <= row["ci_high_pp"]
    assert row["ci_low_pp"] >= 2 - 1e-9 and row["ci_high_pp"] <= 6 + 1e-9  # within the seeds' range
    assert row["p_value"] == pytest.approx(0.25)  # exact two-sided test, 3 positive differences
    assert json.loads(json.dumps(float(row["gain_pp"]))) == pytest.approx(13 / 3)
    assert not math.isnan(row["ci_low_pp"])


def test_summarise_rejects_unpaired_seeds(grid) -> None:
    params, root = grid
    df = collect_runs(params, root / "runs", root / "infer")
    df = df[~((df["arm"] == "proxyanchor") & (df["seed"] == 2) & (df["dataset"] == "trec"))]
    with pytest.raises(ValueError, match=r"trec/16: seeds \[0, 1, 2\] of cce and \[0, 1\] of proxyanchor differ"):
        summarise(df, params.aggregate)


def test_degenerate_runs_are_counted_marked_and_listed_never_silently_averaged(grid, caplog) -> None:
    params, root = grid
    collapsed = "predictions collapsed: all 10 evaluation examples are predicted as class 0 (2 classes present)"
    write_run(root, "mr", 16, 1, "proxyanchor", 0.74, proxies=True, degenerate=(collapsed, "embeddings have no variance"))
    metrics = run_aggregate(params, root / "runs", root / "infer", root / "reports")
    assert (metrics["overall"]["degenerate_cce"], metrics["overall"]["degenerate_dml"]) == (0, 1)
    # Still in the numbers (it is what the arm produced), so the means are unchanged ...
    assert metrics["mr"]["dml"] == 0.7633
    text = (root / "reports" / "results.md").read_text(encoding="utf-8")
    # ... but marked in the table, counted in the summary and listed with its evidence.
    assert "| mr | 16 | `proxyanchor` | 76.33 ± 3.21 (n=3, 1 degenerate ⚠) |" in text
    assert "**1 of 12 runs are degenerate** (0 `cce`, 1 `proxyanchor`" in text
    assert f"| mr | 16 | 1 | `proxyanchor` | {collapsed}; embeddings have no variance |" in text
    assert "degenerate run mr-16-1-proxyanchor: predictions collapsed" in caplog.text


def test_a_report_without_degenerate_runs_says_so(grid) -> None:
    params, root = grid
    run_aggregate(params, root / "runs", root / "infer", root / "reports")
    text = (root / "reports" / "results.md").read_text(encoding="utf-8")
    assert "No run of the 12 was flagged as degenerate." in text and "None of the 12 runs was flagged." in text
