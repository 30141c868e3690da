"""SoftTriple: several learned centres per class (Qian et al., ICCV 2019)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fewshot_dml.catalog.loss_spec import HParam, LossSpec, as_param_dtype, nonnegative, pml, positive

if TYPE_CHECKING:
    import torch


def class_scores(module: Any, embeddings: torch.Tensor) -> torch.Tensor:
    """``la`` times get_logits (per-class similarity: a softmax over the class's centres, weighted sum),
    as compute_loss scales them before its cross-entropy; the margin is training-only."""
    return module.la * module.get_logits(as_param_dtype(module, embeddings))


def centres(module: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``fc`` (D, C*K); get_logits views the similarities as (N, C, K), so column j is class j // K."""
    import torch

    rows = module.fc.detach().t()
    return rows, torch.arange(rows.shape[0]) // module.centers_per_class


SPEC = LossSpec(
    name="softtriple",
    doc="SoftTriple: several learned centres per class (Qian et al., ICCV 2019).",
    hparams={
        "centers_per_class": HParam("int", 1, 100),
        "la": positive(),
        "gamma": positive(),
        "margin": nonnegative(),
    },
    factory=pml("SoftTripleLoss", proxies=True),
    has_proxies=True,
    class_scores=class_scores,
    centres=centres,
)
