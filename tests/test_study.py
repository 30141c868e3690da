"""Cross-loss study: selection and rendering of `dvc.api.exp_show` rows, and the real dvc format."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from fewshot_dml.study import main, select_experiments, study_table

CCE = {"mr": 0.70, "trec": 0.50}


def record(name, loss, *, typ="branch_commit", state=None, dml=None, prefix="", cce=CCE) -> dict:
    """One row as dvc.api.exp_show returns it (flattened metrics, params, dvc's own columns)."""
    row = {"Experiment": name, "rev": name[:7] if name else "main", "typ": typ, "Created": "06:35 PM",
           "parent": None, "State": state, "Executor": None, "loss": loss, "seeds": "[0, 1, 2]",
           "src/fewshot_dml/aggregate.py": "79388819cc4a45dd9c27b756f185ab41"}
    if dml is None:
        return row
    gains = []
    for dataset, acc in dml.items():
        gain = round((acc - cce[dataset]) * 100, 2)
        gains.append(gain)
        row.update({f"{prefix}{dataset}.cce": cce[dataset], f"{prefix}{dataset}.dml": acc,
                    f"{prefix}{dataset}.gain_pp": gain, f"{prefix}{dataset}.cce_std": 0.01,
                    f"{prefix}{dataset}.dml_std": 0.02})
    row.update({f"{prefix}overall.cce": sum(cce.values()) / 2, f"{prefix}overall.dml": sum(dml.values()) / 2,
                f"{prefix}overall.gain_pp": sum(gains) / 2, f"{prefix}overall.wins": 1.0,
                f"{prefix}overall.cells": 2.0})
    return row


def _lines(text: str) -> dict[str, str]:
    return {line.split(" | ")[0].strip("| "): line for line in text.splitlines() if line.startswith("| `")}


def test_study_table_rows_best_loss_and_baseline() -> None:
    records = [
        record(None, "triplet", typ="baseline", dml={"mr": 0.60, "trec": 0.40}) | {"rev": "workspace"},
        record(None, "proxyanchor", typ="baseline", dml={"mr": 0.74, "trec": 0.49}),
        record("fuzzy-cats", "softtriple", dml={"mr": 0.73, "trec": 0.56}),
        record("bold-dogs", "supcon", dml={"mr": 0.76, "trec": 0.45}),
    ]
    text = study_table(records)
    rows = _lines(text)
    assert set(rows) == {"`cce` (baseline)", "`softtriple`", "`supcon`", "`proxyanchor`"}  # workspace skipped
    assert rows["`cce` (baseline)"] == "| `cce` (baseline) | – | 70.00 ± 1.00 | 50.00 ± 1.00 | 60.00 |"
    assert "| `softtriple` | `fuzzy-cats` | 73.00 ± 2.00 (+3.00 pp) | 56.00 ± 2.00 (+6.00 pp) | " in text
    assert "64.50 (+4.50 pp, 1/2 won) |" in rows["`softtriple`"]
    assert "| **best** |  | `supcon` (76.00) | `softtriple` (56.00) | `softtriple` (64.50) |" in text
    # rows ordered by overall gain: softtriple +4.5, proxyanchor +1.5, supcon +0.5
    order = [line.split(" | ")[0] for line in text.splitlines() if line.startswith("| `") and "baseline" not in line]
    assert order == ["| `softtriple`", "| `proxyanchor`", "| `supcon`"]
    assert "run-cache" in text


def test_newest_experiment_of_a_loss_wins_and_the_rest_are_noted() -> None:
    records = [
        record(None, "softtriple", typ="baseline", dml={"mr": 0.71, "trec": 0.51}),
        record("newer", "softtriple", dml={"mr": 0.80, "trec": 0.60}),
        record("older", "softtriple", typ="branch_base", dml={"mr": 0.72, "trec": 0.52}),
    ]
    chosen, notes = select_experiments(records)
    assert [e.name for e in chosen] == ["newer"]
    assert notes == ["`older` (softtriple): superseded by the newer `newer`",
                     "`main` (softtriple): superseded by the newer `newer`"]
    assert "`older` (softtriple): superseded" in study_table(records)


def test_failed_queued_and_metricless_experiments_are_skipped_with_a_note() -> None:
    records = [
        record("ok", "circle", state="Success", dml={"mr": 0.75, "trec": 0.55}),
        # dvc shows the base commit's metrics for failed/running experiments: they must not count
        record("broken", "npairs", state="Failed", dml={"mr": 0.75, "trec": 0.55}),
        record("waiting", "triplet", state="Queued"),
        record("empty", "arcface"),
    ]
    text = study_table(records)
    assert set(_lines(text)) == {"`cce` (baseline)", "`circle`"}
    for note in ("`broken` (npairs): state Failed, skipped", "`waiting` (triplet): state Queued, skipped",
                 "`empty` (arcface): no metrics in reports/metrics.json, skipped"):
        assert f"- {note}" in text


def test_prefixed_columns_are_read_and_other_files_ignored() -> None:
    row = record("x", "supcon", dml={"mr": 0.75, "trec": 0.55}, prefix="reports/metrics.json:")
    row = {("params.yaml:loss" if k == "loss" else k): v for k, v in row.items()}
    row["other/metrics.json:mr.dml"] = 0.99
    row["reports/metrics.json:mr.dml_std"] = "!"  # dvc's marker for an unreadable value
    (exp,), _ = select_experiments([row])
    assert exp.loss == "supcon" and exp.metrics["mr"]["dml"] == 0.75 and "dml_std" not in exp.metrics["mr"]


def test_disagreeing_baselines_are_flagged() -> None:
    records = [record("a", "supcon", dml={"mr": 0.75, "trec": 0.55}),
               record("b", "circle", dml={"mr": 0.75, "trec": 0.55}, cce={"mr": 0.65, "trec": 0.50})]
    assert "CCE differs across experiments on mr (`a` 70.00, `b` 65.00)" in study_table(records)


def test_no_usable_experiment_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"no completed experiment.*\n  `w` \(npairs\): state Running"):
        study_table([record("w", "npairs", state="Running", dml={"mr": 0.7, "trec": 0.5})])


