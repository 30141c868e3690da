"""DML losses: the registry (torch-free, used by params validation) and the training objective.

The objective lives in :mod:`fewshot_dml.train.objective` and is not imported here, so that
``import fewshot_dml.losses.registry`` stays free of torch.
"""

from __future__ import annotations

from fewshot_dml.losses.registry import LOSSES, HParam, LossSpec, describe, get_spec

__all__ = ["LOSSES", "HParam", "LossSpec", "describe", "get_spec"]
