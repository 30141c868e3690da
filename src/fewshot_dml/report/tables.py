"""The summary tables that ``aggregate`` computes and the reports render (shared by both, owned by neither)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

MODES = ("classifier", "proxy", "prototype", "knn")  # inference modes, in report order


@dataclass(frozen=True)
class Tables:
    """Everything the reports are made of; every frame is in params order (dataset, size, arm)."""

    dml_arm: str
    arms: tuple[str, ...]  # cce, setfit, the DML arm
    runs: pd.DataFrame  # dataset,size,seed,arm,<modes>,dev_accuracy,majority_accuracy: one row per run
    accuracy: pd.DataFrame  # dataset,size,arm,mode,accuracy_mean,accuracy_std,macro_f1_mean,n,dev_mean,majority_mean,flagged
    gains: pd.DataFrame  # treated,baseline,dataset,size,mode,baseline_mode,n,gain_pp,ci_*_pp,p_value,p_min,p_holm,verdict,note
    # treated,baseline,mode,cells,n,df,gain_pp,ci_*_pp,p_value,p_min,exact,across_*,degenerate_*,runs_*,p_holm,verdict
    overall: pd.DataFrame
    proxy_curve: pd.DataFrame  # dataset,size,weight,accuracy_mean,accuracy_std,n (DML arm)
    loss_curves: pd.DataFrame  # dataset,size,arm,step,loss_mean,cce_mean,dml_mean (mean over seeds)
    confusion: Mapping[tuple[str, int, str], np.ndarray]  # (dataset, size, arm) -> summed over seeds
    label_names: Mapping[str, tuple[str, ...]]  # dataset -> class names (index = label id), from run.json
    degenerate: pd.DataFrame  # dataset,size,seed,arm,symptom: one row per symptom of a flagged run
    checkpoints: pd.DataFrame  # dataset,size,seed,arm,k,of,step,steps,dev_accuracy,chosen: each run's dev checkpoints
    confidence: float
    alpha: float  # family-wise error rate of the Holm-corrected tests
