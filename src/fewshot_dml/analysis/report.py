"""The analyze stage's report: paired geometry tests, their association with accuracy, metrics, plots, markdown.

Tests (DML arm against CCE, paired by seed on the same split, as the accuracy gains are):

* each geometry number's mean difference, blocked over dataset x size cells with the stratified
  sign-flip test of :func:`fewshot_dml.report.stats.blocked_gain`; Holm over the numbers compared;
* whether a run's change in geometry goes with its change in accuracy: Spearman's rho over the
  (cell, seed) pairs, its p from permuting the accuracy changes within each cell (so it asks about
  seeds within datasets, not about datasets, which differ in everything); Holm over the numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fewshot_dml.analysis.geometry import GEOMETRY, HIGHER_IS_BETTER, Analysis, analyze_grid
from fewshot_dml.catalog.arms import BASELINE, DML, ROLES
from fewshot_dml.config.params import Params
from fewshot_dml.core import io
from fewshot_dml.core.markdown import fmt_p, table
from fewshot_dml.report.figures import long_by_arm
from fewshot_dml.report.stats import blocked_gain, holm

LABELS = {
    "silhouette": "silhouette",
    "intra": "intra-class distance",
    "inter": "inter-class distance",
    "ratio": "intra / inter",
    "precision_at_1": "Precision@1",
    "map_at_r": "MAP@R",
    "centre_distance": "centre-to-class-mean distance",
}
_PERMUTATIONS = 20_000  # Monte Carlo within-cell permutations of the association test


def paired_geometry(geometry: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, size, seed): the DML arm's value minus the CCE arm's, per number and accuracy."""
    keys = ["dataset", "size", "seed"]
    dml = geometry[geometry["role"] == DML].set_index(keys)
    cce = geometry[geometry["role"] == BASELINE].set_index(keys)
    numbers = ["accuracy", *GEOMETRY]
    diff = dml[numbers] - cce.loc[dml.index, numbers]
    return diff.rename(columns={m: f"d_{m}" for m in numbers}).reset_index()


def _cells(paired: pd.DataFrame, column: str) -> tuple[list[np.ndarray], int]:
    """The finite differences per (dataset, size) cell, and how many were not finite (left out)."""
    finite = paired[np.isfinite(paired[column])]
    cells = [g[column].to_numpy() for _, g in finite.groupby(["dataset", "size"], sort=False)]
    return cells, len(paired) - len(finite)


def compare(paired: pd.DataFrame, *, confidence: float, alpha: float, seed: int) -> pd.DataFrame:
    """DML − CCE per geometry number: blocked mean difference, t-interval, sign-flip p, Holm p."""
    rows = []
    for metric in GEOMETRY:
        cells, left_out = _cells(paired, f"d_{metric}")
        if not cells:  # e.g. centre distance: the CCE arm has no centres
            continue
        r = blocked_gain(cells, confidence=confidence, seed=seed)  # in "pp": x 100
        rows.append(
            {
                "metric": metric,
                "diff": r.gain_pp / 100,
                "low": r.ci_low_pp / 100,
                "high": r.ci_high_pp / 100,
                "p": r.p_value,
                "n": r.n,
                "left_out": left_out,
            }
        )
    out = pd.DataFrame(rows, columns=["metric", "diff", "low", "high", "p", "n", "left_out"])
    out["p_holm"] = holm(out["p"].tolist())
    out["verdict"] = [_verdict(r.metric, r.diff, r.p_holm, alpha) for r in out.itertuples()]
    return out


def _verdict(metric: str, diff: float, p_holm: float | None, alpha: float) -> str:
    if p_holm is None or p_holm >= alpha:
        return "not shown"
    # "better"/"worse" class structure: "tighter" misread a separation number (inter-class distance) as compactness.
    return "better" if (diff > 0) == HIGHER_IS_BETTER[metric] else "worse"


