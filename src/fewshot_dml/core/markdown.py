"""Markdown pieces every report writes: a pipe table and the number formats (%, pp, p-values)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub pipe table: the header, a separator, one line per row (cells as ``str``)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def pct(x: float | None) -> str:
    """Accuracy in [0, 1] as a percentage with two decimals; a dash when undefined."""
    return "–" if x is None or not math.isfinite(x) else f"{100 * x:.2f}"


def pp(x: float | None) -> str:
    """A difference in percentage points, signed, two decimals; a dash when undefined."""
    return "–" if x is None or not math.isfinite(x) else f"{x:+.2f}"


def fmt_p(x: float | None) -> str:
    """A p-value with three significant digits; a dash when undefined."""
    return "–" if x is None or pd.isna(x) else f"{x:.3g}"
