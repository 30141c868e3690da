"""The analyze stage's figures: embedding maps, accuracy by decile, geometry against accuracy, attributions.

Drawn as :mod:`fewshot_dml.report.figures` draws (``Figure`` objects on the Agg canvas, pinned rcParams,
no "Software" chunk), so the PNGs are byte-stable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fewshot_dml.analysis.geometry import RunMap
from fewshot_dml.catalog.arms import BASELINE, ROLES
from fewshot_dml.report.plotting import arm_color, finish, panels, save_png

AXIS_LABEL = {"distance": "distance decile (1 = nearest)", "length": "length decile (1 = shortest)"}


def map_title(dataset: str, size: int, seed: int, maps: Mapping[str, RunMap]) -> str:
    """The t-SNE figure's title; it mentions learned centres only where some arm has them."""
    centres = " and the learned centres" if any(len(m.centres) for m in maps.values()) else ""
    return f"{dataset} (size {size}, seed {seed}): t-SNE of the evaluation embeddings{centres}"


def draw_map(maps: Mapping[str, RunMap], accuracy: Mapping[str, float], title: str, path: Path) -> None:
    """One t-SNE panel per arm: points by class, misclassified ones as crosses, learned centres (if any) as stars."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    fig = Figure(figsize=(4.2 * len(maps), 4.6), layout="constrained")
    axes = fig.subplots(1, len(maps), squeeze=False).ravel()
    names = next(iter(maps.values())).label_names
    for ax, (arm, m) in zip(axes, maps.items(), strict=True):
        colors = np.array([f"C{c % 10}" for c in m.labels])
        ok = m.correct
        ax.scatter(m.points[ok, 0], m.points[ok, 1], c=colors[ok], s=12, alpha=0.7, linewidths=0)
        ax.scatter(m.points[~ok, 0], m.points[~ok, 1], c=colors[~ok], s=22, marker="x", linewidths=1.1)
        if len(m.centres):
            ax.scatter(
                m.centres[:, 0],
                m.centres[:, 1],
                c=[f"C{c % 10}" for c in m.centre_classes],
                s=180,
                marker="*",
                edgecolors="black",
                linewidths=1.0,
                zorder=3,
            )
        ax.set_title(f"{arm}: accuracy {100 * accuracy[arm]:.1f}%")
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [Line2D([], [], marker="o", linestyle="", color=f"C{c % 10}", label=str(n)) for c, n in enumerate(names)]
    handles.append(Line2D([], [], marker="x", linestyle="", color="0.3", label="misclassified"))
    if any(len(m.centres) for m in maps.values()):  # only losses with proxies or class centres draw stars
        handles.append(
            Line2D([], [], marker="*", linestyle="", markersize=12, color="0.8", markeredgecolor="black", label="learned centre")
        )
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 8))
    fig.suptitle(title)
    save_png(fig, path)


def draw_deciles(deciles: pd.DataFrame, axis: str, what: str, path: Path, names: Mapping[str, str] | None = None) -> None:
    """Accuracy per decile of ``axis``, one panel per dataset and one over all: mean over seeds, ±1 sd band.
    ``names``: the legend's name of a role (the DML role is shown as its loss, e.g. ``supcon``)."""
    names = names or {}
    d = deciles[deciles["axis"] == axis]
    multi = d["size"].nunique() > 1
    cells = list(dict.fromkeys(zip(d["dataset"], d["size"], strict=True)))
    fig, axes = panels(len(cells) + 1)
    for ax, cell in zip(axes, [*cells, None], strict=False):
        here = d if cell is None else d[(d["dataset"] == cell[0]) & (d["size"] == cell[1])]
        # Over all datasets: each seed's mean over datasets first, so the band is a seed band too.
        per_seed = here.groupby(["role", "seed", "bin"], sort=False)["accuracy"].mean().reset_index()
        for role in ROLES:
            s = per_seed[per_seed["role"] == role].groupby("bin")["accuracy"]
            mean, sd = 100 * s.mean(), 100 * s.std(ddof=1).fillna(0)
            ax.plot(
                mean.index,
                mean,
                marker="o",
                markersize=3,
                color=arm_color(ROLES, role),
                label=names.get(role, role),
                linestyle="--" if role == BASELINE else "-",
            )
            ax.fill_between(mean.index, mean - sd, mean + sd, color=arm_color(ROLES, role), alpha=0.15, linewidth=0)
        name = "all datasets" if cell is None else (f"{cell[0]}/{cell[1]}" if multi else cell[0])
        ax.set(title=name, xlabel=AXIS_LABEL[axis], ylabel="accuracy (%)")
        ax.set_xticks(sorted(d["bin"].unique()))
    finish(fig, axes, path, f"Classifier accuracy by {what} (equal-count groups; mean over seeds, band = ±1 sd)")