def within_cell_spearman(
    x: np.ndarray, y: np.ndarray, cells: np.ndarray, *, seed: int, permutations: int = _PERMUTATIONS
) -> tuple[float, float]:
    """Spearman's rho of ``x`` and ``y`` and its two-sided p from permuting ``y`` within each cell.

    Written by hand: scipy's ``permutation_test`` has no strata. Ranks are taken once over all pairs
    (permuting ``y`` permutes its ranks), so each permutation is one correlation of rank vectors.
    """
    from scipy.stats import rankdata

    rx, ry = rankdata(x), rankdata(y)
    rx, ry = (rx - rx.mean()) / np.linalg.norm(rx - rx.mean()), ry - ry.mean()
    rho = float(rx @ ry / np.linalg.norm(ry))
    rng = np.random.default_rng(seed)
    index = np.tile(np.arange(len(y)), (permutations, 1))
    for cell in np.unique(cells):
        members = np.flatnonzero(cells == cell)
        index[:, members] = rng.permuted(np.tile(members, (permutations, 1)), axis=1)
    null = (ry[index] @ rx) / np.linalg.norm(ry)
    p = (np.sum(np.abs(null) >= abs(rho) - 1e-12) + 1) / (permutations + 1)
    return rho, float(p)


def associate(paired: pd.DataFrame, *, alpha: float, seed: int) -> pd.DataFrame:
    """Per geometry number: Spearman's rho of its change with the accuracy change, within-cell permutation p, Holm."""
    rows = []
    for metric in GEOMETRY:
        s = paired[np.isfinite(paired[f"d_{metric}"])]
        if len(s) < 3:
            continue
        cells = (s["dataset"] + "/" + s["size"].astype(str)).to_numpy()
        rho, p = within_cell_spearman(s[f"d_{metric}"].to_numpy(), s["d_accuracy"].to_numpy(), cells, seed=seed)
        rows.append({"metric": metric, "rho": rho, "p": p, "n": len(s)})
    out = pd.DataFrame(rows, columns=["metric", "rho", "p", "n"])
    out["p_holm"] = holm(out["p"].tolist())
    out["shown"] = [p is not None and p < alpha for p in out["p_holm"]]
    return out


def _finite(x: Any) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else round(float(x), 6)


def metrics_json(analysis: Analysis, tests: pd.DataFrame, assoc: pd.DataFrame, attribution: Mapping[str, Any]) -> dict[str, Any]:
    """``reports/analysis/metrics.json``: means by role, the DML − CCE tests, the associations."""
    means = analysis.geometry.groupby("role", sort=False)[["accuracy", *GEOMETRY]].mean()
    return {
        "geometry": {role: {m: _finite(v) for m, v in row.items()} for role, row in means.iterrows()},
        "dml_minus_cce": {
            r.metric: {
                "diff": _finite(r.diff),
                "low": _finite(r.low),
                "high": _finite(r.high),
                "p": _finite(r.p),
                "p_holm": _finite(r.p_holm),
                "n": r.n,
            }
            for r in tests.itertuples()
        },
        "association": {
            r.metric: {"rho": _finite(r.rho), "p": _finite(r.p), "p_holm": _finite(r.p_holm), "n": r.n} for r in assoc.itertuples()
        },
        "attribution": dict(attribution),
    }


def plot_frames(analysis: Analysis) -> dict[str, pd.DataFrame]:
    """The decile curves for `dvc plots`: accuracy per group, mean over datasets and seeds; rows of
    (decile, arm, accuracy), arms by role (.dvc/plots/arms_lines.json colours by arm)."""
    frames = {}
    for axis in ("distance", "length"):
        d = analysis.deciles[analysis.deciles["axis"] == axis]
        wide = d.pivot_table(index="bin", columns="role", values="accuracy", aggfunc="mean")[list(ROLES)]
        frames[f"deciles_{axis}.csv"] = long_by_arm(wide, "decile", "accuracy")
    return frames


