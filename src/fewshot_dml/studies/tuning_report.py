"""A sweep's tuning report (e.g. ``reports/experiments/sweep.md``) and its figure from the tuning study's
candidates (see :mod:`fewshot_dml.studies.tuning`).

``python -m fewshot_dml.studies.tuning_report --out reports/experiments/sweep.md --figure reports/experiments/sweep.png --rev <commit>``
reads the completed DVC experiments queued from ``<commit>`` (``dvc.api.exp_show``) and their runs
(``DVCFileSystem`` at each experiment's commit).
"""

from __future__ import annotations

import argparse
import fnmatch
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fewshot_dml.catalog.arms import BASELINE
from fewshot_dml.config.params import load_section
from fewshot_dml.config.sections import AggregateParams, dataset_order
from fewshot_dml.core import io
from fewshot_dml.core.cli import run_tool
from fewshot_dml.core.errors import UserError
from fewshot_dml.report.plotting import pinned_rc, save_png
from fewshot_dml.studies.experiments import (
    Experiment,
    check_locks,
    exp_show,
    one_grid,
    params_show,
    read_errors,
    select_experiments,
    unreadable,
)
from fewshot_dml.studies.tuning import (
    GOAL_PP,
    Candidate,
    collect,
    compare,
    comparisons,
    flatten,
    replicate,
    select,
)
from fewshot_dml.studies.tuning_sections import arm_names, confirm_section, goals_section, heldout_section, sweep_section

log = logging.getLogger(__name__)


def write_figure(candidates: Sequence[Candidate], selected: Mapping[str, Candidate], path: Path, agg: AggregateParams) -> None:
    """Left: every candidate's dev vs eval accuracy (selected ones ringed). Right: held-out gains over CCE."""
    from matplotlib.figure import Figure

    arms = arm_names(candidates)
    with pinned_rc():
        fig = Figure(figsize=(11, 4.6), layout="constrained")
        left, right = fig.subplots(1, 2, width_ratios=[1.1, 1])
        for i, arm in enumerate(arms):
            mine = [c for c in candidates if c.arm == arm]
            left.scatter(
                [100 * c.mean_dev for c in mine], [100 * c.mean_eval for c in mine], s=14, alpha=0.6, color=f"C{i % 10}", label=arm
            )
            s = selected[arm]
            left.scatter([100 * s.mean_dev], [100 * s.mean_eval], s=90, facecolors="none", edgecolors="black")
        lo = min(100 * min(c.mean_dev, c.mean_eval) for c in candidates) - 1
        hi = max(100 * max(c.mean_dev, c.mean_eval) for c in candidates) + 1
        left.plot([lo, hi], [lo, hi], color="grey", lw=0.8, ls=":")
        left.set(
            xlabel="development accuracy (%)",
            ylabel="evaluation accuracy (%)",
            title="every arm × configuration × inference mode\n(ringed: selected on development accuracy)",
        )
        left.legend(fontsize=8, loc="upper left")
        others = [a for a in arms if a != BASELINE]
        y = np.arange(len(others))[::-1]
        for yy, arm in zip(y, others, strict=True):
            res = compare(selected[arm], selected[BASELINE], agg)
            span = None if math.isnan(res.ci_low_pp) else [[res.gain_pp - res.ci_low_pp], [res.ci_high_pp - res.gain_pp]]
            right.errorbar(res.gain_pp, yy, xerr=span, fmt="o", color=f"C{arms.index(arm) % 10}", capsize=3)
        right.set_yticks(y, [f"{a} ({selected[a].mode})" for a in others])
        right.set_ylim(-0.6, len(others) - 0.4)
        right.axvline(0, color="black", lw=0.8)
        right.axvline(GOAL_PP, color="grey", lw=0.8, ls="--", label=f"goal +{GOAL_PP:g} pp")
        right.set(
            xlabel=f"evaluation gain over tuned cce (pp), {agg.confidence:.0%} blocked CI", title="tuned arms against tuned cce (held out)"
        )
        right.legend(fontsize=8, loc="lower right")
        save_png(fig, path)


