"""Outputs of the aggregate stage: ``results.md``, the PNG figures and the DVC plots CSVs.

Figures are drawn on ``matplotlib.figure.Figure`` objects, whose ``savefig`` uses the Agg canvas,
so no pyplot global state or backend switch is involved; rcParams are pinned per call for
byte-stable PNGs (Agg output is deterministic once fonts, sizes and metadata are fixed).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import pandas as pd

from fewshot_dml.params import BASELINE, Params
from fewshot_dml.tables import MODES, Tables

# Published gains of CCE + DML over CCE alone, quoted for comparison; never computed here.
REFERENCE = (
    ("CCE+ProxyAnchor", "+3.27 pp on average (up to +10.38 pp)"),
    ("CCE+SoftTriple", "+2.89 pp on average (+0.04 to +13.48 pp)"),
)
REFERENCE_SETUP = ("RoBERTa-large", "SentEval few-shot tasks, k-fold protocol of the studies")
_RC = {"figure.dpi": 100, "savefig.dpi": 100, "font.family": "DejaVu Sans", "font.size": 9,
       "svg.hashsalt": "fewshot-dml", "path.simplify": True}


def pct(x: float | None) -> str:
    """Accuracy in [0, 1] as a percentage with two decimals; a dash when undefined."""
    return "–" if x is None or not math.isfinite(x) else f"{100 * x:.2f}"


def _pp(x: float | None) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:+.2f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _what_was_run(params: Params, dml: str) -> str:
    t, s, inf, agg = params.train, params.sample, params.infer, params.aggregate
    loss = params.losses[dml]
    extra = [f"proxy lr {loss.proxy_lr:g}"] if loss.proxy_lr is not None else []
    extra += [f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in sorted(loss.hparams.items())]
    if loss.base != loss.name:
        extra.insert(0, f"a variant of `{loss.base}`")
    if loss.dml_on == "tokens":
        extra.append("DML on every token's hidden state (the studies' protocol)")
    if loss.metrix is not None:
        m = loss.metrix
        where = f"after encoder layer {m.layer}" if m.point == "feature" else f"at the {m.point}"
        extra.append(f"Metrix: mixing {where}, λ ~ Beta({m.alpha:g}, {m.alpha:g}), mixed loss weight {m.weight:g}")
    beta = loss.beta if loss.beta is not None else math.nan
    rows = [
        ("model", f"`{t.model}` ({t.pooling} pooling, max length {t.max_length})"),
        ("datasets", ", ".join(params.datasets)),
        ("few-shot sizes", ", ".join(map(str, params.sample_sizes))),
        ("seeds", ", ".join(map(str, params.seeds))),
        ("protocol", f"`{s.protocol}`, {s.folds} folds, evaluation set capped at "
                     f"{s.eval_max if s.eval_max else 'no limit'}"),
        ("training", f"{t.steps} steps, batch {t.batch_size} ({t.sampler} sampler), lr {t.lr:g} "
                     f"(head {t.head_lr:g}), {t.scheduler} schedule with {t.warmup_steps} warm-up steps, "
                     f"weight decay {t.weight_decay:g}, dropout {t.dropout:g}, max grad norm {t.max_grad_norm:g}"),
        ("arms", f"`{BASELINE}` (cross-entropy) and `{dml}`: {beta:g}·CCE + {1 - beta:g}·{dml}"
                 + (f" ({', '.join(extra)})" if extra else "")),
        ("inference", f"classifier head; proxy mix w·softmax(classifier) + (1−w)·softmax(proxies) at "
                      f"w = {inf.proxy_weight:g}; prototype (nearest class mean); kNN with k = {inf.knn_k}"),
        ("statistics", f"paired by seed: {agg.confidence:.0%} percentile bootstrap CI ({agg.bootstrap} "
                       f"resamples of seeds, seed {agg.seed}), two-sided Wilcoxon signed-rank test"),
    ]
    return "## What was run\n\n" + _table(("setting", "value"), rows)


def _accuracy_section(tables: Tables) -> str:
    acc = tables.accuracy
    rows = []
    for (dataset, size, arm), g in acc.groupby(["dataset", "size", "arm"], sort=False):
        by_mode = {r.mode: f"{pct(r.accuracy_mean)} ± {pct(r.accuracy_std)} (n={r.n}"
                   + (f", {r.flagged} degenerate ⚠)" if r.flagged else ")") for r in g.itertuples()}
        rows.append((dataset, size, f"`{arm}`", *(by_mode.get(m, "–") for m in _modes(acc))))
    return ("## Accuracy (%)\n\nMean ± sample std (ddof=1) over seeds on the held-out evaluation set; "
            "⚠ counts the degenerate runs included in a cell (see below).\n\n"
            + _table(("dataset", "size", "arm", *_modes(acc)), rows))


def _degenerate_section(tables: Tables, n_runs: int) -> str:
    deg = tables.degenerate
    head = ("## Degenerate runs\n\nEvery run is checked for a training loss that ended above twice its start, "
            "predictions collapsed to one class, and embeddings with no variance (`fewshot_dml.health`). A "
            "flagged run stays in every mean and paired test (it is what that configuration produced; dropping "
            "it would flatter the arm that failed) and is marked ⚠ in the accuracy table.\n\n")
    if deg.empty:
        return head + f"None of the {n_runs} runs was flagged."
    runs = deg.groupby(["dataset", "size", "seed", "arm"], sort=False)["symptom"].agg("; ".join).reset_index()
    counts = ", ".join(f"`{arm}`: {n}" for arm, n in runs.groupby("arm", sort=False).size().items())
    rows = [(r.dataset, r.size, r.seed, f"`{r.arm}`", r.symptom) for r in runs.itertuples()]
    return (head + f"{len(runs)} of the {n_runs} runs were flagged ({counts}).\n\n"
            + _table(("dataset", "size", "seed", "arm", "evidence"), rows))


def _modes(acc: pd.DataFrame) -> list[str]:
    return [m for m in MODES if m in set(acc["mode"])]


def _gains_section(tables: Tables) -> str:
    g = tables.gains
    conf = f"{tables.confidence:.0%} CI (pp)"
    rows = [
        (r.dataset, r.size, r.mode, r.baseline_mode, _pp(r.gain_pp), f"[{_pp(r.ci_low_pp)}, {_pp(r.ci_high_pp)}]",
         "–" if r.p_value is None or pd.isna(r.p_value) else f"{r.p_value:.3g}", r.n, "yes" if r.win else "no")
        for r in g.itertuples()
    ]
    wins = [f"- `{mode}`: {int(s['win'].sum())}/{len(s)} cells won, mean gain {_pp(s['gain_pp'].mean())} pp"
            for mode, s in g.groupby("mode", sort=False)]
    notes = sorted({f"- {r.dataset}/{r.size}/{r.mode}: {r.note}" for r in g.itertuples() if r.note})
    text = (f"## Gain of `{tables.dml_arm}` over `{BASELINE}` (pp)\n\nPaired by seed; each mode of the DML arm "
            "against the same mode of the baseline (`vs`), or its classifier where the baseline has no such "
            "mode.\n\n" + _table(("dataset", "size", "mode", "vs", "gain", conf, "Wilcoxon p", "n", "win"), rows)
            + "\n\nCells won:\n\n" + "\n".join(wins))
    return text + ("\n\nNotes:\n\n" + "\n".join(notes) if notes else "")


def _proxy_section(tables: Tables) -> str:
    curve = tables.proxy_curve
    head = "## Proxy-weight curve (%)\n\n"
    if curve.empty:
        return head + f"`{tables.dml_arm}` has no proxies, so there is no proxy inference."
    columns = list(dict.fromkeys(zip(curve["dataset"], curve["size"], strict=True)))
    wide = {(r.dataset, r.size, r.weight): r.accuracy_mean for r in curve.itertuples()}
    rows = [(f"{w:g}", *(pct(wide.get((d, s, w), math.nan)) for d, s in columns))
            for w in sorted(curve["weight"].unique())]
    return (head + "Accuracy of w·softmax(classifier) + (1−w)·softmax(proxies), mean over seeds "
            "(w = 1: classifier alone, w = 0: proxies alone).\n\n"
            + _table(("w", *(f"{d}/{s}" for d, s in columns)), rows))


def _reference_section(params: Params, tables: Tables, metrics: Mapping[str, Mapping[str, float]]) -> str:
    g = tables.gains[tables.gains["mode"] == "classifier"]["gain_pp"]
    ours = (f"{_pp(metrics['overall']['gain_pp'])} pp on average ({_pp(g.min())} to {_pp(g.max())} pp)")
    model, protocol = REFERENCE_SETUP
    rows = [(f"{name} (**published reference**)", gain, model, protocol) for name, gain in REFERENCE]
    rows.append((f"CCE+{tables.dml_arm} (**this run**)", ours, f"`{params.train.model}`",
                 f"`{params.sample.protocol}`, sizes {', '.join(map(str, params.sample_sizes))}, "
                 f"{len(params.seeds)} seeds, {params.train.steps} steps"))
    return ("## Published reference gains\n\nThe reference rows are quoted from the published few-shot DML "
            "studies, not computed by this pipeline; they were measured with a different model and protocol, "
            "so they are context, not a target.\n\n" + _table(("arm", "gain over CCE", "model", "protocol"), rows))


def render_results(
    params: Params, tables: Tables, metrics: Mapping[str, Mapping[str, float]], figures: Sequence[str]
) -> str:
    """The full ``results.md``; ``figures`` are paths relative to the reports directory."""
    overall = metrics["overall"]
    n_runs = len(params.datasets) * len(params.sample_sizes) * len(params.seeds) * len(params.arms)
    flagged = overall["degenerate_cce"] + overall["degenerate_dml"]
    summary = (f"Over {overall['cells']} dataset × size cells, `{tables.dml_arm}` (classifier) "
               f"{_pp(overall['gain_pp'])} pp over `{BASELINE}` on average, winning {overall['wins']} "
               f"of {overall['cells']} cells (mean accuracy {pct(overall['cce'])} → {pct(overall['dml'])}). "
               + (f"**{flagged} of {n_runs} runs are degenerate** ({overall['degenerate_cce']} `{BASELINE}`, "
                  f"{overall['degenerate_dml']} `{tables.dml_arm}`; included and marked, see below)."
                  if flagged else f"No run of the {n_runs} was flagged as degenerate."))
    figs = "## Figures\n\n" + "\n".join(f"![{Path(f).stem}]({f})" for f in figures)
    parts = [f"# Results: `{BASELINE}` vs `{BASELINE}` + `{tables.dml_arm}`", summary,
             _what_was_run(params, tables.dml_arm), _accuracy_section(tables), _degenerate_section(tables, n_runs),
             _gains_section(tables),
             _proxy_section(tables), _reference_section(params, tables, metrics), figs]
    return "\n\n".join(parts) + "\n"


def write_plots(tables: Tables, plots_dir: Path) -> None:
    """The CSVs that dvc.yaml's ``plots`` section points at (fixed order and float format)."""
    acc = tables.accuracy[["dataset", "size", "arm", "mode", "accuracy_mean", "accuracy_std"]]
    # Column names are the x/y fields of the top-level ``plots`` section of dvc.yaml.
    proxy = tables.proxy_curve.drop(columns="n").rename(columns={"accuracy_mean": "accuracy"})
    frames = {"accuracy.csv": acc, "proxy_weight.csv": proxy,
              "loss_curves.csv": tables.loss_curves.rename(columns={"loss_mean": "loss"})}
    for name, frame in frames.items():
        frame.to_csv(plots_dir / name, index=False, float_format="%.6f", na_rep="", lineterminator="\n")