def run_analyze(params: Params, runs_dir: Path, raw_dir: Path, explain_dir: Path, out_dir: Path) -> dict[str, Any]:
    """Analyse the grid's runs and write ``out_dir`` (analysis.md, metrics.json, figures/, plots/)."""
    from fewshot_dml.analysis import explain_report
    from fewshot_dml.report.plotting import pinned_rc

    analysis = analyze_grid(params, runs_dir, raw_dir)
    agg, seed = params.aggregate, params.analyze.seed
    paired = paired_geometry(analysis.geometry)
    tests = compare(paired, confidence=agg.confidence, alpha=agg.alpha, seed=seed)
    assoc = associate(paired, alpha=agg.alpha, seed=seed)
    explained = explain_report.read_explained(params, explain_dir)
    out_dir = Path(out_dir)
    with io.atomic_dir(out_dir) as tmp:
        (tmp / "figures").mkdir()
        (tmp / "plots").mkdir()
        with pinned_rc():
            figures = _draw(analysis, paired, explained, tmp / "figures", params.loss)
        for name, frame in plot_frames(analysis).items():
            frame.to_csv(tmp / "plots" / name, index=False, float_format="%.6f", lineterminator="\n")
        metrics = metrics_json(analysis, tests, assoc, explain_report.agreement_summary(explained))
        io.write_json(tmp / "metrics.json", metrics)
        io.write_text(tmp / "analysis.md", render(params, analysis, tests, assoc, explained, figures))
    return metrics


def _draw(analysis: Analysis, paired: pd.DataFrame, explained: list[dict], out: Path, loss: str) -> dict[str, list[str]]:
    """Every figure of the report; ``loss`` names the DML arm in the legends."""
    from fewshot_dml.analysis import figures as fig

    acc = analysis.geometry[analysis.geometry["seed"] == analysis.geometry["seed"].iloc[0]]
    names: dict[str, list[str]] = {"maps": [], "attributions": []}
    for dataset, size in dict.fromkeys((d, s) for d, s, _ in analysis.maps):
        maps = {arm: m for (d, s, arm), m in analysis.maps.items() if (d, s) == (dataset, size)}
        here = acc[(acc["dataset"] == dataset) & (acc["size"] == size)].set_index("arm")["accuracy"]
        name = f"map-{dataset}-{size}.png"
        seed = int(acc["seed"].iloc[0])
        fig.draw_map(
            maps,
            here.to_dict(),
            fig.map_title(dataset, size, seed, maps),
            out / name,
        )
        names["maps"].append(name)
    for axis, what in (("distance", "distance to the mean embedding"), ("length", "sentence length (words)")):
        fig.draw_deciles(analysis.deciles, axis, what, out / f"deciles-{axis}.png", {DML: loss})
    fig.draw_geometry_vs_accuracy(paired, ("silhouette", "map_at_r"), LABELS, out / "geometry-vs-accuracy.png")
    for item in explained:
        name = f"attributions-{item['dataset']}-{item['size']}.png"
        fig.draw_attributions(item, out / name)
        names["attributions"].append(name)
    return names


def _summary(dml: str, tests: pd.DataFrame, assoc: pd.DataFrame, alpha: float) -> str:
    """One paragraph read off the Holm-corrected tests only."""

    def named(verdict: str) -> str:
        names = [LABELS[m] for m in tests.loc[tests["verdict"] == verdict, "metric"]]
        return ", ".join(names) if names else "none"

    shown = [f"{LABELS[r.metric]} (rho {r.rho:+.2f})" for r in assoc.itertuples() if r.shown]
    return (
        f"**In short** (Holm p < {alpha:g}): `{dml}` gave the classes a better structure by {named('better')}; "
        f"a worse one by {named('worse')}; no difference shown in {named('not shown')}. "
        + (
            f"Within datasets, a seed's accuracy change goes with its change in {', '.join(shown)}."
            if shown
            else "No geometry change is shown to go with the accuracy change within datasets."
        )
    )