def render(
    candidates: Sequence[Candidate],
    experiments: Sequence[Experiment],
    notes: Sequence[str],
    figure: str,
    agg: AggregateParams,
    confirm: tuple[Sequence[Candidate], Sequence[Experiment]] | None = None,
) -> str:
    selected = select(candidates)
    best, rows = comparisons(selected, agg)
    grid = one_grid(experiments)
    datasets = sorted({d for d, _, _ in grid}, key=dataset_order)
    head = [
        "# Tuning study: the strongest recipe per arm, selected on the development split",
        "",
        (
            f"{len(experiments)} DVC experiment(s) on one grid: {len(datasets)} datasets ({', '.join(datasets)}), "
            f"sizes {sorted({s for _, s, _ in grid})}, seeds {sorted({k for _, _, k in grid})}. Every arm × "
            "configuration × inference mode is a candidate; each arm's candidate with the highest mean development "
            "accuracy is its tuned recipe. Nothing is chosen on the evaluation set."
        ),
        "",
        f"![tuning]({figure})",
    ]
    where = f"protocol `{(experiments[0].params or {}).get('sample.protocol')}`"
    also = None
    if confirm and confirm[1]:
        again = replicate(selected, confirm[0])
        also = (
            f"protocol `{(confirm[1][0].params or {}).get('sample.protocol')}` (the same recipes)",
            comparisons(again, agg, best=best if best in again else None)[1],
        )
    sections = [
        "\n".join(head),
        goals_section(best, rows, where, agg, also),
        sweep_section(candidates, selected),
        heldout_section(selected, best, rows, agg),
    ]
    if confirm and confirm[1]:
        sections.append(confirm_section(selected, best, *confirm, agg))
    return "\n\n".join(sections + (["Notes:\n\n" + "\n".join(f"- {n}" for n in notes)] if notes else [])) + "\n"


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog=prog or "python -m fewshot_dml.studies.tuning_report", description="Write a tuning report from a sweep's DVC experiments."
    )
    ap.add_argument(
        "--out",
        type=Path,
        required=True,
        help="markdown file, e.g. reports/experiments/sweep.md (reports/tuning.md is the aggregate stage's)",
    )
    ap.add_argument(
        "--figure",
        type=Path,
        required=True,
        help="PNG, e.g. reports/experiments/sweep.png (not in a stage's output: `dvc repro` deletes those)",
    )
    ap.add_argument("--rev", action="append", default=None, help="the commit the sweep was queued from (default: HEAD); repeat for several")
    ap.add_argument("--match", default="*", help="only experiments whose name matches this glob, e.g. 'tune-*'")
    ap.add_argument("--confirm", default=None, help="experiments (a glob) that ran the selected recipes again on another grid or protocol")
    ap.add_argument("--repo", default=".")
    ap.add_argument("--runs", default="data/runs")
    args = ap.parse_args(argv)
    from dvc.api import DVCFileSystem

    every, notes = select_experiments(exp_show(args.repo, args.rev))
    again = [e for e in every if args.confirm and fnmatch.fnmatchcase(e.name, args.confirm)]
    experiments = [e for e in every if fnmatch.fnmatchcase(e.name, args.match) and e not in again]
    if not experiments:
        raise UserError(f"no completed experiment named {args.match!r} from {args.rev}; list them with `dvc exp show`")
    one_grid(experiments)
    check_locks(args.repo, [*experiments, *again])
    systems: dict[str, Any] = {}
    errors = read_errors()

    def read(e: Experiment, path: str) -> bytes:
        fs = systems.setdefault(e.rev, DVCFileSystem(args.repo, rev=e.rev or None))
        try:
            return fs.read_bytes(path)
        except errors as err:
            raise unreadable(e, path, err) from err

    # The committed params the sweep was queued from: configurations are named by what differs from them.
    defaults = flatten(params_show(args.repo, (args.rev or ["HEAD"])[0]))
    candidates = collect(experiments, read, args.runs, defaults)
    confirm = (collect(again, read, args.runs, defaults), again) if again else None
    args.figure.parent.mkdir(parents=True, exist_ok=True)
    selected = select(candidates)
    agg = load_section(Path(args.repo) / "params.yaml", "aggregate")
    write_figure(candidates, selected, args.figure, agg)
    io.write_text(args.out, render(candidates, experiments, notes, os.path.relpath(args.figure, args.out.parent), agg, confirm))
    log.info("wrote %s and %s from %d experiments", args.out, args.figure, len(experiments))


if __name__ == "__main__":
    from dvc.exceptions import DvcException  # a repository or revision DVC cannot read: one line

    run_tool(main, errors=(DvcException,))
