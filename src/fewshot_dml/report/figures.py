"""The aggregate stage's figures (PNG) and DVC plots data (CSV): one question per chart.

Figures are drawn on ``matplotlib.figure.Figure`` objects, whose ``savefig`` uses the Agg canvas,
so no pyplot global state or backend switch is involved; rcParams are pinned per call for
byte-stable PNGs (Agg output is deterministic once fonts, sizes and metadata are fixed).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from fewshot_dml.catalog.arms import BASELINE, DML, ROLES
from fewshot_dml.core.markdown import fmt_p
from fewshot_dml.report.plotting import arm_color, finish, panels, pinned_rc, save_png
from fewshot_dml.report.summary import unique
from fewshot_dml.report.tables import Tables


def comparison_label(treated: str, baseline: str) -> str:
    return f"{treated} − {baseline}"


def _forest(tables: Tables, path: Path) -> None:
    """Per-dataset classifier gains with t-intervals, and the blocked overall gain, per comparison."""
    from matplotlib.figure import Figure

    g = tables.gains[tables.gains["mode"] == "classifier"]
    pairs = list(dict.fromkeys(zip(g["treated"], g["baseline"], strict=True)))
    multi = g["size"].nunique() > 1
    labels = [f"{d}/{s}" if multi else d for d, s in dict.fromkeys(zip(g["dataset"], g["size"], strict=True))]
    fig = Figure(figsize=(3.6 * len(pairs), 0.32 * len(labels) + 1.8), layout="constrained")
    axes = fig.subplots(1, len(pairs), sharey=True, sharex=True, squeeze=False).ravel()  # one gain scale for every comparison
    overall = {(r.treated, r.baseline): r for r in tables.overall[tables.overall["mode"] == "classifier"].itertuples()}
    for ax, (treated, baseline) in zip(axes, pairs, strict=True):
        rows = g[(g["treated"] == treated) & (g["baseline"] == baseline)]
        y = np.arange(len(rows))[::-1] + 1.5
        ax.errorbar(
            rows["gain_pp"],
            y,
            xerr=[rows["gain_pp"] - rows["ci_low_pp"], rows["ci_high_pp"] - rows["gain_pp"]],
            fmt="o",
            color="C0",
            ecolor="0.4",
            capsize=2,
            markersize=4,
        )
        o = overall[(treated, baseline)]
        ax.errorbar(
            [o.gain_pp], [0], xerr=[[o.gain_pp - o.ci_low_pp], [o.ci_high_pp - o.gain_pp]], fmt="D", color="C3", capsize=3, markersize=6
        )
        ax.axvline(0, color="0.3", linewidth=0.8)
        ax.set_title(f"{comparison_label(treated, baseline)}\n(overall Holm p = {fmt_p(o.p_holm)})")
        ax.set_xlabel("accuracy gain (pp)")
    axes[0].set_yticks([0, *(np.arange(len(labels))[::-1] + 1.5)], ["overall (blocked)", *labels])
    fig.suptitle(f"Paired gains, classifier: mean and {tables.confidence:.0%} t-interval over seeds")
    save_png(fig, path)


def _by_size(tables: Tables, path: Path) -> None:
    """Classifier accuracy vs few-shot size per dataset: mean over seeds with a ±1 sd band.

    With a single size a band has no width, so each arm is a point with a ±1 sd bar, side by side.
    """
    acc = tables.accuracy[tables.accuracy["mode"] == "classifier"]
    datasets, sizes = unique(acc["dataset"]), sorted(acc["size"].unique())
    single = len(sizes) == 1
    fig, axes = panels(len(datasets))
    for ax, dataset in zip(axes, datasets, strict=False):
        here = acc[acc["dataset"] == dataset]
        for k, arm in enumerate(tables.arms):
            s = here[here["arm"] == arm].sort_values("size")
            mean, sd = 100 * s["accuracy_mean"].to_numpy(), 100 * s["accuracy_std"].fillna(0).to_numpy()
            color, style = arm_color(tables.arms, arm), "--" if arm == BASELINE else "-"
            if single:
                ax.errorbar([k], mean, yerr=sd, marker="o", color=color, capsize=3, label=arm)
            else:
                ax.plot(s["size"], mean, marker="o", color=color, label=arm, linestyle=style)
                ax.fill_between(s["size"], mean - sd, mean + sd, color=color, alpha=0.15, linewidth=0)
        majority = 100 * here.groupby("size")["majority_mean"].mean()
        if single:
            ax.axhline(float(majority.iloc[0]), color="0.5", linestyle=":", label="majority class")
            ax.set_xticks(range(len(tables.arms)), list(tables.arms))
            ax.set_xlim(-0.6, len(tables.arms) - 0.4)
            ax.set(title=f"{dataset} (size {sizes[0]})", ylabel="accuracy (%)")
        else:
            ax.plot(majority.index, majority.to_numpy(), color="0.5", linestyle=":", label="majority class")
            ax.set_xticks(sizes, [str(size) for size in sizes])
            ax.set(title=dataset, xlabel="few-shot size", ylabel="accuracy (%)")
    title = (
        "Accuracy per arm (classifier; bar = ±1 sd over seeds; one few-shot size)"
        if single
        else "Accuracy vs few-shot size (classifier; band = ±1 sd over seeds)"
    )
    finish(fig, axes, path, title)


def _proxy(tables: Tables, path: Path) -> bool:
    """Accuracy of w·classifier + (1−w)·proxies per dataset, ±1 sd band, with the CCE reference;
    nothing (False) for a loss without proxies: a placeholder image answers no question."""
    curve, acc = tables.proxy_curve, tables.accuracy
    if curve.empty:
        return False
    datasets, sizes = unique(curve["dataset"]), unique(curve["size"])
    styles = ("-", "--", ":", "-.")
    fig, axes = panels(len(datasets))
    for ax, dataset in zip(axes, datasets, strict=False):
        for k, size in enumerate(sizes):
            s = curve[(curve["dataset"] == dataset) & (curve["size"] == size)]
            mean, sd = 100 * s["accuracy_mean"].to_numpy(), 100 * s["accuracy_std"].fillna(0).to_numpy()
            suffix = f" (size {size})" if len(sizes) > 1 else ""
            ax.plot(s["weight"], mean, color="C2", linestyle=styles[k % 4], label=f"{tables.dml_arm} mix{suffix}")
            ax.fill_between(s["weight"], mean - sd, mean + sd, color="C2", alpha=0.15, linewidth=0)
            ref = acc[(acc["dataset"] == dataset) & (acc["size"] == size) & (acc["arm"] == BASELINE) & (acc["mode"] == "classifier")][
                "accuracy_mean"
            ]
            ax.axhline(
                100 * float(ref.iloc[0]),
                color=arm_color(tables.arms, BASELINE),
                linestyle=styles[k % 4],
                linewidth=1,
                label=f"{BASELINE} classifier{suffix}",
            )
        ax.set(title=dataset, xlabel="w (1 = classifier alone)", ylabel="accuracy (%)")
    finish(fig, axes, path, f"Proxy inference of {tables.dml_arm}: mean over seeds, band = ±1 sd")
    return True


def _losses(tables: Tables, path: Path) -> None:
    """Training loss per component (largest size), mean over seeds: CCE of both arms and the DML term."""
    curves = tables.loss_curves
    size = max(curves["size"])
    curves = curves[curves["size"] == size]
    datasets = unique(curves["dataset"])
    series = (
        (BASELINE, "cce_mean", f"{BASELINE}: CCE", "--"),
        (tables.dml_arm, "cce_mean", f"{tables.dml_arm}: CCE term", "-"),
        (tables.dml_arm, "dml_mean", f"{tables.dml_arm}: DML term", ":"),
    )
    fig, axes = panels(len(datasets))
    for ax, dataset in zip(axes, datasets, strict=False):
        for arm, column, label, style in series:
            s = curves[(curves["dataset"] == dataset) & (curves["arm"] == arm)]
            ax.plot(s["step"], s[column], color=arm_color(tables.arms, arm), linestyle=style, label=label)
        ax.set(title=dataset, xlabel="step", ylabel="loss (unweighted, log scale)", yscale="log")
    finish(fig, axes, path, f"Training loss components (size {size}, mean over seeds; SetFit's pair loss is not comparable)")


def _confusion(tables: Tables, path: Path) -> None:
    """Row-normalised classifier confusion matrices (largest size), summed over seeds: arms x datasets,
    the axes named by each dataset's classes (from run.json)."""
    from matplotlib.figure import Figure

    size = max(s for _, s, _ in tables.confusion)
    datasets = list(dict.fromkeys(d for d, s, _ in tables.confusion if s == size))
    fig = Figure(figsize=(2.6 * len(datasets), 2.6 * len(tables.arms) + 0.5), layout="constrained")
    axes = fig.subplots(len(tables.arms), len(datasets), squeeze=False)
    for i, arm in enumerate(tables.arms):
        for j, dataset in enumerate(datasets):
            ax, counts = axes[i, j], tables.confusion[(dataset, size, arm)]
            share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
            ax.imshow(share, vmin=0, vmax=1, cmap="Blues")
            if len(share) <= 6:
                for (r, c), v in np.ndenumerate(share):
                    ax.text(c, r, f"{100 * v:.0f}", ha="center", va="center", fontsize=7, color="white" if v > 0.6 else "black")
            labels = [str(n) for n in tables.label_names[dataset]]  # whole names: "negati" and "positi" read as nothing
            ax.set_xticks(range(len(share)), labels, fontsize=8, rotation=45, ha="right", rotation_mode="anchor")
            ax.set_yticks(range(len(share)), labels, fontsize=8)
            if i == 0:
                ax.set_title(dataset)
            if j == 0:
                ax.set_ylabel(f"{arm}\ntrue class")
            if i == len(tables.arms) - 1:
                ax.set_xlabel("predicted")
    fig.suptitle(f"Confusion (% of each true class), size {size}, summed over seeds")
    save_png(fig, path)


