"""``reports/tuning.md`` and its figure from the tuning study's candidates (see :mod:`fewshot_dml.studies.tuning`).

``python -m fewshot_dml.studies.tuning_report --out reports/tuning.md --figure reports/tuning.png --rev <commit>``
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

from fewshot_dml.core import io
from fewshot_dml.report.figures import _RC, _save
from fewshot_dml.core.logs import setup_logging
from fewshot_dml.config.params import BASELINE, PEERS, SETFIT, dataset_order
from fewshot_dml.report.results import _table, fmt_p, pct
from fewshot_dml.studies.study import Experiment, select_experiments
from fewshot_dml.studies.tuning import (
    ALPHA,
    CONFIDENCE,
    GOAL_PP,
    Candidate,
    collect,
    compare,
    comparisons,
    flatten,
    replicate,
    select,
)

log = logging.getLogger(__name__)

def _interval(r: Any) -> str:
    ci = "" if math.isnan(r.ci_low_pp) else f" [{r.ci_low_pp:+.2f}, {r.ci_high_pp:+.2f}]"
    return f"{r.gain_pp:+.2f}{ci}"


def _arms(candidates: Sequence[Candidate]) -> list[str]:
    return list(dict.fromkeys([*[a for a in PEERS if any(c.arm == a for c in candidates)],
                               *(c.arm for c in candidates)]))


def sweep_section(candidates: Sequence[Candidate], selected: Mapping[str, Candidate]) -> str:
    """Per arm and configuration: its best inference mode on dev, and how many candidates the arm had."""
    rows = []
    for arm in _arms(candidates):
        mine = [c for c in candidates if c.arm == arm]
        for config in dict.fromkeys(c.config for c in mine):
            pool = [c for c in mine if c.config == config]
            best = max(pool, key=lambda c: c.mean_dev)  # first on ties, as the selection
            mark = " ✓" if best is selected[arm] else ""
            rows.append([f"`{arm}`{mark}", config, f"`{best.experiment}`", best.mode, pct(best.mean_dev),
                         pct(best.mean_eval), len(pool)])
    from scipy.stats import spearmanr

    rho = spearmanr([c.mean_dev for c in candidates], [c.mean_eval for c in candidates]).statistic
    budget = ", ".join(f"`{a}` {len({c.config for c in candidates if c.arm == a})} configuration(s) × "
                       f"{len({c.mode for c in candidates if c.arm == a})} mode(s)" for a in _arms(candidates))
    return "\n".join([
        "## What was swept, and what the development split selected", "",
        ("Each row is one configuration of an arm (named by the params that differ from the committed "
         "defaults the sweep was queued from), shown with its best inference mode on the development split "
         "(mean over datasets of the mean over seeds). ✓ marks the arm's selected candidate. The evaluation "
         "column is shown for every row for transparency; it chose nothing."), "",
        _table(["arm", "configuration", "experiment", "best mode on dev", "dev acc", "eval acc", "modes tried"], rows),
        "", f"Budget (configurations × inference modes): {budget}.", "",
        (f"How far the development split can be trusted: over all {len(candidates)} candidates, the Spearman "
         f"rank correlation of mean development and mean evaluation accuracy is {rho:.2f} (descriptive, not a "
         "test: the candidates share runs). The development set is as small as the training set (LM-BFF's "
         "choice), so close calls on it are noise; the held-out comparison below is what counts.")])


def _arm_table(selected: Mapping[str, Candidate]) -> str:
    datasets = sorted({d for c in selected.values() for d, _, _ in c.eval}, key=dataset_order)

    def per_dataset(c: Candidate, d: str) -> str:
        return pct(float(np.mean([v for (dd, _, _), v in c.eval.items() if dd == d])))

    return _table(["arm", "configuration", "mode", "dev acc", *datasets, "mean"],
                  [[f"`{a}`", selected[a].config, selected[a].mode, pct(selected[a].mean_dev),
                    *(per_dataset(selected[a], d) for d in datasets), pct(selected[a].mean_eval)]
                   for a in _arms(list(selected.values()))])


def _tests_table(rows: Sequence[dict]) -> str:
    return _table(["comparison", "family", "n pairs", "gain (pp) [95% CI]", "sign-flip p", "Holm p", "verdict"],
                  [[f"`{r['treated']}` − `{r['baseline']}`", "confirmatory" if r["primary"] else "secondary",
                    r["result"].n, _interval(r["result"]), fmt_p(r["result"].p_value), fmt_p(r["p_holm"]),
                    _verdict(r)] for r in rows])


def _tests_text(best: str | None) -> str:
    return (f"Paired by (dataset, seed); blocked over datasets (randomised-block {CONFIDENCE:.0%} t-interval, "
            "variance pooled within datasets; sign-flip permutation test stratified by dataset). Holm's correction "
            f"within each family: the confirmatory family is the best DML arm on dev (`{best}`) against `cce` and "
            f"`setfit`; every other comparison is secondary. A gain is called only where its Holm p < {ALPHA:g}.")


def heldout_section(selected: Mapping[str, Candidate], best: str | None, rows: Sequence[dict]) -> str:
    return "\n".join([
        "## Held-out comparison of the tuned arms", "",
        "Evaluation accuracy (%) of each arm's dev-selected recipe, mean over seeds per dataset.", "",
        _arm_table(selected), "", _tests_text(best), "", _tests_table(rows)])


def confirm_section(selected: Mapping[str, Candidate], best: str | None, candidates: Sequence[Candidate],
                    experiments: Sequence[Experiment]) -> str:
    """The selected recipes run again on another grid or protocol (e.g. SetFit's per-class splits)."""
    grid = one_grid(experiments)
    params = experiments[0].params or {}
    again = replicate(selected, candidates)
    missing = [f"`{a}`" for a in selected if a not in again]
    _, rows = comparisons(again, best=best if best in again else None)
    datasets = sorted({d for d, _, _ in grid}, key=dataset_order)
    return "\n".join([
        f"## The tuned recipes on protocol `{params.get('sample.protocol')}`, sizes {sorted({s for _, s, _ in grid})}",
        "",
        (f"The same recipes (configuration and inference mode, nothing re-selected) run again in "
         f"{', '.join(f'`{e.name}`' for e in experiments)}: {len(datasets)} datasets, seeds "
         f"{sorted({k for _, _, k in grid})}, `sample.protocol={params.get('sample.protocol')}` "
         "(for `per_class`: the size is examples per class, SetFit's own protocol)."
         + (f" Not run there: {', '.join(missing)}." if missing else "")), "",
        _arm_table(again), "", _tests_text(best), "", _tests_table(rows)])


def _verdict(r: Mapping[str, Any]) -> str:
    p, gain = r["p_holm"], r["result"].gain_pp
    if p is None or p >= ALPHA:
        return "cannot tell"
    return "better" if gain > 0 else "worse"


def goals_section(best: str | None, rows: Sequence[dict], where: str,
                  also: tuple[str, Sequence[dict]] | None = None) -> str:
    """Each target of the issue against the confirmatory tests (``also``: the same tests on another protocol)."""
    lines = ["## The issue's goals", ""]
    if also:
        lines += [("Both targets are for the best DML arm on dev; the SetFit target is stated for SetFit's own "
                   "per-class splits (8 examples per class), so the second protocol's SetFit line is the one that "
                   "answers it."), ""]
    for label, family in ((where, rows), *([also] if also else [])):
        for base, what in ((BASELINE, "tuned CCE"), (SETFIT, "SetFit")):
            r = next((r for r in family if r["primary"] and r["baseline"] == base), None)
            if r is None:
                lines.append(f"- {label}: best DML arm vs {what}: not measured (no such arm).")
                continue
            res = r["result"]
            met = res.gain_pp >= GOAL_PP and r["p_holm"] is not None and r["p_holm"] < ALPHA
            lines.append(f"- {label}: `{best}` vs {what}: {_interval(res)} pp (blocked {CONFIDENCE:.0%} CI, {res.n} "
                         f"pairs, Holm p = {fmt_p(r['p_holm'])}); the target is ≥ +{GOAL_PP:g} pp with a significant "
                         f"blocked test: **{'met' if met else 'not met'}**"
                         + ("" if met else f", {GOAL_PP - res.gain_pp:.2f} pp short of the target point") + ".")
    return "\n".join(lines)


def write_figure(candidates: Sequence[Candidate], selected: Mapping[str, Candidate], path: Path) -> None:
    """Left: every candidate's dev vs eval accuracy (selected ones ringed). Right: held-out gains over CCE."""
    import matplotlib
    from matplotlib.figure import Figure

    arms = _arms(candidates)
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(11, 4.6), layout="constrained")
        left, right = fig.subplots(1, 2, width_ratios=[1.1, 1])
        for i, arm in enumerate(arms):
            mine = [c for c in candidates if c.arm == arm]
            left.scatter([100 * c.mean_dev for c in mine], [100 * c.mean_eval for c in mine], s=14, alpha=0.6,
                         color=f"C{i % 10}", label=arm)
            s = selected[arm]
            left.scatter([100 * s.mean_dev], [100 * s.mean_eval], s=90, facecolors="none", edgecolors="black")
        lo = min(100 * min(c.mean_dev, c.mean_eval) for c in candidates) - 1
        hi = max(100 * max(c.mean_dev, c.mean_eval) for c in candidates) + 1
        left.plot([lo, hi], [lo, hi], color="grey", lw=0.8, ls=":")
        left.set(xlabel="development accuracy (%)", ylabel="evaluation accuracy (%)",
                 title="every arm × configuration × inference mode\n(ringed: selected on development accuracy)")
        left.legend(fontsize=8, loc="upper left")
        others = [a for a in arms if a != BASELINE]
        y = np.arange(len(others))[::-1]
        for yy, arm in zip(y, others, strict=True):
            res = compare(selected[arm], selected[BASELINE])
            span = None if math.isnan(res.ci_low_pp) else [[res.gain_pp - res.ci_low_pp], [res.ci_high_pp - res.gain_pp]]
            right.errorbar(res.gain_pp, yy, xerr=span, fmt="o", color=f"C{arms.index(arm) % 10}", capsize=3)
        right.set_yticks(y, [f"{a} ({selected[a].mode})" for a in others])
        right.set_ylim(-0.6, len(others) - 0.4)
        right.axvline(0, color="black", lw=0.8)
        right.axvline(GOAL_PP, color="grey", lw=0.8, ls="--", label=f"goal +{GOAL_PP:g} pp")
        right.set(xlabel="evaluation gain over tuned cce (pp), 95% blocked CI",
                  title="tuned arms against tuned cce (held out)")
        right.legend(fontsize=8, loc="lower right")
        _save(fig, path)


