"""Cross-loss study: selection and rendering of `dvc.api.exp_show` rows, and the real dvc format."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from fewshot_dml.studies.experiments import Experiment, select_experiments
from fewshot_dml.studies.study import main, read_accuracies, study

CCE = {"mr": 0.70, "trec": 0.50}
SETFIT = {"mr": 0.72, "trec": 0.52}


def record(name, loss, *, typ="branch_commit", state=None, dml=None, dev=None, prefix="", cce=CCE, params=None) -> dict:
    """One row as dvc.api.exp_show returns it (flattened metrics, params, dvc's own columns)."""
    row = {
        "Experiment": name,
        "rev": name[:7] if name else "main",
        "typ": typ,
        "Created": "06:35 PM",
        "parent": None,
        "State": state,
        "Executor": None,
        "loss": loss,
        "seeds": "[0, 1, 2]",
        "datasets": "['mr', 'trec']",
        "sample_sizes": "[16]",
        "fetch.local_dir": name or "x",
        "src/fewshot_dml/report/aggregate.py": "79388819cc4a45dd9c27b756f185ab41",
        **(params or {}),
    }
    if dml is None:
        return row
    dev = dev or {d: a - 0.05 for d, a in dml.items()}
    gains = []
    for dataset, acc in dml.items():
        gain = round((acc - cce[dataset]) * 100, 2)
        gains.append(gain)
        row.update(
            {
                f"{prefix}{dataset}.cce": cce[dataset],
                f"{prefix}{dataset}.dml": acc,
                f"{prefix}{dataset}.setfit": SETFIT[dataset],
                f"{prefix}{dataset}.gain_pp": gain,
                f"{prefix}{dataset}.gain_low_pp": gain - 1,
                f"{prefix}{dataset}.gain_high_pp": gain + 1,
                f"{prefix}{dataset}.dev_dml": dev[dataset],
                f"{prefix}{dataset}.dev_cce": cce[dataset] - 0.06,
                f"{prefix}{dataset}.dev_setfit": SETFIT[dataset] - 0.06,
            }
        )
    row.update(
        {
            f"{prefix}overall.cce": sum(cce.values()) / 2,
            f"{prefix}overall.dml": sum(dml.values()) / 2,
            f"{prefix}overall.setfit": sum(SETFIT.values()) / 2,
            f"{prefix}overall.gain_pp": sum(gains) / 2,
            f"{prefix}overall.dev_dml": sum(dev.values()) / 2,
            f"{prefix}overall.dev_cce": 0.54,
            f"{prefix}overall.dev_setfit": 0.56,
            f"{prefix}overall.won": 0.0,
            f"{prefix}overall.cells": 2.0,
        }
    )
    return row


def _lines(text: str) -> dict[str, str]:
    return {
        line.split(" | ")[1].strip("` ") if line.split(" | ")[1] != "–" else line.split(" | ")[0].strip("|` "): line
        for line in text.splitlines()
        if line.startswith("| `")
    }


def test_every_experiment_is_a_row_a_sweep_does_not_collapse_and_dev_selects() -> None:
    records = [
        record(None, "triplet", typ="baseline", dml={"mr": 0.60, "trec": 0.40}) | {"rev": "workspace"},
        record(None, "proxyanchor", typ="baseline", dml={"mr": 0.74, "trec": 0.49}, params={"losses.proxyanchor.alpha": 32.0}),
        # alpha 16 is better on the evaluation set but worse on dev: dev decides.
        record(
            "pa-16",
            "proxyanchor",
            dml={"mr": 0.80, "trec": 0.55},
            dev={"mr": 0.60, "trec": 0.40},
            params={"losses.proxyanchor.alpha": 16.0},
        ),
        record("bold-dogs", "supcon", dml={"mr": 0.76, "trec": 0.45}, params={"losses.proxyanchor.alpha": 32.0}),
    ]
    text = study(records, {}, 0.95)
    rows = _lines(text)
    assert set(rows) == {"cce", "setfit", "main", "pa-16", "bold-dogs"}  # workspace skipped
    assert rows["cce"].startswith("| `cce` | – | – | 54.00 | 70.00 | 50.00 | 60.00 |")
    assert rows["setfit"].startswith("| `setfit` | – | – | 56.00 | 72.00 | 52.00 | 62.00 |")
    assert rows["main"].startswith("| `proxyanchor` ✓ | `main` | `losses.proxyanchor.alpha=32` |")
    assert rows["pa-16"].startswith("| `proxyanchor` | `pa-16` | `losses.proxyanchor.alpha=16` | 50.00 | 80.00 (+10.00 [+9.00, +11.00])")
    assert rows["bold-dogs"].startswith("| `supcon` ✓ | `bold-dogs` | defaults |")  # another loss's alpha is not its param
    assert "fetch.local_dir" not in text
    assert "## Grid: 2 datasets, sizes [16], seeds [0, 1, 2]" in text


def test_another_metrics_files_columns_are_not_params() -> None:
    # The analysis stage's reports/analysis/metrics.json comes through exp_show as bare columns
    # (geometry.cce.inter, dml_minus_cce.silhouette.diff): they differ per run but are no setting.
    extra = {"geometry.cce.inter": 0.027, "dml_minus_cce.silhouette.diff": 0.0001, "reports/analysis/metrics.json:geometry.dml.ratio": 0.9}
    records = [
        record("a", "proxyanchor", dml={"mr": 0.74, "trec": 0.49}, params={"losses.proxyanchor.alpha": 32.0}),
        record(
            "b",
            "proxyanchor",
            dml={"mr": 0.70, "trec": 0.45},
            params={"losses.proxyanchor.alpha": 16.0, **{k: v * 2 for k, v in extra.items()}},
        )
        | extra,
    ]
    rows = _lines(study(records, {}, 0.95))
    assert rows["a"].startswith("| `proxyanchor` ✓ | `a` | `losses.proxyanchor.alpha=32` |"), rows["a"]
    assert "geometry" not in rows["b"] and "dml_minus_cce" not in rows["b"]


def test_a_sweep_point_equal_to_the_default_is_listed_once() -> None:
    same = {"losses.proxyanchor.alpha": 32.0}
    records = [
        record("pa-32", "proxyanchor", dml={"mr": 0.74, "trec": 0.49}, params=same),
        # a dep's hash differs (exp_show lists deps beside params): a dep is not a param
        record(
            None,
            "proxyanchor",
            typ="baseline",
            dml={"mr": 0.74, "trec": 0.49},
            params=same | {"src/fewshot_dml/report/figures.py": "3c138abf1792766d75bf72950b83fb68"},
        ),
    ]
    chosen, notes = select_experiments(records)
    assert [e.name for e in chosen] == ["pa-32"]
    tie = record(
        "pa-16", "proxyanchor", dml={"mr": 0.70, "trec": 0.45}, dev={"mr": 0.69, "trec": 0.44}, params={"losses.proxyanchor.alpha": 16.0}
    )
    assert "proxyanchor: development accuracy ties (56.50) between `pa-16` and `pa-32`" in study([tie, *records], {}, 0.95)
    assert notes == ["`main` (proxyanchor): the same params and metrics as `pa-32`, listed once"]


def test_dev_selection_picks_the_highest_mean_dev_accuracy_per_loss() -> None:
    from fewshot_dml.studies.experiments import dev_selected

    exps, _ = select_experiments(
        [
            record("a", "supcon", dml={"mr": 0.9, "trec": 0.9}, dev={"mr": 0.5, "trec": 0.5}),
            record("b", "supcon", dml={"mr": 0.6, "trec": 0.6}, dev={"mr": 0.7, "trec": 0.6}),
            record("c", "circle", dml={"mr": 0.6, "trec": 0.6}),
        ]
    )
    assert {loss: e.name for loss, e in dev_selected(exps).items()} == {"supcon": "b", "circle": "c"}


def test_failed_queued_and_metricless_experiments_are_skipped_with_a_note() -> None:
    records = [
        record("ok", "circle", state="Success", dml={"mr": 0.75, "trec": 0.55}),
        # dvc shows the base commit's metrics for failed/running experiments: they must not count
        record("broken", "npairs", state="Failed", dml={"mr": 0.75, "trec": 0.55}),
        record("waiting", "triplet", state="Queued"),
        record("empty", "arcface"),
    ]
    text = study(records, {}, 0.95)
    assert set(_lines(text)) == {"cce", "setfit", "ok"}
    for note in (
        "`broken` (npairs): state Failed, skipped",
        "`waiting` (triplet): state Queued, skipped",
        "`empty` (arcface): no metrics (with development accuracy) in reports/metrics.json, skipped",
    ):
        assert f"- {note}" in text


def test_prefixed_columns_are_read_and_other_files_ignored() -> None:
    row = record("x", "supcon", dml={"mr": 0.75, "trec": 0.55}, prefix="reports/metrics.json:")
    row = {("params.yaml:loss" if k == "loss" else k): v for k, v in row.items()}
    row["other/metrics.json:mr.dml"] = 0.99
    row["reports/metrics.json:mr.gain_low_pp"] = "!"  # dvc's marker for an unreadable value
    (exp,), _ = select_experiments([row])
    assert exp.loss == "supcon" and exp.metrics["mr"]["dml"] == 0.75 and "gain_low_pp" not in exp.metrics["mr"]


def test_disagreeing_baselines_are_flagged() -> None:
    records = [
        record("a", "supcon", dml={"mr": 0.75, "trec": 0.55}),
        record("b", "circle", dml={"mr": 0.75, "trec": 0.55}, cce={"mr": 0.65, "trec": 0.50}),
    ]
    assert "`cce` differs across these experiments (`a` 60.00, `b` 57.50)" in study(records, {}, 0.95)


def test_no_usable_experiment_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"no completed experiment.*\n  `w` \(npairs\): state Running"):
        study([record("w", "npairs", state="Running", dml={"mr": 0.7, "trec": 0.5})], {}, 0.95)