# Each draws one PNG; one that has nothing to show (the proxy curve of a loss without proxies) returns False.
FIGURES: dict[str, Callable[[Tables, Path], bool | None]] = {
    "forest.png": _forest,
    "accuracy_vs_size.png": _by_size,
    "proxy_weight.png": _proxy,
    "loss_curves.png": _losses,
    "confusion.png": _confusion,
}


def write_figures(tables: Tables, out_dir: Path) -> list[str]:
    """Draw every figure that has something to show into ``out_dir``; return their file names."""
    with pinned_rc():
        return [name for name, draw in FIGURES.items() if draw(tables, Path(out_dir) / name) is not False]


def plot_frames(tables: Tables) -> dict[str, pd.DataFrame]:
    """The CSVs of dvc.yaml's ``plots``: each answers one question; arms are named by role."""
    dml, acc = tables.dml_arm, tables.accuracy
    g = tables.gains[(tables.gains["treated"] == dml) & (tables.gains["baseline"] == BASELINE) & (tables.gains["mode"] == "classifier")]
    multi = g["size"].nunique() > 1
    gains = pd.DataFrame(
        {
            "dataset": [f"{d}/{s}" if multi else d for d, s in zip(g["dataset"], g["size"], strict=True)],
            "gain_pp": g["gain_pp"],
            "ci_low_pp": g["ci_low_pp"],
            "ci_high_pp": g["ci_high_pp"],
        }
    )
    o = tables.overall[
        (tables.overall["treated"] == dml) & (tables.overall["baseline"] == BASELINE) & (tables.overall["mode"] == "classifier")
    ].iloc[0]
    gains.loc[len(gains)] = ["overall (blocked)", o.gain_pp, o.ci_low_pp, o.ci_high_pp]
    cls = acc[acc["mode"] == "classifier"]
    # Long format (one row per x and arm): .dvc/plots/arms_*.json colour by the `arm` column.
    by_size = cls.pivot_table(index="size", columns="arm", values="accuracy_mean", aggfunc="mean")
    by_size = by_size.rename(columns={dml: DML})[list(ROLES)]
    frames = {"gains.csv": gains, "accuracy_vs_size.csv": long_by_arm(by_size, "size", "accuracy")}
    # Written even for a loss without proxies (header only; dvc.yaml draws no chart of it, the figure
    # proxy_weight.png exists only when there is a curve): a CSV to read or diff.
    proxy = pd.DataFrame(columns=["weight", "arm", "accuracy"])
    if not tables.proxy_curve.empty:
        curve = tables.proxy_curve.groupby("weight")["accuracy_mean"].mean().rename(DML).to_frame()
        curve[BASELINE] = cls.loc[cls["arm"] == BASELINE, "accuracy_mean"].mean()
        proxy = long_by_arm(curve[[DML, BASELINE]], "weight", "accuracy")
    frames["proxy_weight.csv"] = proxy
    curves = tables.loss_curves
    mean = {arm: curves[curves["arm"] == arm].groupby("step")[["cce_mean", "dml_mean"]].mean() for arm in (BASELINE, dml)}
    series = pd.DataFrame(
        {
            f"{BASELINE}: total": mean[BASELINE]["cce_mean"],
            f"{DML}: CCE term": mean[dml]["cce_mean"],
            f"{DML}: DML term": mean[dml]["dml_mean"],
        }
    )
    frames["loss_curves.csv"] = long_by_arm(series, "step", "loss")
    frames["confusion.csv"] = confusion_rows(tables, dml)
    return frames


