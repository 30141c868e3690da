"""The README quotes the default's answer from reports/metrics.json, and every number it quotes matches."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- numbers: reports/metrics.json -->", "<!-- /numbers -->"


def _block() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme.count(START) == 1 and readme.count(END) == 1, f"README needs one {START} ... {END} block"
    return readme[readme.index(START) + len(START) : readme.index(END)]


def _quotable(overall: dict) -> set[str]:
    """Every spelling the README may use for a number of metrics.json's overall entry."""
    out: set[str] = set()
    for key, value in overall.items():
        if key.endswith(("_p", "_p_holm")):
            out |= {f"{value:.3g}", f"{value:.2g}"}
        elif key.endswith("_pp"):
            out |= {f"{value:+.2f}", f"{abs(value):.2f}"}
        elif isinstance(value, float):
            out |= {f"{100 * value:.2f}", f"{100 * value:.1f}"}
        else:
            out.add(str(value))
    return out


def test_every_number_the_readme_quotes_is_in_reports_metrics_json() -> None:
    overall = json.loads((ROOT / "reports" / "metrics.json").read_text())["overall"]
    confidence = yaml.safe_load((ROOT / "params.yaml").read_text())["aggregate"]["confidence"]
    allowed = _quotable(overall) | {f"{100 * confidence:g}"}  # "95% interval"
    numbers = re.findall(r"(?<![\w.])[+−-]?\d+(?:\.\d+)?", _block())
    quoted = [n.replace("−", "-") for n in numbers]
    assert len(quoted) >= 8, "the README's answer quotes the accuracies and both gains with their intervals"
    wrong = [n for n in quoted if n not in allowed and n.lstrip("+-") not in allowed]
    assert not wrong, f"README quotes numbers that reports/metrics.json does not hold: {wrong}"


def test_the_readme_states_the_headline_verdicts() -> None:
    head = json.loads((ROOT / "reports" / "headline.json").read_text())
    block = _block()
    for key in ("loss_vs_cce_verdict", "loss_vs_setfit_verdict"):
        assert f"verdict: {head[key]}" in block, key