def draw_geometry_vs_accuracy(paired: pd.DataFrame, metrics: Sequence[str], labels: Mapping[str, str], path: Path) -> None:
    """Per (dataset, seed): the DML arm's change in a geometry number against its change in accuracy."""
    fig, axes = panels(len(metrics), width=3.6, height=3.2, cols=len(metrics))
    datasets = list(dict.fromkeys(paired["dataset"]))
    for ax, metric in zip(axes, metrics, strict=True):
        for k, dataset in enumerate(datasets):
            s = paired[paired["dataset"] == dataset]
            ax.scatter(s[f"d_{metric}"], 100 * s["d_accuracy"], s=16, color=f"C{k % 10}", label=dataset)
        ax.axhline(0, color="0.5", linewidth=0.7)
        ax.axvline(0, color="0.5", linewidth=0.7)
        ax.set(xlabel=f"Δ {labels[metric]} (dml − cce)", ylabel="Δ accuracy (pp)")
    finish(fig, axes, path, "Does the geometry change go with the accuracy change? (one point per dataset × seed)")


def _text_width(renderer: Any, text: str, size: float) -> float:
    from matplotlib.font_manager import FontProperties

    width, _, _ = renderer.get_text_width_height_descent(text, FontProperties(size=size), ismath=False)
    return width


def _layout(explained: Mapping[str, Any], renderer: Any, left: float, right: float) -> list[tuple]:
    """Where every label and word goes: ``(kind, x_px, line, text, score)``, words wrapped at ``right``.

    Written by hand: matplotlib has no highlighted-text layout, and Captum's visualiser renders HTML only.
    """
    runs = [r for r in explained["runs"] if r["seed"] == explained["seed"]]
    ops, line, gap = [], 0, _text_width(renderer, " ", 8) * 1.6
    for i, sentence in enumerate(explained["sentences"]):
        ops.append(("head", 0.0, line, f"#{i + 1}  true class: {sentence['label_name']}", 0.0))
        line += 1
        first = sentence.get("first_words", len(sentence["words"]))
        for run in runs:
            scores = np.asarray(run["attributions"][i], np.float64)
            scaled = scores / max(float(np.abs(scores).max()), 1e-12)
            mark = "right" if run["predicted"][i] == sentence["label"] else "wrong"
            ops.append(("label", 0.0, line, f"{run['arm']} · {run['kind']} ({mark})", 0.0))  # the loss, as in every figure
            x = left
            for k, (word, score) in enumerate(zip(sentence["words"], scaled, strict=True)):
                if k == first and k > 0:
                    ops.append(("sep", x, line, "‖", 0.0))
                    x += _text_width(renderer, "‖", 8) + gap
                width = _text_width(renderer, word, 8)
                if x + width > right and x > left:
                    x, line = left, line + 1
                ops.append(("word", x, line, word, float(score)))
                x += width + gap
            line += 1
        line += 1
    return ops


def draw_attributions(explained: Mapping[str, Any], path: Path) -> None:
    """Per sentence: one highlighted line per (arm, score) of the first seed, red = towards the true class."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    width_in, dpi, line_in, top_in = 11.0, 100, 0.27, 0.75
    scratch = Figure(figsize=(width_in, 1), dpi=dpi)
    ops = _layout(explained, FigureCanvasAgg(scratch).get_renderer(), left=2.0 * dpi, right=(width_in - 0.15) * dpi)
    height_in = top_in + line_in * (max(op[2] for op in ops) + 1) + 0.15
    fig = Figure(figsize=(width_in, height_in), dpi=dpi)
    cmap = colormaps["RdBu_r"]
    for kind, x, line, text, score in ops:
        xy = ((x + 0.1 * dpi) / (width_in * dpi), 1 - (top_in + line * line_in) / height_in)
        if kind == "word":
            fig.text(
                *xy,
                text,
                fontsize=8,
                va="top",
                color="white" if abs(score) > 0.6 else "black",
                bbox={"boxstyle": "square,pad=0.2", "facecolor": cmap(0.5 + 0.5 * score), "linewidth": 0},
            )
        else:
            fig.text(*xy, text, fontsize=8 if kind != "label" else 7.5, va="top", weight="bold" if kind == "head" else "normal")
    fig.suptitle(
        f"{explained['dataset']}: Integrated Gradients of the true class's log-softmax (seed {explained['seed']})"
        "\nred raises it, blue lowers it; each line scaled to its largest |attribution|; "
        "right/wrong = the run's prediction; ‖ = between the two sentences of a pair",
        fontsize=9,
    )
    save_png(fig, path)
