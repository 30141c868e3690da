"""The README quotes the default's answer from reports/metrics.json, and every number it quotes matches; so does every
other marked block of numbers (`<!-- numbers: <metrics.json> -->` ... `<!-- /numbers -->`) in the README, docs and reports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- numbers: reports/metrics.json -->", "<!-- /numbers -->"
BLOCK = re.compile(r"<!-- numbers: (\S+) -->(.*?)<!-- /numbers -->", re.S)
NUMBER = re.compile(r"(?<![\w.])[+−-]?\d+(?:\.\d+)?")  # a quoted number, its sign included


def _block() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme.count(START) == 1, f"README needs one {START} ... {END} block"
    return BLOCK.search(readme, readme.index(START)).group(2)


def _blocks() -> list[tuple[str, str, str]]:
    """(file, metrics.json path, text) of every marked block in the README, docs/ and reports/."""
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "reports").rglob("*.md"))]
    out = []
    for path in files:
        text = path.read_text(encoding="utf-8")
        blocks = list(BLOCK.finditer(text))
        assert len(blocks) == text.count("<!-- numbers: ") == text.count(END), f"{path}: a malformed or unclosed numbers block"
        out += [(str(path.relative_to(ROOT)), m.group(1), m.group(2)) for m in blocks]
    return out


def _wrong(metrics: Path, text: str) -> list[str]:
    """The numbers of ``text`` that ``metrics``'s overall entry does not hold."""
    overall = json.loads(metrics.read_text())["overall"]
    confidence = yaml.safe_load((ROOT / "params.yaml").read_text())["aggregate"]["confidence"]
    allowed = _quotable(overall) | {f"{100 * confidence:g}"}  # "95% interval"
    quoted = [n.replace("−", "-") for n in NUMBER.findall(text)]
    signed, unsigned = {a for a in allowed if a[:1] in "+-"}, {a.lstrip("+-") for a in allowed}
    # A number quoted with a sign must have that sign in metrics.json (a flipped gain fails); without one, its size.
    return [n for n in quoted if n not in (signed if n[:1] in "+-" else unsigned)]


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
    numbers = NUMBER.findall(_block())
    assert len(numbers) >= 8, "the README's answer quotes the accuracies and both gains with their intervals"
    wrong = _wrong(ROOT / "reports" / "metrics.json", _block())
    assert not wrong, f"README quotes numbers that reports/metrics.json does not hold: {wrong}"


def test_every_marked_block_quotes_only_its_metrics_json() -> None:
    blocks = _blocks()
    assert {source for _, source, _ in blocks} >= {"reports/metrics.json", "reports/experiments/studies-minilm/metrics.json"}
    for where, source, text in blocks:
        assert (ROOT / source).is_file(), f"{where}: {source} does not exist"
        wrong = _wrong(ROOT / source, text)
        assert not wrong, f"{where} quotes numbers that {source} does not hold: {wrong}"


def test_the_readme_states_the_headline_verdicts() -> None:
    head = json.loads((ROOT / "reports" / "headline.json").read_text())
    block = _block()
    for key in ("loss_vs_cce_verdict", "loss_vs_setfit_verdict"):
        assert f"verdict: {head[key]}" in block, key