def confusion_rows(tables: Tables, arm: str) -> pd.DataFrame:
    """The classifier's (actual, predicted) pairs of ``arm`` at the largest size, every seed, for DVC's confusion
    template: one row per evaluated example, classes named ``dataset: class``, datasets in grid order."""
    size = max(s for _, s, _ in tables.confusion)
    actual, predicted = [], []
    for dataset in dict.fromkeys(d for d, s, _ in tables.confusion if s == size):
        names = [f"{dataset}: {n}" for n in tables.label_names[dataset]]
        for (r, c), n in np.ndenumerate(tables.confusion[(dataset, size, arm)]):
            actual += [names[r]] * int(n)
            predicted += [names[c]] * int(n)
    return pd.DataFrame({"actual": actual, "predicted": predicted})


def long_by_arm(wide: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """(x index) x (one column per arm) -> rows of (x, arm, y): x ascending, arms in column order; the
    form .dvc/plots/arms_*.json draw (the aggregate and analyze stages' plot CSVs)."""
    return wide.sort_index().rename_axis(index=x, columns="arm").stack(future_stack=True).rename(y).reset_index()


def write_plots(tables: Tables, plots_dir: Path) -> None:
    """Write :func:`plot_frames` (fixed order and float format)."""
    for name, frame in plot_frames(tables).items():
        frame.to_csv(Path(plots_dir) / name, index=False, float_format="%.6f", na_rep="", lineterminator="\n")
