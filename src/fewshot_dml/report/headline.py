"""``reports/headline.json``: the answer on one screen, the first metrics file ``dvc exp show`` lists.

``reports/metrics.json`` holds every dataset's numbers. This file holds the ~20 numbers a reader
compares between experiments. ``loss_name`` says which DML loss the experiment compared; the other keys
call its arm ``loss`` (``acc_loss``, ``loss_vs_cce_pp``), the same in every experiment, so that
experiments with different losses line up in one column each (keys named after each loss would give
every loss its own columns, and two experiments would no longer fit one screen):

- each arm's mean accuracy (classifier, averaged over datasets) and development accuracy;
- the DML loss's gain over CCE and over SetFit in pp, with the blocked interval and Holm's p;
- ``verdict``: ``gain`` or ``loss`` only where Holm's p is below ``aggregate.alpha``, else ``not shown``;
  ``not called`` where more than ``summary.MAX_DEGENERATE`` (10%) of either arm's runs are degenerate;
- how many cells the loss won and lost after Holm, and how many runs were flagged degenerate.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fewshot_dml.catalog.arms import BASELINE, DML, ROLES, SETFIT
from fewshot_dml.report import schema, summary

HEADLINE_FILE = "headline.json"  # reports/headline.json
LOSS = "loss"  # what the keys call the DML arm (its name is the value of ``loss_name``)


# the results' verdict, in the headline's words
_WORDS = {"won": "gain", "lost": "loss", "not shown": "not shown", summary.NOT_CALLED: summary.NOT_CALLED}


def verdict(gain_pp: float | None, p_holm: float | None, alpha: float, called: str | None = None) -> str:
    """``gain``/``loss`` where Holm's p is below ``alpha``; ``not shown`` otherwise (or undefined): the
    rule of :func:`fewshot_dml.report.summary.verdict`, which the per-cell verdicts follow. ``called`` is
    the overall table's verdict where it has one (``not called``: too many degenerate runs)."""
    if called == summary.NOT_CALLED:
        return summary.NOT_CALLED
    return "not shown" if gain_pp is None else _WORDS[summary.verdict(gain_pp, p_holm, alpha)]


def headline(
    metrics: Mapping[str, Mapping[str, float]], loss: str, alpha: float, called: Mapping[tuple[str, str], str] | None = None
) -> dict[str, Any]:
    """The headline of ``metrics`` (what :func:`~fewshot_dml.report.aggregate.metrics_summary` returns);
    ``called``: the overall verdict per (treated, baseline) role pair, from the summary's overall table."""
    called = called or {}
    overall = metrics[schema.OVERALL]
    name = {BASELINE: BASELINE, SETFIT: SETFIT, DML: LOSS}
    out: dict[str, Any] = {"loss_name": loss}
    out.update({f"acc_{name[role]}": overall.get(role) for role in ROLES})
    for prefix, treated, baseline in (c for c in schema.COMPARISONS if c[1] == DML):
        key = f"{name[treated]}_vs_{name[baseline]}"
        gain, low, high, _, p_holm = (overall.get(field) for field in schema.gain_fields(prefix))
        out.update({f"{key}_pp": gain, f"{key}_low_pp": low, f"{key}_high_pp": high, f"{key}_p_holm": p_holm})
        out[f"{key}_verdict"] = verdict(gain, p_holm, alpha, called.get((treated, baseline)))
    out.update(cells=overall.get("cells"), cells_won=overall.get("won"), cells_lost=overall.get("lost"))
    out.update({f"dev_acc_{name[role]}": overall.get(schema.dev(role)) for role in ROLES})
    out["degenerate_runs"] = sum(int(overall.get(f"degenerate_{role}", 0)) for role in ROLES)
    return {key: value for key, value in out.items() if value is not None}