GO = """import json, sys, yaml
loss = yaml.safe_load(open("params.yaml"))["loss"]
dml = {"softtriple": 0.75, "supcon": 0.72}[loss]
m = {"mr": {"cce": 0.7, "dml": dml, "gain_pp": round((dml - 0.7) * 100, 2), "cce_std": 0.01, "dml_std": 0.02}}
m["overall"] = {"cce": 0.7, "dml": dml, "gain_pp": m["mr"]["gain_pp"], "wins": 1, "cells": 1}
json.dump(m, open("reports/metrics.json", "w"))
"""


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_main_reads_real_dvc_experiments(tmp_path: Path) -> None:
    """The exp_show format the study relies on, from real `dvc exp run` experiments (dvc 3.x)."""

    def sh(*cmd: str) -> None:
        subprocess.run(cmd, cwd=tmp_path, check=True, capture_output=True)

    (tmp_path / "reports").mkdir()
    (tmp_path / "params.yaml").write_text("loss: supcon\n")
    (tmp_path / "go.py").write_text(GO)
    (tmp_path / "dvc.yaml").write_text(
        f"stages:\n  agg:\n    cmd: {sys.executable} go.py\n    deps: [go.py]\n    params: [loss]\n"
        "    metrics:\n      - reports/metrics.json:\n          cache: false\n")
    sh("git", "init", "-q")
    sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "root")
    sh(sys.executable, "-m", "dvc", "init", "-q")
    sh(sys.executable, "-m", "dvc", "repro", "-q")
    sh("git", "add", "-A")
    sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "base")
    sh(sys.executable, "-m", "dvc", "exp", "run", "-q", "-S", "loss=softtriple")
    main(["--repo", str(tmp_path), "--out", str(tmp_path / "study.md")])
    rows = _lines((tmp_path / "study.md").read_text(encoding="utf-8"))
    assert json.loads((tmp_path / "reports" / "metrics.json").read_text())["mr"]["dml"] == 0.75
    assert rows["`softtriple`"].startswith("| `softtriple` | `") and "75.00 ± 2.00 (+5.00 pp)" in rows["`softtriple`"]
    assert "72.00 ± 2.00 (+2.00 pp)" in rows["`supcon`"]  # the committed baseline row
    assert rows["`cce` (baseline)"].startswith("| `cce` (baseline) | – | 70.00 ± 1.00 |")


# ---- variants against their clean loss ----

def test_holm_adjusts_as_the_textbook_example() -> None:
    from fewshot_dml.study import holm

    # Holm (1979): sorted p * (m - rank), made monotone, capped at 1.
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_variant_section_pairs_runs_and_tests_them() -> None:
    from scipy import stats

    from fewshot_dml.study import Experiment, variant_section

    grid = tuple((d, 16, s) for d in ("mr", "trec") for s in (0, 1, 2))
    clean = Experiment("exp-clean", "supcon", {}, "r1", None, grid)
    variant = Experiment("exp-mix", "supcon-metrix", {}, "r2", "supcon", grid)
    other = Experiment("exp-pa", "proxyanchor", {}, "r3", None, grid)  # no variant: no row
    diffs = [0.02, 0.01, 0.03, -0.01, 0.04, 0.02]
    accuracy = {("exp-clean", *c): 0.5 for c in grid} | {("exp-mix", *c): 0.5 + d for c, d in zip(grid, diffs)}
    text = variant_section([variant, clean, other], accuracy)
    mean = 100 * sum(diffs) / 6
    low, high = stats.t.interval(0.95, 5, loc=mean, scale=stats.sem([100 * d for d in diffs]))
    p = stats.wilcoxon([100 * d for d in diffs]).pvalue
    assert f"| `supcon-metrix` | `supcon` | 6 | {mean:+.2f} | [{low:+.2f}, {high:+.2f}] | 5/6 | {p:.3g} | {p:.3g} |" in text
    assert "Holm-corrected" in text and "proxyanchor" not in text
    assert variant_section([clean, other], accuracy) == ""
    assert variant_section([replace(variant, grid=()), clean], accuracy) == ""  # no common run: no row


def test_the_grid_is_read_from_exp_show_text_or_lists() -> None:
    from fewshot_dml.study import _grid

    as_text = {"datasets": "['mr', 'trec']", "sample_sizes": "[16]", "seeds": "[0, 1]"}  # as dvc.api.exp_show gives them
    assert _grid(as_text) == (("mr", 16, 0), ("mr", 16, 1), ("trec", 16, 0), ("trec", 16, 1))
    assert _grid({"datasets": ["mr"], "sample_sizes": [8], "seeds": [3]}) == (("mr", 8, 3),)
    assert _grid({"datasets": ["mr"]}) == ()
