"""Contrastive (pair margin) loss (Hadsell et al., CVPR 2006), with its Metrix form."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fewshot_dml.catalog.loss_spec import LossSpec, mean_nonzero, nonnegative, pml

if TYPE_CHECKING:
    import torch


def soft(module: Any, anchors: torch.Tensor, candidates: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """``p * [d - m_pos]_+`` and ``n * [m_neg - d]_+`` on PML's distance (L2 of normalised vectors),
    each averaged over its non-zero terms (PML's ContrastiveLoss reduction), then summed."""
    import torch

    dist = module.distance(anchors, candidates)
    pos_terms = pos * torch.relu(module.distance.margin(dist, module.pos_margin))
    neg_terms = neg * torch.relu(module.distance.margin(module.neg_margin, dist))
    return mean_nonzero(pos_terms[pos > 0]) + mean_nonzero(neg_terms[neg > 0])


SPEC = LossSpec(
    name="contrastive",
    doc="Contrastive (pair margin) loss (Hadsell et al., CVPR 2006).",
    hparams={"pos_margin": nonnegative(), "neg_margin": nonnegative()},
    factory=pml("ContrastiveLoss"),
    needs_pairs=True,
    soft=soft,
)
