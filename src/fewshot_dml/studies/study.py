"""The cross-loss study: every DVC experiment side by side, dev-selected configurations, best arm per dataset.

Queue experiments (a loss each, or a sweep: ``dvc exp run --queue -S 'losses.proxyanchor.alpha=16,32'``),
run them (``dvc queue start``), then ``python -m fewshot_dml.studies.study --out reports/experiments/study.md``. Rows come
from ``dvc.api.exp_show``: one flat dict per experiment (params such as ``loss`` or
``losses.proxyanchor.alpha``, metrics as ``<dataset>.<field>``, prefixed ``<file>:`` when ambiguous).

Rules, applied by the pure functions below:

* the workspace row and every experiment not completed (``Failed``, ``Queued``, ``Running``: dvc
  shows their base commit's metrics) are skipped with a note, and so is one without metrics;
* every completed experiment is a row, labelled by the params that tell it apart from the others
  (a sweep never collapses); experiments with the same grid (datasets, sizes, seeds) form a table;
* per DML loss, the configuration with the highest mean **development** accuracy of its DML arm is
  selected (ties: the experiment listed first); its evaluation numbers are reported as they are.
  Nothing is chosen on the evaluation set, so the selected row's evaluation gain is not inflated by
  the choice;
* per dataset, the best arm is chosen the same way, on development accuracy among CCE, SetFit and
  each loss's selected configuration, and reported with its evaluation gain over CCE and the interval.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fewshot_dml.catalog.arms import BASELINE, PEERS, SETFIT
from fewshot_dml.config.params import load_section
from fewshot_dml.config.sections import dataset_order
from fewshot_dml.core import io
from fewshot_dml.core.cli import run_tool
from fewshot_dml.core.markdown import pct
from fewshot_dml.report.stats import blocked_gain, holm, paired_differences, paired_gain
from fewshot_dml.studies.experiments import (
    Experiment,
    check_locks,
    dev_selected,
    distinguishing,
    exp_show,
    read_errors,
    select_experiments,
    unreadable,
)

log = logging.getLogger(__name__)


def _gain(m: Mapping[str, float] | None) -> str:
    if not m or "gain_pp" not in m:
        return "–"
    ci = f" [{m['gain_low_pp']:+.2f}, {m['gain_high_pp']:+.2f}]" if {"gain_low_pp", "gain_high_pp"} <= set(m) else ""
    return f"{pct(m['dml'])} ({m['gain_pp']:+.2f}{ci})"


def _datasets(experiments: Sequence[Experiment]) -> list[str]:
    """The datasets the experiments have metrics for, built-in ones first (:func:`dataset_order`)."""
    return sorted({d for e in experiments for d in e.metrics if d != "overall"}, key=dataset_order)


def _grid_table(experiments: Sequence[Experiment]) -> str:
    datasets = _datasets(experiments)
    labels, selected = distinguishing(experiments), dev_selected(experiments)
    first = experiments[0].metrics
    rows = [
        (
            f"`{BASELINE}`",
            "–",
            "–",
            pct(first.get("overall", {}).get("dev_cce")),
            *(pct(first.get(g, {}).get("cce")) for g in [*datasets, "overall"]),
        ),
        (
            f"`{SETFIT}`",
            "–",
            "–",
            pct(first.get("overall", {}).get("dev_setfit")),
            *(pct(first.get(g, {}).get("setfit")) for g in [*datasets, "overall"]),
        ),
    ]
    order = sorted(experiments, key=lambda e: (e.loss, -e.metrics.get("overall", {}).get("dev_dml", -math.inf)))
    for e in order:
        mark = " ✓" if selected[e.loss] is e else ""
        rows.append(
            (
                f"`{e.loss}`{mark}",
                f"`{e.name}`",
                labels[e.name],
                pct(e.metrics.get("overall", {}).get("dev_dml")),
                *(_gain(e.metrics.get(g)) for g in [*datasets, "overall"]),
            )
        )
    header = ("arm", "experiment", "distinguishing params", "dev acc", *datasets, "overall")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(map(str, r)) + " |" for r in rows])


def best_arm_section(experiments: Sequence[Experiment], accuracy: Mapping[tuple, float], confidence: float) -> str:
    """Per dataset, the arm with the best development accuracy, with its evaluation gain over CCE."""
    selected = dev_selected(experiments)
    first = experiments[0]
    datasets = _datasets(experiments)
    rows = []
    for d in datasets:
        candidates = [
            (first.metrics[d].get("dev_cce", -math.inf), BASELINE, first, BASELINE),
            (first.metrics[d].get("dev_setfit", -math.inf), SETFIT, first, SETFIT),
        ]
        candidates += [(e.metrics.get(d, {}).get("dev_dml", -math.inf), e.loss, e, e.loss) for e in selected.values()]
        dev, label, e, arm = max(candidates, key=lambda c: c[0])
        cells = sorted({size for dd, size, _ in e.grid if dd == d})
        diffs = [
            paired_differences(
                [accuracy[(e.name, arm, d, s, k)] for dd, s, k in e.grid if dd == d and s == size],
                [accuracy[(e.name, BASELINE, d, s, k)] for dd, s, k in e.grid if dd == d and s == size],
            )
            for size in cells
        ]
        acc = np.mean([accuracy[(e.name, arm, d, s, k)] for dd, s, k in e.grid if dd == d])
        if arm == BASELINE:
            rows.append((d, f"`{label}`", pct(dev), pct(acc), "–", "–"))
            continue
        res = blocked_gain(diffs, confidence=confidence)
        interval = f"[{res.ci_low_pp:+.2f}, {res.ci_high_pp:+.2f}]" if math.isfinite(res.ci_low_pp) else "–"
        rows.append(
            (
                d,
                f"`{label}`" + (f" (`{e.name}`)" if arm not in PEERS else ""),
                pct(dev),
                pct(acc),
                f"{res.gain_pp:+.2f}",
                f"{interval} (n={res.n})",
            )
        )
    header = ("dataset", "best arm on dev", "dev acc", "eval acc", "eval gain over cce (pp)", f"{confidence:.0%} t-interval")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return (
        "### Best arm per dataset\n\nChosen on development accuracy among `cce`, `setfit` and each loss's "
        "dev-selected configuration; the evaluation numbers are then read, never used to choose. The interval "
        "is Student's t over the paired seeds (blocked over sizes when there are several). Choosing among "
        "several arms per dataset is itself a comparison: read these as the recommendation, not as a test. Ties "
        "(a development set of 16 examples moves in steps of 6.25 pp per seed) go to the first candidate: "
        "`cce`, `setfit`, then the losses.\n\n" + "\n".join(lines + ["| " + " | ".join(map(str, r)) + " |" for r in rows])
    )


def variant_section(experiments: Sequence[Experiment], accuracy: Mapping[tuple, float], confidence: float) -> str:
    """Each dev-selected variant against its clean loss's dev-selected configuration, paired by run."""
    selected = dev_selected(experiments)
    pairs = [(v, selected[v.variant_of]) for v in selected.values() if v.variant_of in selected]
    rows, p_values = [], []
    for variant, clean in sorted(pairs, key=lambda pair: pair[0].loss):
        cells = [c for c in variant.grid if c in set(clean.grid)]
        if not cells:
            continue
        res = paired_gain(
            [accuracy[(variant.name, variant.loss, *c)] for c in cells],
            [accuracy[(clean.name, clean.loss, *c)] for c in cells],
            confidence=confidence,
        )
        rows.append(
            [
                f"`{variant.loss}`",
                f"`{clean.loss}`",
                str(res.n),
                f"{res.gain_pp:+.2f}",
                f"[{res.ci_low_pp:+.2f}, {res.ci_high_pp:+.2f}]",
                "–" if res.p_value is None else f"{res.p_value:.3g}" + ("" if res.exact else " (MC)"),
            ]
        )
        p_values.append(res.p_value)
    if not rows:
        return ""
    for row, adjusted in zip(rows, holm(p_values), strict=True):
        row.append("–" if adjusted is None else f"{adjusted:.3g}")
    header = f"| variant | clean loss | n pairs | mean diff (pp) | {confidence:.0%} t-interval | sign-flip p | Holm p |\n|" + "---|" * 7
    return (
        "### Variants against their clean loss\n\nPaired by dataset × size × seed (the same split, batches and "
        "CCE start): the DML arm's classifier accuracy of the variant minus its clean loss's, in pp. Student-t "
        "interval over the pairs; two-sided sign-flip test of the mean (exact up to 16 pairs, else 20 000 "
        "Monte Carlo flips, MC); Holm across the rows.\n\n" + header + "\n" + "\n".join("| " + " | ".join(row) + " |" for row in rows)
    )