def _accuracy(exps, values) -> dict:
    """Per-run accuracies: values[(arm, dataset)] is a list over seeds; the DML arm's key is its loss."""
    out = {}
    for e in exps:
        for d, size, seed in e.grid:
            for arm in ("cce", "setfit", e.loss):
                out[(e.name, arm, d, size, seed)] = values.get((e.name, arm, d), values.get((arm, d)))[seed]
    return out


def test_best_arm_per_dataset_is_chosen_on_dev_and_reported_with_its_eval_interval() -> None:
    from scipy import stats as st

    records = [record("sc", "supcon", dml={"mr": 0.75, "trec": 0.40}, dev={"mr": 0.80, "trec": 0.30})]
    exps, _ = select_experiments(records)
    acc = _accuracy(
        exps,
        {
            ("cce", "mr"): [0.70, 0.70, 0.70],
            ("setfit", "mr"): [0.9, 0.9, 0.9],
            ("supcon", "mr"): [0.74, 0.75, 0.77],
            ("cce", "trec"): [0.5, 0.5, 0.5],
            ("setfit", "trec"): [0.52, 0.52, 0.52],
            ("supcon", "trec"): [0.4, 0.4, 0.4],
        },
    )
    text = study(records, acc, 0.95)
    ci = st.ttest_1samp([4, 5, 7], 0).confidence_interval(0.95)
    # mr: supcon's dev 80.00 beats cce 64 and setfit 66, although setfit's evaluation accuracy is higher.
    assert f"| mr | `supcon` (`sc`) | 80.00 | 75.33 | +5.33 | [{ci.low:+.2f}, {ci.high:+.2f}] (n=3) |" in text
    assert "| trec | `setfit` | 46.00 | 52.00 | +2.00 | [+2.00, +2.00] (n=3) |" in text