def one_grid(experiments: Sequence[Experiment]) -> tuple:
    """The grid (dataset, size, seed) all ``experiments`` share; an error if they do not."""
    grids = {e.grid for e in experiments}
    if len(grids) != 1:
        raise ValueError(f"the experiments span {len(grids)} grids (datasets x sizes x seeds); a tuning study "
                         "compares one grid: select its experiments with --match")
    return next(iter(grids))


def render(candidates: Sequence[Candidate], experiments: Sequence[Experiment], notes: Sequence[str],
           figure: str, confirm: tuple[Sequence[Candidate], Sequence[Experiment]] | None = None) -> str:
    selected = select(candidates)
    best, rows = comparisons(selected)
    grid = one_grid(experiments)
    datasets = sorted({d for d, _, _ in grid}, key=dataset_order)
    head = [
        "# Tuning study: the strongest recipe per arm, selected on the development split", "",
        (f"{len(experiments)} DVC experiment(s) on one grid: {len(datasets)} datasets ({', '.join(datasets)}), "
         f"sizes {sorted({s for _, s, _ in grid})}, seeds {sorted({k for _, _, k in grid})}. Every arm × "
         "configuration × inference mode is a candidate; each arm's candidate with the highest mean development "
         "accuracy is its tuned recipe. Nothing is chosen on the evaluation set."), "", f"![tuning]({figure})"]
    where = f"protocol `{(experiments[0].params or {}).get('sample.protocol')}`"
    also = None
    if confirm and confirm[1]:
        again = replicate(selected, confirm[0])
        also = (f"protocol `{(confirm[1][0].params or {}).get('sample.protocol')}` (the same recipes)",
                comparisons(again, best=best if best in again else None)[1])
    sections = ["\n".join(head), goals_section(best, rows, where, also), sweep_section(candidates, selected),
                heldout_section(selected, best, rows)]
    if confirm and confirm[1]:
        sections.append(confirm_section(selected, best, *confirm))
    return "\n\n".join(sections
                       + (["Notes:\n\n" + "\n".join(f"- {n}" for n in notes)] if notes else [])) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Write reports/tuning.md from the sweep's DVC experiments.")
    ap.add_argument("--out", type=Path, required=True, help="markdown file, e.g. reports/tuning.md")
    ap.add_argument("--figure", type=Path, required=True, help="PNG, e.g. reports/tuning.png (not inside a stage's output: "
                    "`dvc repro` would delete it)")
    ap.add_argument("--rev", action="append", default=None,
                    help="the commit the sweep was queued from (default: HEAD); repeat for several")
    ap.add_argument("--match", default="*", help="only experiments whose name matches this glob, e.g. 'tune-*'")
    ap.add_argument("--confirm", default=None,
                    help="experiments (a glob) that ran the selected recipes again on another grid or protocol")
    ap.add_argument("--repo", default=".")
    ap.add_argument("--runs", default="data/runs")
    args = ap.parse_args(argv)
    setup_logging()
    import dvc.api
    from dvc.api import DVCFileSystem

    every, notes = select_experiments(dvc.api.exp_show(repo=args.repo, revs=args.rev))
    again = [e for e in every if args.confirm and fnmatch.fnmatchcase(e.name, args.confirm)]
    experiments = [e for e in every if fnmatch.fnmatchcase(e.name, args.match) and e not in again]
    if not experiments:
        raise SystemExit(f"error: no completed experiment named {args.match!r} from {args.rev}")
    one_grid(experiments)
    systems: dict[str, Any] = {}

    def read(e: Experiment, path: str) -> bytes:
        fs = systems.setdefault(e.rev, DVCFileSystem(args.repo, rev=e.rev or None))
        return fs.read_bytes(path)

    # The committed params the sweep was queued from: configurations are named by what differs from them.
    defaults = flatten(dvc.api.params_show(repo=args.repo, rev=(args.rev or ["HEAD"])[0]))
    candidates = collect(experiments, read, args.runs, defaults)
    confirm = (collect(again, read, args.runs, defaults), again) if again else None
    args.figure.parent.mkdir(parents=True, exist_ok=True)
    selected = select(candidates)
    write_figure(candidates, selected, args.figure)
    io.write_text(args.out, render(candidates, experiments, notes, os.path.relpath(args.figure, args.out.parent),
                                   confirm))
    log.info("wrote %s and %s from %d experiments", args.out, args.figure, len(experiments))


if __name__ == "__main__":
    main()
