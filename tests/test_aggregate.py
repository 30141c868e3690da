"""Aggregate stage: exact arithmetic on synthetic runs, reports' schema, completeness, determinism."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from fewshot_dml.config.params import parse_params
from fewshot_dml.config.sections import DATASETS
from fewshot_dml.core import io
from fewshot_dml.core.layout import run_id
from fewshot_dml.report import results as report
from fewshot_dml.report.aggregate import MissingRunsError, collect_runs, run_aggregate
from fewshot_dml.report.protocol import what_was_run
from fewshot_dml.report.summary import summarise

REPO = Path(__file__).resolve().parents[1]
SEEDS = [0, 1, 2]
# Known accuracies per (dataset, arm): one value per seed. Gains in pp: mr +5, +2, +6 (mean 4.333),
# trec -2, 0, -5 (mean -2.333). Runs not listed get 0.6 + 0.01 * seed (+0.02 for the DML arm).
ACC = {
    ("mr", "cce"): [0.70, 0.72, 0.74],
    ("mr", "proxyanchor"): [0.75, 0.74, 0.80],
    ("mr", "setfit"): [0.71, 0.75, 0.74],
    ("trec", "cce"): [0.50, 0.60, 0.55],
    ("trec", "proxyanchor"): [0.48, 0.60, 0.50],
    ("trec", "setfit"): [0.52, 0.61, 0.58],
}


def make_params(datasets=("mr", "trec"), seeds=SEEDS, sizes=(16,), loss="proxyanchor", sample=(), **train):
    raw = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    raw.update(datasets=list(datasets), seeds=list(seeds), sample_sizes=list(sizes), loss=loss)
    raw["sample"].update(sample)
    raw["train"].update(train)
    return parse_params(raw)


def write_run(
    root: Path, dataset: str, size: int, seed: int, arm: str, acc: float, proxies: bool, degenerate: tuple[str, ...] = ()
) -> None:
    rid = run_id(dataset, size, seed, arm)
    run = root / "runs" / rid
    io.write_json(
        run / "metrics.json",
        {
            "accuracy": acc,
            "macro_f1": acc - 0.01,
            "n_train": size,
            "dev_accuracy": acc - 0.05,
            "majority_accuracy": 0.5,
            "degenerate": list(degenerate),
            "steps": 3,
            "selected_step": 2 if seed % 2 else 3,
            "dev_checkpoints": [{"step": s, "dev_accuracy": acc - 0.05 - 0.01 * (s - 2 if seed % 2 else 3 - s)} for s in (1, 2, 3)],
        },
    )
    io.write_json(run / "run.json", {"dataset": dataset, "size": size, "seed": seed, "arm": arm, "label_names": ["negative", "positive"]})
    dml = "0.5" if arm not in ("cce",) else ""
    io.write_text(
        run / "curve.csv",
        "step,lr,loss,cce,dml,pairs_ok\n" + "".join(f"{s},1e-5,{(3 - s) * (seed + 1)},{1.0 * s},{dml},1\n" for s in (1, 2, 3)),
    )
    correct = round(acc * 100)
    pred = {
        "accuracy": acc,
        "macro_f1": acc - 0.01,
        "confusion": [[correct // 2, 50 - correct // 2], [50 - (correct - correct // 2), correct - correct // 2]],
    }
    curve = [{"weight": w, "accuracy": acc + d, "macro_f1": 0.5} for w, d in ((0.0, -0.1), (0.5, 0.01), (1.0, 0.0))]
    io.write_json(
        root / "infer" / f"{rid}.json",
        {
            "classifier": pred,
            "proxy": {"weight": 0.5, "accuracy": acc + 0.01, "macro_f1": acc} if proxies else None,
            "proxy_curve": curve if proxies else [],
            "prototype": {"accuracy": acc - 0.02, "macro_f1": acc},
            "knn": {"k": 3, "accuracy": acc - 0.03, "macro_f1": acc},
        },
    )


def write_grid(root: Path, params, acc=ACC) -> None:
    for d in params.datasets:
        for size in params.sample_sizes:
            for i, seed in enumerate(params.seeds):
                for arm in params.arms:
                    value = acc[(d, arm)][i] if (d, arm) in acc else 0.6 + 0.01 * i + 0.02 * (arm == params.loss)
                    write_run(root, d, size, seed, arm, value, proxies=arm == "proxyanchor")


@pytest.fixture()
def grid(tmp_path: Path):
    params = make_params()
    write_grid(tmp_path, params)
    return params, tmp_path


def test_collect_runs_one_row_per_run_in_params_order(grid) -> None:
    params, root = grid
    df = collect_runs(params, root / "runs", root / "infer")
    assert len(df) == 2 * 3 * 3
    assert list(df[["dataset", "seed", "arm"]].itertuples(index=False, name=None))[:4] == [
        ("mr", 0, "cce"),
        ("mr", 0, "setfit"),
        ("mr", 0, "proxyanchor"),
        ("mr", 1, "cce"),
    ]
    cce = df[df["arm"] == "cce"]
    assert cce["proxy"].isna().all() and cce["proxy_curve"].map(len).eq(0).all()
    pa = df[(df["arm"] == "proxyanchor") & (df["dataset"] == "mr")]
    assert pa["proxy"].tolist() == pytest.approx([0.76, 0.75, 0.81])
    assert pa["knn"].tolist() == pytest.approx([0.72, 0.71, 0.77])
    assert pa["dev_accuracy"].tolist() == pytest.approx([0.70, 0.69, 0.75])
    assert pa["classifier_f1"].tolist() == pytest.approx([0.74, 0.73, 0.79])


def test_collect_runs_ignores_runs_outside_the_grid(grid) -> None:
    params, root = grid
    write_run(root, "mr", 16, 7, "proxyanchor", 0.1, proxies=True)  # a stale run of another seed
    assert len(collect_runs(params, root / "runs", root / "infer")) == 18


def test_missing_runs_lists_every_missing_file(grid) -> None:
    params, root = grid
    (root / "runs" / "mr-16-cce" / "1" / "metrics.json").unlink()
    (root / "runs" / "trec-16-proxyanchor" / "2" / "curve.csv").unlink()
    (root / "infer" / "trec-16-setfit" / "0.json").unlink()
    with pytest.raises(MissingRunsError, match="3 file") as err:
        collect_runs(params, root / "runs", root / "infer")
    for part in ("mr-16-cce/1/metrics.json", "trec-16-proxyanchor/2/curve.csv", "trec-16-setfit/0.json"):
        assert part in str(err.value)


def test_run_json_of_another_run_is_rejected(grid) -> None:
    params, root = grid
    io.write_json(
        root / "runs" / "mr-16-cce" / "0" / "run.json",
        {"dataset": "mr", "size": 16, "seed": 1, "arm": "cce", "label_names": ["negative", "positive"]},
    )
    with pytest.raises(ValueError, match=r"mr-16-cce/0/run.json: seed=1, expected 0"):
        collect_runs(params, root / "runs", root / "infer")


def test_inconsistent_classifier_accuracy_is_rejected(grid) -> None:
    params, root = grid
    path = root / "infer" / "mr-16-cce" / "0.json"
    doc = io.read_json(path)
    doc["classifier"]["accuracy"] = 0.1
    io.write_json(path, doc)
    with pytest.raises(ValueError, match="different runs"):
        collect_runs(params, root / "runs", root / "infer")


def test_the_verdict_says_when_an_uncorrected_interval_excludes_zero_but_holm_does_not(grid) -> None:
    params, root = grid
    tables = summarise(collect_runs(params, root / "runs", root / "infer"), params.aggregate)
    row = (tables.overall["treated"] == "proxyanchor") & (tables.overall["baseline"] == "cce") & (tables.overall["mode"] == "classifier")
    tables.overall.loc[row, ["ci_low_pp", "ci_high_pp", "p_holm", "verdict"]] = [0.2, 2.5, 0.096, "not shown"]
    text = report._verdict(params, tables)
    n = int(tables.overall["p_holm"].notna().sum())
    assert (
        "we cannot tell `proxyanchor` from `cce`" in text
        and "its uncorrected interval excludes zero, but the "
        f"test does not reach p < 0.05 after Holm's correction over the {n} overall tests"
        in text
    )
    assert '"Cannot tell" means the Holm-corrected test does not reach p < 0.05' in text
    assert "means the interval includes zero" not in text


def test_summary_arithmetic_is_exact(grid) -> None:
    params, root = grid
    tables = summarise(collect_runs(params, root / "runs", root / "infer"), params.aggregate)
    acc = tables.accuracy.set_index(["dataset", "arm", "mode"])
    assert acc.loc[("mr", "cce", "classifier"), "accuracy_mean"] == pytest.approx(0.72)
    assert acc.loc[("mr", "cce", "classifier"), "accuracy_std"] == pytest.approx(0.02)
    assert acc.loc[("mr", "cce", "classifier"), "macro_f1_mean"] == pytest.approx(0.71)
    assert acc.loc[("mr", "cce", "classifier"), "dev_mean"] == pytest.approx(0.67)
    assert acc.loc[("mr", "cce", "classifier"), "majority_mean"] == pytest.approx(0.5)
    assert acc.loc[("trec", "proxyanchor", "proxy"), "accuracy_mean"] == pytest.approx(np.mean([0.49, 0.61, 0.51]))
    assert ("mr", "cce", "proxy") not in acc.index and ("mr", "setfit", "proxy") not in acc.index
    assert set(acc["n"]) == {3}
    g = tables.gains.set_index(["treated", "baseline", "dataset", "mode"])
    assert g.loc[("proxyanchor", "cce", "mr", "classifier"), "gain_pp"] == pytest.approx(13 / 3)
    assert g.loc[("proxyanchor", "cce", "trec", "classifier"), "gain_pp"] == pytest.approx(-7 / 3)
    # proxy inference competes with the CCE classifier: mr diffs +6, +3, +7
    assert g.loc[("proxyanchor", "cce", "mr", "proxy"), "baseline_mode"] == "classifier"
    assert g.loc[("proxyanchor", "cce", "mr", "proxy"), "gain_pp"] == pytest.approx(16 / 3)
    assert g.loc[("proxyanchor", "cce", "mr", "knn"), "baseline_mode"] == "knn"
    assert g.loc[("setfit", "cce", "mr", "classifier"), "gain_pp"] == pytest.approx(4 / 3)
    assert g.loc[("proxyanchor", "setfit", "trec", "classifier"), "gain_pp"] == pytest.approx(-13 / 3)
    assert len(tables.gains) == 2 * 6  # 4 modes vs cce, setfit vs cce, DML vs setfit, on 2 cells
    # 3 seeds: no exact p below 0.25, so nothing is won whatever the point estimate says.
    assert set(tables.gains["p_min"]) == {0.25} and set(tables.gains["verdict"]) == {"not shown"}
    curve = tables.proxy_curve
    assert curve["weight"].tolist() == [0.0, 0.5, 1.0, 0.0, 0.5, 1.0]
    assert curve["accuracy_mean"].iloc[1] == pytest.approx(np.mean([0.76, 0.75, 0.81]))
    loss = tables.loss_curves
    mr_cce = loss[(loss["dataset"] == "mr") & (loss["arm"] == "cce")]
    assert mr_cce["loss_mean"].tolist() == pytest.approx([4, 2, 0]) and mr_cce["dml_mean"].isna().all()
    assert mr_cce["cce_mean"].tolist() == pytest.approx([1, 2, 3])
    assert tables.confusion[("mr", 16, "cce")].sum() == 300  # 100 examples x 3 seeds


def test_overall_gain_is_the_blocked_analysis_of_every_seed_pair(grid) -> None:
    from fewshot_dml.report.stats import blocked_gain

    params, root = grid
    tables = summarise(collect_runs(params, root / "runs", root / "infer"), params.aggregate)
    row = tables.overall.set_index(["treated", "baseline", "mode"]).loc[("proxyanchor", "cce", "classifier")]
    expected = blocked_gain([np.array([0.05, 0.02, 0.06]), np.array([-0.02, 0.0, -0.05])], confidence=0.95)
    assert row["gain_pp"] == pytest.approx(1.0) == pytest.approx(expected.gain_pp)
    assert (row["ci_low_pp"], row["ci_high_pp"]) == pytest.approx((expected.ci_low_pp, expected.ci_high_pp))
    assert (row["n"], row["df"], row["cells"]) == (6, 4, 2)
    assert row["p_value"] == pytest.approx(expected.p_value) and row["exact"]
    assert len(tables.overall) == 6 and tables.overall["p_holm"].notna().all()


def consistent_gain_grid(tmp_path: Path):
    """MR, ten seeds: proxyanchor 10 pp above cce, which setfit equals; written under ``tmp_path``."""
    seeds = list(range(10))
    acc = {
        ("mr", "cce"): [0.60 + 0.005 * i for i in seeds],
        ("mr", "proxyanchor"): [0.70 + 0.004 * i for i in seeds],
        ("mr", "setfit"): [0.60 + 0.005 * i for i in seeds],
    }
    params = make_params(datasets=("mr",), seeds=seeds)
    write_grid(tmp_path, params, acc=acc)
    return params


def test_a_consistent_gain_with_enough_seeds_is_won_after_holm(tmp_path: Path) -> None:
    params = consistent_gain_grid(tmp_path)
    tables = summarise(collect_runs(params, tmp_path / "runs", tmp_path / "infer"), params.aggregate)
    g = tables.gains.set_index(["treated", "baseline", "mode"])
    assert g.loc[("proxyanchor", "cce", "classifier"), "p_value"] == pytest.approx(2 / 1024)
    assert g.loc[("proxyanchor", "cce", "classifier"), "verdict"] == "won"
    assert g.loc[("proxyanchor", "setfit", "classifier"), "verdict"] == "won"
    assert g.loc[("setfit", "cce", "classifier"), "verdict"] == "not shown"  # every difference is zero


def test_metrics_json_schema_and_values(grid) -> None:
    params, root = grid
    metrics = run_aggregate(params, root / "runs", root / "infer", root / "reports")
    assert io.read_json(root / "reports" / "metrics.json") == metrics
    assert set(metrics) == {"mr", "trec", "overall"}
    mr = metrics["mr"]
    assert {k: mr[k] for k in ("cce", "setfit", "dml", "dml_proxy", "majority", "gain_pp", "n")} == {
        "cce": 0.72,
        "setfit": 0.7333,
        "dml": 0.7633,
        "dml_proxy": 0.7733,
        "majority": 0.5,
        "gain_pp": 4.33,
        "n": 3,
    }
    assert mr["gain_low_pp"] < 4.33 < mr["gain_high_pp"] and mr["gain_p"] == 0.25
    assert mr["dev_cce"] == 0.67
    overall = metrics["overall"]
    assert (overall["gain_pp"], overall["n"], overall["cells"], overall["won"], overall["lost"]) == (1.0, 6, 2, 0, 0)
    for prefix in ("gain", "setfit_gain", "vs_setfit"):
        assert {f"{prefix}_pp", f"{prefix}_low_pp", f"{prefix}_high_pp", f"{prefix}_p", f"{prefix}_p_holm"} <= set(overall)
    assert (overall["degenerate_cce"], overall["degenerate_setfit"], overall["degenerate_dml"]) == (0, 0, 0)


def test_the_headline_names_the_loss_and_holds_the_answer_in_about_twenty_stable_keys(tmp_path: Path) -> None:
    params = consistent_gain_grid(tmp_path)
    metrics = run_aggregate(params, tmp_path / "runs", tmp_path / "infer", tmp_path / "reports")
    head = io.read_json(tmp_path / "reports" / "headline.json")
    overall = metrics["overall"]
    assert head["loss_name"] == "proxyanchor" and not any("dml" in key or "proxyanchor" in key for key in head)
    assert (head["acc_cce"], head["acc_setfit"], head["acc_loss"]) == (overall["cce"], overall["setfit"], overall["dml"])
    assert (head["loss_vs_cce_pp"], head["loss_vs_cce_p_holm"]) == (overall["gain_pp"], overall["gain_p_holm"])
    assert head["loss_vs_cce_low_pp"] < head["loss_vs_cce_pp"] < head["loss_vs_cce_high_pp"]
    assert head["loss_vs_cce_verdict"] == head["loss_vs_setfit_verdict"] == "gain"
    assert (head["cells"], head["cells_won"], head["cells_lost"], head["degenerate_runs"]) == (1, 1, 0, 0)
    assert 15 <= len(head) <= 22


def test_the_headline_verdict_needs_holm() -> None:
    from fewshot_dml.report.headline import verdict

    assert verdict(2.0, 0.01, 0.05) == "gain" and verdict(-2.0, 0.01, 0.05) == "loss"
    assert verdict(2.0, 0.05, 0.05) == verdict(2.0, None, 0.05) == verdict(None, None, 0.05) == "not shown"


def _numbers(obj) -> list:
    if isinstance(obj, dict):
        return [n for v in obj.values() for n in _numbers(v)]
    assert isinstance(obj, (int, float)) and not isinstance(obj, bool), obj
    return [obj]


def test_metrics_json_stays_small_for_seven_datasets(tmp_path: Path) -> None:
    params = make_params(datasets=DATASETS)
    write_grid(tmp_path, params)
    metrics = run_aggregate(params, tmp_path / "runs", tmp_path / "infer", tmp_path / "reports")
    assert len(_numbers(metrics)) <= 7 * 14 + 35


def test_metrics_drop_undefined_values(tmp_path: Path) -> None:
    params = make_params(seeds=[0], loss="supcon")  # one seed: no interval, no test; supcon: no proxies
    write_grid(tmp_path, params, acc={})
    metrics = run_aggregate(params, tmp_path / "runs", tmp_path / "infer", tmp_path / "reports")
    assert "dml_proxy" not in metrics["mr"] and "gain_low_pp" not in metrics["mr"] and "gain_p" not in metrics["mr"]
    results = (tmp_path / "reports" / "results.md").read_text(encoding="utf-8")
    assert "has no proxies" in results
    # The plots file exists with no rows, so `dvc plots show` does not fail to load it.
    assert (tmp_path / "reports" / "plots" / "proxy_weight.csv").read_text() == "weight,arm,accuracy\n"


def test_results_md_answers_the_question(grid) -> None:
    params, root = grid
    run_aggregate(params, root / "runs", root / "infer", root / "reports")
    text = (root / "reports" / "results.md").read_text(encoding="utf-8")
    for section in (
        "## Verdict",
        "## What was run",
        "## What this protocol can detect",
        "## Accuracy and macro-F1",
        "## Overall gain",
        "## Gains per dataset",
        "## Sources",
    ):
        assert section in text, section
    for fact in (
        "`minilm`",
        "| datasets | mr, trec |",
        "| seeds | 0, 1, 2 (n = 3) |",
        "| few-shot sizes | 16 |",
        "`per_class`: the size is examples of every class",
        f"{params.train.steps} steps",
        "0.4·CCE + 0.6·proxyanchor",
        "w = 0.5",
        "k = 3",
        "development set of 1× the training set",
    ):
        assert fact in text, fact
    # The verdict follows the corrected tests: 3 seeds can show nothing.
    assert "we cannot tell `proxyanchor` from `cce`: +1.00 pp on average over 2 dataset × size cells" in text
    assert "won 0 and lost 0 of 2 cells after Holm's correction (raw count of positive point estimates, not a test: 1/2)" in text
    assert "cannot reach p < 0.25" in text
    assert "| mr | 16 | 50.00 | 72.00 ± 2.00 | 73.33 ± 2.08 | 76.33 ± 3.21 |" in text
    assert (
        "CCE+ProxyAnchor (published, RoBERTa-large, the studies' protocol): +3.27 pp on average (up to +10.38 pp)"
        " — the same loss as this report's DML arm" in text
    )
    for arxiv in ("2211.15202", "2211.15195", "2112.08462", "2106.04990", "2209.11055"):
        assert f"arXiv:{arxiv}" in text
    for fig in ("forest", "accuracy_vs_size", "proxy_weight", "loss_curves", "confusion"):
        assert f"](figures/{fig}.png)" in text
        assert (root / "reports" / "figures" / f"{fig}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plots_csvs_answer_one_question_each(grid) -> None:
    params, root = grid
    run_aggregate(params, root / "runs", root / "infer", root / "reports")
    plots = root / "reports" / "plots"
    expected = {
        "gains.csv": ["dataset", "gain_pp", "ci_low_pp", "ci_high_pp"],
        "accuracy_vs_size.csv": ["size", "arm", "accuracy"],  # long: .dvc/plots templates colour by arm
        "proxy_weight.csv": ["weight", "arm", "accuracy"],
        "loss_curves.csv": ["step", "arm", "loss"],
        "confusion.csv": ["actual", "predicted"],  # the DML arm's (true, predicted) pairs, for DVC's confusion template
    }
    rows = {}
    for name, columns in expected.items():
        with (plots / name).open(newline="") as fh:
            rows[name] = list(csv.reader(fh))
        assert rows[name][0] == columns, name
    assert rows["gains.csv"][1][:2] == ["mr", "4.333333"] and rows["gains.csv"][-1][:2] == ["overall (blocked)", "1.000000"]
    assert rows["accuracy_vs_size.csv"][1:] == [["16", "cce", "0.635000"], ["16", "setfit", "0.651667"], ["16", "dml", "0.645000"]]
    assert rows["loss_curves.csv"][1:4] == [
        ["1", "cce: total", "1.000000"],
        ["1", "dml: CCE term", "1.000000"],
        ["1", "dml: DML term", "0.500000"],
    ]


def test_outputs_are_byte_identical_across_runs(grid) -> None:
    params, root = grid
    outputs = []
    for name in ("a", "b"):
        run_aggregate(params, root / "runs", root / "infer", root / name)
        files = sorted(p for p in (root / name).rglob("*") if p.is_file())
        outputs.append({p.relative_to(root / name).as_posix(): p.read_bytes() for p in files})
    assert outputs[0] == outputs[1]
    assert len(outputs[0]) == 14  # headline.json, metrics.json, results.md, tuning.md, 5 plots, 5 figures
    assert not [p for p in root.rglob("*.tmp")]


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
    # ... but marked in the table and listed with its evidence.
    assert "| 76.33 ± 3.21 ⚠1 |" in text
    assert "1 of the 18 runs were flagged (`proxyanchor`: 1)" in text
    assert f"| mr | 16 | 1 | `proxyanchor` | {collapsed}; embeddings have no variance |" in text
    assert "degenerate run mr-16-proxyanchor/1: predictions collapsed" in caplog.text


def test_a_report_without_degenerate_runs_says_so(grid) -> None:
    params, root = grid
    run_aggregate(params, root / "runs", root / "infer", root / "reports")
    text = (root / "reports" / "results.md").read_text(encoding="utf-8")
    assert "None of the 18 runs was flagged." in text


def test_two_sizes_give_a_blocked_gain_per_dataset_and_every_figure(tmp_path: Path) -> None:
    params = make_params(sizes=(8, 16))
    write_grid(tmp_path, params)
    metrics = run_aggregate(params, tmp_path / "runs", tmp_path / "infer", tmp_path / "reports")
    assert metrics["mr"]["n"] == 6 and metrics["overall"]["cells"] == 4  # per dataset: blocked over both sizes
    assert metrics["mr"]["gain_pp"] == 4.33  # the same runs at both sizes: the mean of the two cell means
    with (tmp_path / "reports" / "plots" / "accuracy_vs_size.csv").open(newline="") as fh:
        assert [row[0] for row in csv.reader(fh)] == ["size", "8", "8", "8", "16", "16", "16"]
    text = (tmp_path / "reports" / "results.md").read_text(encoding="utf-8")
    assert "| few-shot sizes | 8, 16 |" in text and "over 4 dataset × size cells" in text
    for fig in ("forest", "accuracy_vs_size", "proxy_weight", "loss_curves", "confusion"):
        assert (tmp_path / "reports" / "figures" / f"{fig}.png").stat().st_size > 10_000


def test_the_confusion_figure_gets_each_dataset_s_class_names_from_run_json(grid, monkeypatch) -> None:
    from fewshot_dml.report import figures

    params, root = grid
    tables = summarise(collect_runs(params, root / "runs", root / "infer"), params.aggregate)
    assert tables.label_names == {"mr": ("negative", "positive"), "trec": ("negative", "positive")}
    from matplotlib.axes import Axes

    seen, set_xticks = [], Axes.set_xticks
    monkeypatch.setattr(
        Axes, "set_xticks", lambda ax, ticks, labels=None, **kw: (seen.append(list(labels or [])), set_xticks(ax, ticks, labels, **kw))[1]
    )
    figures._confusion(tables, root / "confusion.png")
    assert seen and all(labels == ["negative", "positive"] for labels in seen)  # whole names, never cut


def test_forest_panels_share_one_gain_scale_and_a_loss_without_proxies_gets_no_placeholder(tmp_path: Path, monkeypatch) -> None:
    from fewshot_dml.report import figures

    params = make_params(seeds=[0, 1, 2], loss="supcon")  # supcon: no proxies
    write_grid(tmp_path, params)
    tables = summarise(collect_runs(params, tmp_path / "runs", tmp_path / "infer"), params.aggregate)
    drawn = []
    monkeypatch.setattr(figures, "save_png", lambda fig, path: drawn.append(fig))
    figures._forest(tables, tmp_path / "forest.png")
    axes = drawn[0].axes
    assert len(axes) == 3 and len({ax.get_xlim() for ax in axes}) == 1
    monkeypatch.undo()
    (tmp_path / "figures").mkdir()
    names = figures.write_figures(tables, tmp_path / "figures")
    assert "proxy_weight.png" not in names and "forest.png" in names
    text = (
        run_aggregate(params, tmp_path / "runs", tmp_path / "infer", tmp_path / "reports"),
        (tmp_path / "reports/results.md").read_text(),
    )[1]
    assert "proxy_weight" not in text and not (tmp_path / "reports/figures/proxy_weight.png").exists()


@pytest.mark.parametrize(
    ("point", "where"), [("input", "at the input"), ("feature", "after encoder layer 1"), ("embedding", "at the embedding")]
)
def test_the_report_names_a_metrix_variant_its_base_and_its_mixing_point(point: str, where: str) -> None:
    raw = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text(encoding="utf-8"))
    raw["loss"] = "proxyanchor-metrix"
    raw["losses"]["proxyanchor-metrix"]["metrix"].update(point=point, layer=1, alpha=2.0, weight=0.4)
    text = what_was_run(parse_params(raw), "proxyanchor-metrix")
    assert "a variant of `proxyanchor`" in text
    assert f"Metrix: mixing {where}, λ ~ Beta(2, 2), mixed loss weight 0.4" in text


def test_the_report_says_when_the_dml_loss_sees_every_token() -> None:
    raw = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text(encoding="utf-8"))
    raw["loss"] = "softtriple"
    raw["losses"]["softtriple"]["dml_on"] = "tokens"
    assert "DML on every token's hidden state" in what_was_run(parse_params(raw), "softtriple")
    raw["losses"]["softtriple"]["dml_on"] = "pooled"
    assert "DML on every token" not in what_was_run(parse_params(raw), "softtriple")


def test_the_log_says_why_a_one_seed_run_has_no_interval_instead_of_nan(tmp_path: Path, caplog) -> None:
    params = make_params(seeds=[0])
    write_grid(tmp_path, params)
    with caplog.at_level("INFO"):
        run_aggregate(params, tmp_path / "runs", tmp_path / "infer", tmp_path / "reports")
    line = next(r.getMessage() for r in caplog.records if " over cce: " in r.getMessage())
    assert "nan" not in line.lower() and "no interval: 2 seed pair(s) give no variance estimate" in line, line


@pytest.mark.parametrize(("collapsed", "called"), [(0, "gain"), (1, "gain"), (2, "not called")])
def test_a_comparison_resting_on_degenerate_runs_is_not_called_and_its_sentence_counts_them(
    tmp_path: Path, collapsed: int, called: str
) -> None:
    """More than 10% of an arm's runs degenerate: the overall comparison is
    "not called" whatever its p; below it, the verdict stands and the sentence still counts them."""
    seeds = tuple(range(6))
    params = make_params(seeds=seeds)
    acc = {}
    for d in params.datasets:
        acc[(d, "cce")] = [0.60 + 0.010 * i for i in seeds]
        acc[(d, "setfit")] = [0.50 + 0.012 * i for i in seeds]
        acc[(d, "proxyanchor")] = [0.66 + 0.013 * i for i in seeds]
    write_grid(tmp_path, params, acc)
    for seed in range(collapsed):
        write_run(tmp_path, "mr", 16, seed, "setfit", acc[("mr", "setfit")][seed], proxies=False, degenerate=("predictions collapsed",))
    run_aggregate(params, tmp_path / "runs", tmp_path / "infer", tmp_path / "reports")
    head = json.loads((tmp_path / "reports" / "headline.json").read_text())
    assert head["loss_vs_setfit_verdict"] == called and head["loss_vs_setfit_pp"] > 10
    assert head["loss_vs_cce_verdict"] == "gain"  # neither of its arms collapsed
    text = (tmp_path / "reports" / "results.md").read_text(encoding="utf-8")
    if collapsed == 2:
        assert (
            "we do not call `proxyanchor` against `setfit` (0 of 12 `proxyanchor` runs and 2 of 12 `setfit` runs are "
            "degenerate, 17% in one arm: the difference would measure the collapse, not the method)"
        ) in text
        assert "| not called |" in text
    elif collapsed == 1:
        assert "`proxyanchor` beats `setfit` (degenerate: 1 of 12 `setfit` runs, kept in the means)" in text
    else:
        assert "`proxyanchor` beats `setfit`:" in text


def test_tuning_md_shows_equal_development_budgets_and_the_held_out_numbers_of_results_md(grid) -> None:
    params, root = grid
    run_aggregate(params, root / "runs", root / "infer", root / "reports")
    tuning = (root / "reports" / "tuning.md").read_text(encoding="utf-8")
    results = (root / "reports" / "results.md").read_text(encoding="utf-8")
    # Every arm: 3 checkpoints per run at steps 1, 2, 3; 6 runs, 18 development evaluations.
    for arm in ("cce", "setfit", "proxyanchor"):
        assert f"| `{arm}` | 3 | 1, 2, 3 | 6 | 18 |" in tuning
    # write_run: odd seeds keep step 2, even seeds step 3 (of seeds 0, 1, 2: 2 of 3 per dataset).
    assert "| `cce` | 2 of 3 | 2 |" in tuning and "| 2 (33%) |" in tuning and "| 4 (67%) |" in tuning
    # The held-out gains are those of results.md (the same tables).
    metrics = json.loads((root / "reports" / "metrics.json").read_text())["overall"]
    gain = f"{metrics['gain_pp']:+.2f} [{metrics['gain_low_pp']:+.2f}, {metrics['gain_high_pp']:+.2f}]"
    assert f"| `proxyanchor` − `cce` | 6 | {gain} |" in tuning
    assert (
        f"{metrics['gain_pp']:+.2f} pp on average" in results
        and f"[{metrics['gain_low_pp']:+.2f}, {metrics['gain_high_pp']:+.2f}]" in results
    )
    assert f"{100 * metrics['cce']:.2f} |" in tuning


@pytest.mark.parametrize("dev_ratio", [1.0, 0.0])
def test_without_development_checkpoints_tuning_md_says_nothing_was_chosen_and_names_the_precision(
    tmp_path: Path, dev_ratio: float
) -> None:
    """The studies' preset keeps every run's final model and may train in bf16: the reports say so, not the default's story."""
    params = make_params(dev_checkpoints=1, precision="bf16", sample={"dev_ratio": dev_ratio})
    write_grid(tmp_path, params)
    run_aggregate(params, tmp_path / "runs", tmp_path / "infer", tmp_path / "reports")
    tuning = (tmp_path / "reports" / "tuning.md").read_text(encoding="utf-8")
    results = (tmp_path / "reports" / "results.md").read_text(encoding="utf-8")
    assert "**Nothing chosen on the development set:** every run keeps its final model" in tuning
    assert "What the development set chose" not in tuning and "the development set chose" not in results
    dev = "that of the final models (not used for any choice)" if dev_ratio else "not measured (`sample.dev_ratio: 0`: no development set)"
    assert f"the development accuracy is {dev}." in tuning
    assert "the fine-tuned arms train at `train.precision: bf16`" in tuning and "SetFit's trainer runs in fp32" in tuning
    assert "training runs in fp32" not in tuning
    assert "max grad norm 1, `bf16` precision (SetFit trains in fp32)" in results
    assert "nothing was chosen on the development set" in results


def test_a_gain_not_shown_is_bounded_in_plain_words_by_its_interval(grid) -> None:
    params, root = grid
    metrics = run_aggregate(params, root / "runs", root / "infer", root / "reports")["overall"]
    text = (root / "reports" / "results.md").read_text(encoding="utf-8")
    assert metrics["gain_high_pp"] > 0 and "we cannot tell `proxyanchor` from `cce`" in text
    assert (
        f"`proxyanchor` does not measurably help here: the 95% interval bounds its average gain over `cce` at "
        f"{metrics['gain_high_pp']:+.2f} pp."
    ) in text