GO = """import json, os, yaml
p = yaml.safe_load(open("params.yaml"))
loss = p["loss"]
alpha = p["losses"]["proxyanchor"]["alpha"] if loss == "proxyanchor" else 32
dml = {("softtriple", 32): 0.75, ("proxyanchor", 32): 0.72, ("proxyanchor", 16): 0.74}[(loss, alpha)]
dev = {("softtriple", 32): 0.6, ("proxyanchor", 32): 0.7, ("proxyanchor", 16): 0.65}[(loss, alpha)]
m = {"mr": {"cce": 0.7, "setfit": 0.71, "dml": dml, "gain_pp": round((dml - 0.7) * 100, 2), "dev_dml": dev,
            "dev_cce": 0.6, "dev_setfit": 0.62}}
m["overall"] = dict(m["mr"], won=0, cells=1)
json.dump(m, open("reports/metrics.json", "w"))
for seed in (0, 1):
    for arm, a in (("cce", 0.7), ("setfit", 0.71), (loss, dml)):
        os.makedirs(f"data/runs/mr-16-{arm}/{seed}", exist_ok=True)
        json.dump({"accuracy": a + 0.01 * seed}, open(f"data/runs/mr-16-{arm}/{seed}/metrics.json", "w"))
"""


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_main_reads_a_real_two_point_sweep_and_marks_the_dev_selected_point(tmp_path: Path) -> None:
    """The exp_show format the study relies on, from real `dvc exp run` experiments (dvc 3.x)."""

    def sh(*cmd: str) -> None:
        subprocess.run(cmd, cwd=tmp_path, check=True, capture_output=True)

    (tmp_path / "reports").mkdir()
    (tmp_path / "params.yaml").write_text(
        "loss: proxyanchor\ndatasets: [mr]\nsample_sizes: [16]\nseeds: [0, 1]\n"
        "losses:\n  proxyanchor:\n    alpha: 32\n"
        "aggregate: {confidence: 0.95, alpha: 0.05, seed: 0}\n"
    )
    (tmp_path / "go.py").write_text(GO)
    (tmp_path / "dvc.yaml").write_text(
        f"stages:\n  agg:\n    cmd: {sys.executable} go.py\n    deps: [go.py]\n    params: [loss, losses]\n"
        "    outs: [data/runs]\n    metrics:\n      - reports/metrics.json:\n          cache: false\n"
    )
    sh("git", "init", "-q", "-b", "main")
    sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "root")
    sh(sys.executable, "-m", "dvc", "init", "-q")
    sh(sys.executable, "-m", "dvc", "repro", "-q")
    sh("git", "add", "-A")
    sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "base")
    sh(sys.executable, "-m", "dvc", "exp", "run", "-q", "-S", "losses.proxyanchor.alpha=16", "--name", "alpha16")
    sh(sys.executable, "-m", "dvc", "exp", "run", "-q", "-S", "loss=softtriple", "--name", "st")
    main(["--repo", str(tmp_path), "--out", str(tmp_path / "study.md")])
    text = (tmp_path / "study.md").read_text(encoding="utf-8")
    rows = _lines(text)
    assert set(rows) == {"cce", "setfit", "alpha16", "st", "main"}
    # Both sweep points are rows; alpha 32 is selected on dev (70 > 65) although 16 is better on eval.
    assert rows["main"].startswith("| `proxyanchor` ✓ | `main` | `losses.proxyanchor.alpha=32` | 70.00 | 72.00")
    assert rows["alpha16"].startswith("| `proxyanchor` | `alpha16` | `losses.proxyanchor.alpha=16` | 65.00 | 74.00")
    assert rows["st"].startswith("| `softtriple` ✓ | `st` |")
    assert "| mr | `proxyanchor` (`main`) | 70.00 | 72.50 | +2.00 | [+2.00, +2.00] (n=2) |" in text