def render(
    params: Params, analysis: Analysis, tests: pd.DataFrame, assoc: pd.DataFrame, explained: list[dict], figures: Mapping[str, list[str]]
) -> str:
    from fewshot_dml.analysis.explain_report import attribution_section

    a, agg = params.analyze, params.aggregate
    n_runs = len(analysis.geometry)
    means = analysis.geometry.groupby(["dataset", "size", "arm"], sort=False)[["accuracy", *GEOMETRY]].mean()
    rows = [
        [f"{d}/{s}", arm, *(f"{100 * v:.1f}" if m == "accuracy" else ("–" if not np.isfinite(v) else f"{v:.3f}") for m, v in row.items())]
        for (d, s, arm), row in means.iterrows()
    ]
    test_rows = [
        [
            LABELS[r.metric],
            "higher" if HIGHER_IS_BETTER[r.metric] else "lower",
            f"{r.diff:+.4f}",
            f"[{r.low:+.4f}, {r.high:+.4f}]",
            r.n,
            fmt_p(r.p),
            fmt_p(r.p_holm),
            r.verdict,
        ]
        for r in tests.itertuples()
    ]
    assoc_rows = [
        [LABELS[r.metric], f"{r.rho:+.2f}", r.n, fmt_p(r.p), fmt_p(r.p_holm), "yes" if r.shown else "not shown"] for r in assoc.itertuples()
    ]
    dml = analysis.dml_arm
    parts = [
        "# What the DML loss did to the embedding space",
        f"Written by the `analyze` stage from the saved arrays of the {n_runs} runs of this experiment "
        f"(`eval.npz`, `train.npz`, `loss_state.pt`, `run.json`; no forward pass). The DML arm is `{dml}`. "
        "Distances are cosine distances of the L2-normalised evaluation embeddings. Silhouette: scikit-learn's, "
        "cosine. Precision@1 and MAP@R: pytorch-metric-learning's `AccuracyCalculator`, each evaluation example "
        "against all others. Centre distance: each learned proxy or centre to its class's mean embedding (losses "
        "with centres only).",
        "## Geometry per dataset and arm (mean over seeds)",
        table(["cell", "arm", "accuracy %", *(LABELS[m] for m in GEOMETRY)], rows),
        f"## Did `{dml}` change the geometry? ({dml} − cce, paired by seed)",
        f"Mean over dataset × size cells of the per-cell mean difference, its {agg.confidence:.0%} t-interval "
        "(blocked, within-cell variance), and the stratified sign-flip test (n = pairs); Holm over the "
        f'{len(tests)} numbers. "better"/"worse" class structure: Holm p < {agg.alpha:g}, in or against the direction '
        'the column "better is" names; "not shown" otherwise. The interval is not multiplicity-corrected.',
        _summary(dml, tests, assoc, agg.alpha),
        table(["number", "better is", "difference", "interval", "n", "p", "Holm p", "verdict"], test_rows),
        "## Does the geometry change go with the accuracy change?",
        "Spearman's rho between a seed's change in the number and its change in accuracy (both "
        f"{dml} − cce) over the (cell, seed) pairs; p from {_PERMUTATIONS:,} permutations of the accuracy "
        "changes within each cell (association among seeds of a dataset, not between datasets); Holm over "
        f"the {len(assoc)} numbers. A correlation is not a cause: both changes come from the same run.",
        table(["number", "rho", "n", "p", "Holm p", f"shown at {agg.alpha:g}"], assoc_rows),
        "![geometry vs accuracy](figures/geometry-vs-accuracy.png)",
        "## Maps",
        f"t-SNE (scikit-learn, exact, cosine, perplexity {a.perplexity:g} or (n − 1) / 3 if smaller, PCA start, "
        f"random state {a.seed}) of each dataset's first seed; crosses are misclassified examples, stars the "
        "learned centres (mapped with the examples). t-SNE keeps neighbourhoods, not distances: compare the "
        "numbers above, not the gaps between clusters.",
        *(f"![{n}](figures/{n})" for n in figures["maps"]),
        "## Accuracy by distance and by length",
        f"Each run's evaluation examples in {a.bins} equal-count groups (ties broken at random, seed {a.seed}) by "
        "their distance "
        f"to the {'mean evaluation embedding (as the studies did)' if a.distance_to == 'mean' else 'mean of their own class'}"
        " and by their length in words; classifier accuracy per group; mean over seeds with a ±1 sd band. "
        "`dvc plots show` draws the mean over datasets (`deciles_distance`, `deciles_length`).",
        "![by distance](figures/deciles-distance.png)",
        "![by length](figures/deciles-length.png)",
        "## Confusion matrices",
        "Row-normalised (% of each true class), summed over seeds, class names truncated to six characters; "
        "drawn by the `aggregate` stage beside `results.md`.",
        "![confusion](../figures/confusion.png)",
        attribution_section(params, explained, figures["attributions"]),
    ]
    return "\n\n".join(parts) + "\n"
