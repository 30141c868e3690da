"""The Python API: :class:`FewShotClassifier` (fit, predict, predict_proba, embed, save) and :func:`load`."""

from __future__ import annotations

from fewshot_dml.api.classifier import FewShotClassifier
from fewshot_dml.api.export import load_model as load

__all__ = ["FewShotClassifier", "load"]