# ---- variants against their clean loss ----


def test_variant_section_pairs_runs_and_tests_them() -> None:
    from scipy import stats

    from fewshot_dml.studies.experiments import Experiment
    from fewshot_dml.studies.study import variant_section

    grid = tuple((d, 16, s) for d in ("mr", "trec") for s in (0, 1, 2))
    overall = {"overall": {"dev_dml": 0.5}}
    clean = Experiment("exp-clean", "supcon", overall, "r1", None, grid)
    variant = Experiment("exp-mix", "supcon-metrix", overall, "r2", "supcon", grid)
    other = Experiment("exp-pa", "proxyanchor", overall, "r3", None, grid)  # no variant: no row
    diffs = [0.02, 0.01, 0.03, -0.01, 0.04, 0.02]
    accuracy = {("exp-clean", "supcon", *c): 0.5 for c in grid} | {
        ("exp-mix", "supcon-metrix", *c): 0.5 + d for c, d in zip(grid, diffs, strict=True)
    }
    text = variant_section([variant, clean, other], accuracy, 0.95)
    ci = stats.ttest_1samp([100 * d for d in diffs], 0).confidence_interval(0.95)
    mean = 100 * sum(diffs) / 6
    # sign-flip over 64 patterns: |sum| >= 11 pp when the flipped set sums to <= 0 ({}, {-1}, {-1, +1}) or to 11
    # (their complements): 6 / 64 = 0.09375; one row, so Holm leaves it.
    assert f"| `supcon-metrix` | `supcon` | 6 | {mean:+.2f} | [{ci.low:+.2f}, {ci.high:+.2f}] | 0.0938 | 0.0938 |" in text
    assert "Holm across the rows" in text and "proxyanchor" not in text
    assert variant_section([clean, other], accuracy, 0.95) == ""
    assert variant_section([replace(variant, grid=()), clean], accuracy, 0.95) == ""  # no common run: no row