def _grid(n: int) -> tuple[int, int]:
    cols = min(4, n)
    return -(-n // cols), cols


_STYLES = ("-", "--", ":", "-.")


def _color(values: Sequence[Any], value: Any) -> str:
    """A fixed colour per value (tab10 cycle), the same in every subplot."""
    return f"C{list(values).index(value) % 10}"


def _save(fig: Any, path: Path) -> None:
    # No "Software" text chunk: it carries the matplotlib version into otherwise identical bytes.
    fig.savefig(path, format="png", metadata={"Software": None})


_MARKERS = ("o", "s", "^", "D", "v", "P")


def _accuracy_figure(tables: Tables, path: Path) -> None:
    """Mean ± std per dataset: colour = arm, marker = inference mode, sizes as categories.

    Series are dodged sideways around each size so that error bars of the arms and modes do not
    hide each other (with a single few-shot size they would all stand on one vertical line).
    """
    from matplotlib.figure import Figure

    acc = tables.accuracy
    datasets, modes = list(dict.fromkeys(acc["dataset"])), _modes(acc)
    arms, sizes = list(dict.fromkeys(acc["arm"])), sorted(acc["size"].unique())
    series = [(arm, mode) for arm in arms for mode in modes]
    rows, cols = _grid(len(datasets))
    fig = Figure(figsize=(3.2 * cols, 2.6 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, dataset in zip(axes, datasets, strict=False):
        for (arm, mode), s in acc[acc["dataset"] == dataset].groupby(["arm", "mode"], sort=False):
            offset = 0.6 * (series.index((arm, mode)) + 0.5) / len(series) - 0.3
            x = [sizes.index(size) + offset for size in s["size"]]
            ax.errorbar(x, 100 * s["accuracy_mean"], yerr=100 * s["accuracy_std"].fillna(0.0),
                        marker=_MARKERS[modes.index(mode) % len(_MARKERS)], capsize=2, label=f"{arm} / {mode}",
                        color=_color(arms, arm), linestyle="--" if arm == BASELINE else "-")
        ax.set(title=dataset, xlabel="few-shot size", ylabel="accuracy (%)", xlim=(-0.5, len(sizes) - 0.5))
        ax.set_xticks(range(len(sizes)), [str(size) for size in sizes])
    for ax in axes[len(datasets):]:
        ax.set_axis_off()
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(modes))
    _save(fig, path)


def _proxy_figure(tables: Tables, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.5), layout="constrained")
    ax = fig.subplots()
    curve = tables.proxy_curve
    datasets, sizes = list(dict.fromkeys(curve["dataset"])), list(dict.fromkeys(curve["size"]))
    for (dataset, size), s in curve.groupby(["dataset", "size"], sort=False):
        ax.plot(s["weight"], 100 * s["accuracy_mean"], marker=".", label=f"{dataset}/{size}",
                color=_color(datasets, dataset), linestyle=_STYLES[sizes.index(size) % len(_STYLES)])
    if curve.empty:
        ax.text(0.5, 0.5, f"{tables.dml_arm} has no proxies", ha="center", va="center", transform=ax.transAxes)
    else:
        ax.legend(fontsize="small")
    ax.set(title=f"{tables.dml_arm}: w·classifier + (1−w)·proxies", xlabel="w", ylabel="accuracy (%)")
    _save(fig, path)


def _loss_figure(tables: Tables, path: Path) -> None:
    from matplotlib.figure import Figure

    curves = tables.loss_curves
    datasets, sizes, arms = (list(dict.fromkeys(curves[c])) for c in ("dataset", "size", "arm"))
    rows, cols = _grid(len(datasets))
    fig = Figure(figsize=(3.2 * cols, 2.6 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, dataset in zip(axes, datasets, strict=False):
        for (size, arm), s in curves[curves["dataset"] == dataset].groupby(["size", "arm"], sort=False):
            ax.plot(s["step"], s["loss_mean"], label=f"{arm} (size {size})", color=_color(arms, arm),
                    linestyle=_STYLES[sizes.index(size) % len(_STYLES)])
        ax.set(title=dataset, xlabel="step", ylabel="training loss")
        ax.legend(fontsize="small")
    for ax in axes[len(datasets):]:
        ax.set_axis_off()
    _save(fig, path)


def write_figures(tables: Tables, out_dir: Path) -> list[str]:
    """Draw the three figures into ``out_dir``; return their file names."""
    # Pinned rcParams (from matplotlib's defaults, not the user's matplotlibrc) for stable bytes.
    rc = {k: v for k, v in matplotlib.rcParamsDefault.items() if k != "backend"} | _RC
    names = {"accuracy.png": _accuracy_figure, "proxy_weight.png": _proxy_figure, "loss_curves.png": _loss_figure}
    with matplotlib.rc_context(rc):
        for name, draw in names.items():
            draw(tables, Path(out_dir) / name)
    return list(names)
