"""fewshot-dml: distance-metric-learning losses for few-shot fine-tuning of text classifiers."""

from __future__ import annotations

__version__ = "0.1.0"