def test_the_grid_is_read_from_exp_show_text_or_lists() -> None:
    from fewshot_dml.studies.experiments import _grid

    as_text = {"datasets": "['mr', 'trec']", "sample_sizes": "[16]", "seeds": "[0, 1]"}  # as dvc.api.exp_show gives them
    assert _grid(as_text) == (("mr", 16, 0), ("mr", 16, 1), ("trec", 16, 0), ("trec", 16, 1))
    assert _grid({"datasets": ["mr"], "sample_sizes": [8], "seeds": [3]}) == (("mr", 8, 3),)
    assert _grid({"datasets": ["mr"]}) == ()


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_read_accuracies_reads_an_experiment_of_the_per_seed_layout(tmp_path: Path) -> None:
    """Experiments made before one train stage trained every seed keep runs at <d>-<size>-<seed>-<arm>/
    (the current layout is read by the e2e study test)."""
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=tmp_path, check=True)
    for arm in ("cce", "setfit", "proxyanchor"):
        for seed in (0, 1):
            run = tmp_path / "data/runs" / f"mr-16-{seed}-{arm}"
            run.mkdir(parents=True)
            (run / "metrics.json").write_text(json.dumps({"accuracy": 0.5 + seed / 10}))
    e = Experiment(name="e", loss="proxyanchor", metrics={}, grid=(("mr", 16, 0), ("mr", 16, 1)))
    got = read_accuracies([e], str(tmp_path), "data/runs")
    assert got[("e", "setfit", "mr", 16, 1)] == 0.6 and len(got) == 6


def test_the_study_states_the_interval_at_aggregate_confidence() -> None:
    records = [record("a", "supcon", dml={"mr": 0.7, "trec": 0.5})]
    assert "90% t-interval" in study(records, {}, 0.90) and "95%" not in study(records, {}, 0.90)


@pytest.mark.parametrize("tool", ["fewshot_dml.studies.study", "fewshot_dml.studies.tuning_report"])
def test_a_tool_on_a_folder_that_is_not_a_repository_says_so_in_one_line(tool: str, tmp_path: Path) -> None:
    args = ["--out", str(tmp_path / "x.md"), "--repo", str(tmp_path / "missing")]
    args += ["--figure", str(tmp_path / "x.png")] if tool.endswith("tuning_report") else []
    proc = subprocess.run([sys.executable, "-m", tool, *args], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("error: "), proc.stderr[-2000:]


# ---- the revision, the cache and the lock of an experiment: one error line naming it ----

LOCK = """schema: '2.0'
stages:
  aggregate:
    cmd: python go.py
    params:
      params.yaml:
        loss: proxyanchor
        losses:
          proxyanchor:
            alpha: 16
  analyze:
    cmd: python go.py
    params:
      params.yaml:
        seeds: [1]
"""


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True, capture_output=True)


