"""The sections of a sweep's tuning report: the sweep, the held-out comparison, a confirmation on another
protocol, and the study's goals (see :mod:`fewshot_dml.studies.tuning_report`)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fewshot_dml.catalog.arms import BASELINE, PEERS, SETFIT
from fewshot_dml.config.sections import AggregateParams, dataset_order
from fewshot_dml.core.markdown import fmt_p, pct, table
from fewshot_dml.studies.experiments import Experiment, one_grid
from fewshot_dml.studies.tuning import GOAL_PP, Candidate, comparisons, replicate


def _interval(r: Any) -> str:
    ci = "" if math.isnan(r.ci_low_pp) else f" [{r.ci_low_pp:+.2f}, {r.ci_high_pp:+.2f}]"
    return f"{r.gain_pp:+.2f}{ci}"


def arm_names(candidates: Sequence[Candidate]) -> list[str]:
    return list(dict.fromkeys([*[a for a in PEERS if any(c.arm == a for c in candidates)], *(c.arm for c in candidates)]))


def sweep_section(candidates: Sequence[Candidate], selected: Mapping[str, Candidate]) -> str:
    """Per arm and configuration: its best inference mode on dev, and how many candidates the arm had."""
    rows = []
    for arm in arm_names(candidates):
        mine = [c for c in candidates if c.arm == arm]
        for config in dict.fromkeys(c.config for c in mine):
            pool = [c for c in mine if c.config == config]
            best = max(pool, key=lambda c: c.mean_dev)  # first on ties, as the selection
            mark = " ✓" if best is selected[arm] else ""
            rows.append([f"`{arm}`{mark}", config, f"`{best.experiment}`", best.mode, pct(best.mean_dev), pct(best.mean_eval), len(pool)])
    from scipy.stats import spearmanr

    rho = spearmanr([c.mean_dev for c in candidates], [c.mean_eval for c in candidates]).statistic
    budget = ", ".join(
        f"`{a}` {len({c.config for c in candidates if c.arm == a})} configuration(s) × "
        f"{len({c.mode for c in candidates if c.arm == a})} mode(s)"
        for a in arm_names(candidates)
    )
    return "\n".join(
        [
            "## What was swept, and what the development split selected",
            "",
            (
                "Each row is one configuration of an arm (named by the params that differ from the committed "
                "defaults the sweep was queued from), shown with its best inference mode on the development split "
                "(mean over datasets of the mean over seeds). ✓ marks the arm's selected candidate. The evaluation "
                "column is shown for every row for transparency; it chose nothing."
            ),
            "",
            table(["arm", "configuration", "experiment", "best mode on dev", "dev acc", "eval acc", "modes tried"], rows),
            "",
            f"Budget (configurations × inference modes): {budget}.",
            "",
            (
                f"How far the development split can be trusted: over all {len(candidates)} candidates, the Spearman "
                f"rank correlation of mean development and mean evaluation accuracy is {rho:.2f} (descriptive, not a "
                "test: the candidates share runs). The development set is as small as the training set (LM-BFF's "
                "choice), so close calls on it are noise; the held-out comparison below is what counts."
            ),
        ]
    )


def _arm_table(selected: Mapping[str, Candidate]) -> str:
    datasets = sorted({d for c in selected.values() for d, _, _ in c.eval}, key=dataset_order)

    def per_dataset(c: Candidate, d: str) -> str:
        return pct(float(np.mean([v for (dd, _, _), v in c.eval.items() if dd == d])))

    return table(
        ["arm", "configuration", "mode", "dev acc", *datasets, "mean"],
        [
            [
                f"`{a}`",
                selected[a].config,
                selected[a].mode,
                pct(selected[a].mean_dev),
                *(per_dataset(selected[a], d) for d in datasets),
                pct(selected[a].mean_eval),
            ]
            for a in arm_names(list(selected.values()))
        ],
    )


def _tests_table(rows: Sequence[dict], agg: AggregateParams) -> str:
    return table(
        ["comparison", "family", "n pairs", f"gain (pp) [{agg.confidence:.0%} CI]", "sign-flip p", "Holm p", "verdict"],
        [
            [
                f"`{r['treated']}` − `{r['baseline']}`",
                "confirmatory" if r["primary"] else "secondary",
                r["result"].n,
                _interval(r["result"]),
                fmt_p(r["result"].p_value),
                fmt_p(r["p_holm"]),
                _verdict(r, agg),
            ]
            for r in rows
        ],
    )


def _tests_text(best: str | None, agg: AggregateParams) -> str:
    return (
        f"Paired by (dataset, seed); blocked over datasets (randomised-block {agg.confidence:.0%} t-interval, "
        "variance pooled within datasets; sign-flip permutation test stratified by dataset). Holm's correction "
        f"within each family: the confirmatory family is the best DML arm on dev (`{best}`) against `cce` and "
        f"`setfit`; every other comparison is secondary. A gain is called only where its Holm p < {agg.alpha:g}."
    )


def heldout_section(selected: Mapping[str, Candidate], best: str | None, rows: Sequence[dict], agg: AggregateParams) -> str:
    return "\n".join(
        [
            "## Held-out comparison of the tuned arms",
            "",
            "Evaluation accuracy (%) of each arm's dev-selected recipe, mean over seeds per dataset.",
            "",
            _arm_table(selected),
            "",
            _tests_text(best, agg),
            "",
            _tests_table(rows, agg),
        ]
    )


def confirm_section(
    selected: Mapping[str, Candidate],
    best: str | None,
    candidates: Sequence[Candidate],
    experiments: Sequence[Experiment],
    agg: AggregateParams,
) -> str:
    """The selected recipes run again on another grid or protocol (e.g. SetFit's per-class splits)."""
    grid = one_grid(experiments)
    params = experiments[0].params or {}
    again = replicate(selected, candidates)
    missing = [f"`{a}`" for a in selected if a not in again]
    _, rows = comparisons(again, agg, best=best if best in again else None)
    datasets = sorted({d for d, _, _ in grid}, key=dataset_order)
    return "\n".join(
        [
            f"## The tuned recipes on protocol `{params.get('sample.protocol')}`, sizes {sorted({s for _, s, _ in grid})}",
            "",
            (
                f"The same recipes (configuration and inference mode, nothing re-selected) run again in "
                f"{', '.join(f'`{e.name}`' for e in experiments)}: {len(datasets)} datasets, seeds "
                f"{sorted({k for _, _, k in grid})}, `sample.protocol={params.get('sample.protocol')}` "
                "(for `per_class`: the size is examples per class, SetFit's own protocol)."
                + (f" Not run there: {', '.join(missing)}." if missing else "")
            ),
            "",
            _arm_table(again),
            "",
            _tests_text(best, agg),
            "",
            _tests_table(rows, agg),
        ]
    )


def _verdict(r: Mapping[str, Any], agg: AggregateParams) -> str:
    p, gain = r["p_holm"], r["result"].gain_pp
    if p is None or p >= agg.alpha:
        return "cannot tell"
    return "better" if gain > 0 else "worse"


def goals_section(
    best: str | None, rows: Sequence[dict], where: str, agg: AggregateParams, also: tuple[str, Sequence[dict]] | None = None
) -> str:
    """Each target of the issue against the confirmatory tests (``also``: the same tests on another protocol)."""
    lines = ["## The issue's goals", ""]
    if also:
        lines += [
            (
                "Both targets are for the best DML arm on dev; the SetFit target is stated for SetFit's own "
                "per-class splits (8 examples per class), so the second protocol's SetFit line is the one that "
                "answers it."
            ),
            "",
        ]
    for label, family in ((where, rows), *([also] if also else [])):
        for base, what in ((BASELINE, "tuned CCE"), (SETFIT, "SetFit")):
            r = next((r for r in family if r["primary"] and r["baseline"] == base), None)
            if r is None:
                lines.append(f"- {label}: best DML arm vs {what}: not measured (no such arm).")
                continue
            res = r["result"]
            met = res.gain_pp >= GOAL_PP and r["p_holm"] is not None and r["p_holm"] < agg.alpha
            lines.append(
                f"- {label}: `{best}` vs {what}: {_interval(res)} pp (blocked {agg.confidence:.0%} CI, {res.n} "
                f"pairs, Holm p = {fmt_p(r['p_holm'])}); the target is ≥ +{GOAL_PP:g} pp with a significant "
                f"blocked test: **{'met' if met else 'not met'}**"
                + ("" if met else f", {GOAL_PP - res.gain_pp:.2f} pp short of the target point")
                + "."
            )
    return "\n".join(lines)
