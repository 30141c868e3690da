"""Multi-Similarity loss with pair weighting (Wang et al., CVPR 2019), with its Metrix form."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fewshot_dml.catalog.loss_spec import HParam, LossSpec, log1p_sum_exp, pml, positive

if TYPE_CHECKING:
    import torch


def soft(module: Any, anchors: torch.Tensor, candidates: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Per anchor ``1/alpha log(1 + sum p e^{alpha (base - s)}) + 1/beta log(1 + sum n e^{beta (s - base)})``,
    averaged over anchors (Metrix eq. 9; PML's MultiSimilarityLoss when weights are 0/1)."""
    sim = module.distance(anchors, candidates)
    pos_loss = log1p_sum_exp(module.alpha * module.distance.margin(sim, module.base), pos, dim=1) / module.alpha
    neg_loss = log1p_sum_exp(module.beta * module.distance.margin(module.base, sim), neg, dim=1) / module.beta
    return (pos_loss + neg_loss).mean()


SPEC = LossSpec(
    name="multisimilarity",
    doc="Multi-Similarity loss with pair weighting (Wang et al., CVPR 2019).",
    hparams={"alpha": positive(), "neg_beta": positive(), "base": HParam("float", -1.0, 1.0)},
    factory=pml("MultiSimilarityLoss", rename={"neg_beta": "beta"}),
    needs_pairs=True,
    soft=soft,
)
