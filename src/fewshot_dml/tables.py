"""The summary tables that ``aggregate`` computes and ``report`` renders (shared by both, owned by neither)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

MODES = ("classifier", "proxy", "prototype", "knn")  # inference modes, in report order


@dataclass(frozen=True)
class Tables:
    """Everything the reports are made of; every frame is in params order (dataset, size, arm)."""

    dml_arm: str
    accuracy: pd.DataFrame  # dataset,size,arm,mode,accuracy_mean,accuracy_std,n,flagged
    gains: pd.DataFrame  # dataset,size,mode,baseline_mode,n,gain_pp,ci_low_pp,ci_high_pp,p_value,win,note
    proxy_curve: pd.DataFrame  # dataset,size,weight,accuracy_mean,accuracy_std,n (DML arm)
    loss_curves: pd.DataFrame  # dataset,size,arm,step,loss_mean (mean over seeds)
    degenerate: pd.DataFrame  # dataset,size,seed,arm,symptom: one row per symptom of a flagged run
    confidence: float
