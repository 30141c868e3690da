"""dvc.yaml's plots: every chart has its template, titled axes, a colour per arm and data in the committed reports."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BUILT_IN = {"confusion_normalized"}  # DVC's own template (titled axes from x_label / y_label)
SPECS = [next(iter(p.items())) for p in yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"] if isinstance(p, dict)]


@pytest.mark.parametrize("name, spec", SPECS, ids=[n for n, _ in SPECS])
def test_each_chart_has_a_template_titled_axes_and_data(name: str, spec: dict) -> None:
    own = ROOT / ".dvc" / "plots" / f"{spec['template']}.json"
    assert own.is_file() or spec["template"] in BUILT_IN, spec["template"]
    text = json.dumps(json.loads(own.read_text())) if own.is_file() else ""
    assert not own.is_file() or ("<DVC_METRIC_DATA>" in text and "<DVC_METRIC_X_LABEL>" in text and "<DVC_METRIC_Y_LABEL>" in text)
    assert spec["title"] and spec["x_label"] and spec["y_label"], name
    ((path, y),) = spec["y"].items()
    with (ROOT / path).open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows, f"{path}: no rows, an empty chart"  # the committed reports of the default
    assert {spec["x"], y} <= set(rows[0]), (path, list(rows[0]))
    if spec["template"].startswith("arms_"):  # one colour per arm: the long CSV's arm column
        assert '"field": "arm"' in text and {"cce", "dml"} <= {r["arm"].split(":")[0] for r in rows}
    if spec["template"] == "confusion_normalized":  # classes named by dataset, so datasets do not mix
        assert all(": " in r["actual"] and r["actual"].split(": ")[0] == r["predicted"].split(": ")[0] for r in rows)
    if spec["template"] == "gains_ci":  # the interval the CSV holds is drawn
        assert "ci_low_pp" in text and "ci_high_pp" in text and {"ci_low_pp", "ci_high_pp"} <= set(rows[0])


def test_figures_are_one_directory_entry() -> None:
    # A file entry for a figure a run has no data for (proxy_weight.png of a loss without proxies) made
    # `dvc plots show` report "failed to load some plots"; the directory lists only what exists.
    plain = [p for p in yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"] if isinstance(p, str)]
    assert plain == ["reports/figures"]