def read_accuracies(experiments: Sequence[Experiment], repo: str, runs_dir: str) -> dict:
    """Classifier accuracy of every run (every arm) of every experiment, read at the experiment's commit."""
    from dvc.api import DVCFileSystem

    from fewshot_dml.core import layout, rundir

    out = {}
    errors = read_errors()
    for e in experiments:
        fs = DVCFileSystem(repo, rev=e.rev or None)
        for arm in (*PEERS, e.loss):
            for d, size, seed in e.grid:
                path = f"{runs_dir}/{layout.run_id(d, size, seed, arm)}/{rundir.METRICS}"
                old = f"{runs_dir}/{d}-{size}-{seed}-{arm}/{rundir.METRICS}"  # before one train stage trained every seed
                try:
                    if not fs.exists(path) and fs.exists(old):
                        path = old
                    out[(e.name, arm, d, size, seed)] = json.loads(fs.read_text(path))["accuracy"]
                except errors as err:
                    raise unreadable(e, path, err) from err
    return out


def study(records: Sequence[Mapping[str, Any]], accuracy: Mapping[tuple, float], confidence: float) -> str:
    """``reports/experiments/study.md``: one section per grid, each with its table, best arms and variants; intervals at
    ``confidence`` (``aggregate.confidence`` of params.yaml)."""
    experiments, notes = select_experiments(records)
    if not experiments:
        raise ValueError(
            f"no completed experiment with metrics among the {len(records)} rows of `dvc exp show`" + "".join(f"\n  {n}" for n in notes)
        )
    grids: dict[tuple, list[Experiment]] = {}
    for e in experiments:
        grids.setdefault(e.grid, []).append(e)
    text = [
        "# Cross-loss study",
        "",
        "Every completed DVC experiment is a row, labelled by the params that distinguish it. Accuracy in % on "
        "the held-out evaluation set (mean over seeds, then over datasets for `overall`); in brackets the DML "
        f"arm's gain over `cce` in pp with its {confidence:.0%} t-interval (blocked over seed pairs). `dev acc` is the mean "
        "development accuracy of the row's DML arm (of the arm itself for `cce` and `setfit`). ✓ marks each "
        "loss's configuration selected on development accuracy alone: nothing here is tuned on the "
        "evaluation set. `cce` and `setfit` come from DVC's run-cache, identical in every experiment of a grid.",
    ]
    for grid, group in grids.items():
        datasets = sorted({d for d, _, _ in grid}, key=dataset_order)
        sizes, seeds = sorted({s for _, s, _ in grid}), sorted({k for _, _, k in grid})
        text += ["", f"## Grid: {len(datasets)} datasets, sizes {sizes}, seeds {seeds}", "", _grid_table(group)]
        cce = {f"`{e.name}` {pct(e.metrics['overall']['cce'])}" for e in group if "cce" in e.metrics.get("overall", {})}
        if len({round(e.metrics.get("overall", {}).get("cce", math.nan), 4) for e in group}) > 1:
            notes.append(
                f"`cce` differs across these experiments ({', '.join(sorted(cce))}): a shared setting "
                "changed, so each gain is against its own experiment's `cce`; the `cce` row shows the first"
            )
        for loss, chosen in dev_selected(group).items():
            best = chosen.metrics.get("overall", {}).get("dev_dml")
            tied = [e.name for e in group if e.loss == loss and e is not chosen and e.metrics.get("overall", {}).get("dev_dml") == best]
            if tied:
                notes.append(
                    f"{loss}: development accuracy ties ({pct(best)}) between `{chosen.name}` and "
                    f"{', '.join(f'`{t}`' for t in tied)}; the first listed (`{chosen.name}`) is marked. "
                    "A tie says the development set cannot tell these configurations apart."
                )
        if all((e.name, arm, *c) in accuracy for e in group for arm in (*PEERS, e.loss) for c in e.grid):
            text += ["", best_arm_section(group, accuracy, confidence)]
            section = variant_section(group, accuracy, confidence)
            text += ["", section] if section else []
    if notes:
        text += ["", "Notes:", "", *(f"- {n}" for n in notes)]
    return "\n".join(text) + "\n"


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    """Collect the experiments of ``--repo`` with dvc.api and write the study to ``--out``."""
    ap = argparse.ArgumentParser(
        prog=prog or "python -m fewshot_dml.studies.study", description="Write the cross-loss study from the DVC experiments."
    )
    ap.add_argument("--out", type=Path, required=True, help="markdown file to write, e.g. reports/experiments/study.md")
    ap.add_argument("--repo", default=".", help="DVC repository (default: the current one)")
    ap.add_argument("--rev", action="append", default=None, help="baseline commit of the experiments (default: HEAD); repeat for several")
    ap.add_argument("--runs", default="data/runs", help="the run directories' folder (as in dvc.yaml)")
    args = ap.parse_args(argv)
    records = exp_show(args.repo, args.rev)
    experiments, _ = select_experiments(records)
    check_locks(args.repo, experiments)
    accuracy = read_accuracies(experiments, args.repo, args.runs)
    confidence = load_section(Path(args.repo) / "params.yaml", "aggregate").confidence
    io.write_text(args.out, study(records, accuracy, confidence))
    log.info("wrote %s from %d rows of dvc exp show", args.out, len(records))


if __name__ == "__main__":
    from dvc.exceptions import DvcException  # a repository or revision DVC cannot read: one line

    run_tool(main, errors=(DvcException,))