@pytest.fixture(scope="module")
def stale_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A commit whose params.yaml says alpha 32 while its dvc.lock (and metrics) record a run with alpha 16."""
    repo = tmp_path_factory.mktemp("stale")
    (repo / "reports").mkdir()
    (repo / "params.yaml").write_text(
        "loss: proxyanchor\ndatasets: [mr]\nsample_sizes: [16]\nseeds: [0]\nlosses:\n  proxyanchor:\n    alpha: 32\n"
        "infer: {knn_k: 1, curve_points: 3}\naggregate: {confidence: 0.95, alpha: 0.05, seed: 0}\n"
    )
    (repo / "dvc.yaml").write_text(
        "stages:\n  aggregate:\n    cmd: python go.py\n    params: [loss, losses]\n"
        "    metrics:\n      - reports/metrics.json:\n          cache: false\n"
        # A stage downstream of aggregate with a stale entry too: the tools read nothing from it, so it is no reason to refuse.
        "  analyze:\n    cmd: python go.py\n    deps: [reports/metrics.json]\n    params: [seeds]\n"
    )
    (repo / "dvc.lock").write_text(LOCK)
    m = {"cce": 0.7, "setfit": 0.71, "dml": 0.72, "gain_pp": 2.0, "dev_dml": 0.7, "dev_cce": 0.6, "dev_setfit": 0.62}
    (repo / "reports/metrics.json").write_text(json.dumps({"mr": m, "overall": dict(m, won=0, cells=1)}))
    _git(repo, "init", "-q", "-b", "main")
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=repo, check=True)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "params edited without dvc repro")
    return repo


def _tool(tool: str, repo: Path, *flags: str) -> subprocess.CompletedProcess:
    args = ["--out", str(repo.parent / "x.md"), "--repo", str(repo), *flags]
    args += ["--figure", str(repo.parent / "x.png")] if tool.endswith("tuning_report") else []
    env = {k: v for k, v in os.environ.items() if k != "FEWSHOT_DML_TRACEBACK"}
    return subprocess.run([sys.executable, "-m", tool, *args], capture_output=True, text=True, cwd=repo, env=env)


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
@pytest.mark.parametrize("tool", ["fewshot_dml.studies.study", "fewshot_dml.studies.tuning_report"])
@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--rev", "nosuchrev"], r"--rev nosuchrev: cannot list the experiments \(unknown Git revision 'nosuchrev'\); expected .*a commit"),
        (
            [],
            r"experiment 'main' \(rev main\): params.yaml and dvc.lock disagree on losses \(modified since stage aggregate ran\), so.*dvc repro",
        ),
    ],
)
def test_a_bad_revision_or_a_stale_lock_is_one_line_naming_it(tool: str, stale_repo: Path, flags: list[str], message: str) -> None:
    proc = _tool(tool, stale_repo, *flags)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(proc.stderr.strip().splitlines()) == 1 and re.match(rf"error: .*{message}", proc.stderr), proc.stderr[-2000:]


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
@pytest.mark.parametrize(
    ("damage", "cause"),
    [("dir", "DataIndexDirError"), ("file", "FileNotFoundError"), ("truncated", "JSONDecodeError")],
)
def test_an_output_missing_from_the_cache_or_truncated_names_the_experiment(tmp_path: Path, capsys, damage: str, cause: str) -> None:
    from fewshot_dml.core.cli import run_tool
    from fewshot_dml.studies.experiments import ExperimentError

    _git(tmp_path, "init", "-q")
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=tmp_path, check=True)
    for arm in ("cce", "setfit", "proxyanchor"):
        run = tmp_path / "data/runs" / f"mr-16-{arm}/0"
        run.mkdir(parents=True)
        (run / "metrics.json").write_text(json.dumps({"accuracy": 0.5, "arm": arm}))
    subprocess.run([sys.executable, "-m", "dvc", "add", "-q", "data/runs"], cwd=tmp_path, check=True)
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-q", "-m", "runs")
    shutil.rmtree(tmp_path / "data/runs")
    files = tmp_path / ".dvc/cache/files/md5"
    listing = next(files.glob("*/*.dir"))
    target = next(f for f in files.glob("*/*") if f.suffix != ".dir" and '"proxyanchor"' in f.read_text())
    if damage == "dir":
        listing.unlink()
    elif damage == "file":
        target.unlink()
    else:
        target.chmod(0o644)
        target.write_text(target.read_text()[:5])
    e = Experiment(name="sweep-1", loss="proxyanchor", metrics={}, rev="HEAD", grid=(("mr", 16, 0),))
    path = "data/runs/mr-16-cce/0/metrics.json" if damage == "dir" else "data/runs/mr-16-proxyanchor/0/metrics.json"
    with pytest.raises(ExperimentError, match=rf"experiment 'sweep-1' \(rev HEAD\): cannot read {path} \({cause}: .*dvc exp pull"):
        read_accuracies([e], str(tmp_path), "data/runs")
    with pytest.raises(SystemExit):
        run_tool(lambda argv: read_accuracies([e], str(tmp_path), "data/runs"))
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: experiment 'sweep-1' (rev HEAD): cannot read"), err
