"""The PNG writer every figure uses: rcParams pinned (not the user's matplotlibrc), colour per arm,
panel grids, and a PNG without the version chunk, so a figure's bytes depend only on its data.

Figures are drawn on ``matplotlib.figure.Figure`` objects, whose ``savefig`` uses the Agg canvas,
so no pyplot global state or backend switch is involved (Agg output is deterministic once fonts,
sizes and metadata are fixed).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

RC = {
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "svg.hashsalt": "fewshot-dml",
    "path.simplify": True,
}


def pinned_rc() -> Any:
    """A context with rcParams pinned to matplotlib's defaults (not the user's matplotlibrc) plus ``RC``,
    so that a figure's bytes depend only on its data."""
    return matplotlib.rc_context({k: v for k, v in matplotlib.rcParamsDefault.items() if k != "backend"} | RC)


def arm_color(arms: Sequence[str], arm: str) -> str:
    """A fixed colour per arm (tab10 cycle), the same in every subplot."""
    return f"C{list(arms).index(arm) % 10}"


def save_png(fig: Any, path: Path) -> None:
    # No "Software" text chunk: it carries the matplotlib version into otherwise identical bytes.
    fig.savefig(path, format="png", metadata={"Software": None})


def panels(n: int, width: float = 3.3, height: float = 2.7, cols: int = 4) -> tuple[Any, np.ndarray]:
    from matplotlib.figure import Figure

    cols = min(cols, n)
    rows = -(-n // cols)
    fig = Figure(figsize=(width * cols, height * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_axis_off()
    return fig, axes


def finish(fig: Any, axes: np.ndarray, path: Path, title: str) -> None:
    """One legend (the first panel's series) below the panels, the title above, then save."""
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels))
    fig.suptitle(title)
    save_png(fig, path)
