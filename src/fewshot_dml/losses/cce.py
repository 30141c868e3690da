"""CCE: cross-entropy on the classification head alone, the baseline arm of every experiment."""

from __future__ import annotations

from fewshot_dml.catalog.arms import BASELINE, KIND_BASELINE
from fewshot_dml.catalog.loss_spec import baseline_spec

SPEC = baseline_spec(BASELINE, "Cross-entropy on the classification head alone: the baseline arm.", {}, KIND_BASELINE)
