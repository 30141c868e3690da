"""The keys of ``reports/metrics.json``: one place for the writer (the aggregate stage) and the readers
(the study tools). ``docs/architecture.md`` documents each key.

The file maps each dataset, and ``overall``, to fields. An arm is named by its role (``cce``, ``setfit``,
``dml``), whichever DML loss the experiment runs.
"""

from __future__ import annotations

from fewshot_dml.catalog.arms import BASELINE, DML, ROLES, SETFIT

METRICS_FILE = "metrics.json"  # reports/metrics.json (the reports folder is dvc.yaml's)
OVERALL = "overall"  # the entry over every dataset
PROXY = f"{DML}_proxy"  # the DML arm's proxy-mixture accuracy (losses with proxies only)
MAJORITY = "majority"  # the majority-class accuracy of the evaluation sets


def dev(role: str) -> str:
    """The development accuracy field of ``role``."""
    return f"dev_{role}"


def gain_fields(prefix: str) -> tuple[str, ...]:
    """The fields of one paired comparison: gain and interval (pp), exact p, Holm-adjusted p."""
    return (f"{prefix}_pp", f"{prefix}_low_pp", f"{prefix}_high_pp", f"{prefix}_p", f"{prefix}_p_holm")


GAIN = "gain"  # DML over CCE
SETFIT_GAIN = "setfit_gain"  # SetFit over CCE
VS_SETFIT = "vs_setfit"  # DML over SetFit
COMPARISONS = ((GAIN, DML, BASELINE), (SETFIT_GAIN, SETFIT, BASELINE), (VS_SETFIT, DML, SETFIT))
# Means over each dataset's runs, averaged again over datasets for `overall`.
MEANS = (*ROLES, PROXY, MAJORITY, *(dev(r) for r in ROLES))
# What the cross-experiment study reads of each experiment.
STUDY_FIELDS = (*ROLES, PROXY, *(dev(r) for r in ROLES), *gain_fields(GAIN)[:3], f"{GAIN}_p_holm", "won", "lost", "cells", "n")
