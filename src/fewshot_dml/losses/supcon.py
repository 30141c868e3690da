"""Supervised contrastive loss (Khosla et al., NeurIPS 2020), with its Metrix form."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fewshot_dml.catalog.loss_spec import LossSpec, mean_nonzero, pml, positive

if TYPE_CHECKING:
    import torch


def soft(module: Any, anchors: torch.Tensor, candidates: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """``-sum_j p_j log softmax_j(s / t) / sum_j p_j`` per anchor, the softmax over every candidate with
    a positive or negative weight, averaged over anchors with a non-zero loss (PML's SupConLoss)."""
    import torch

    if not (bool((pos > 0).any()) and bool((neg > 0).any())):
        return anchors.sum() * 0.0 + candidates.sum() * 0.0
    logits = module.distance(anchors, candidates) / module.temperature
    logits = logits - logits.max(dim=1, keepdim=True).values.detach()  # numerical stability only
    member = (pos + neg) > 0
    denominator = torch.logsumexp(logits.masked_fill(~member, float("-inf")), dim=1, keepdim=True)
    log_prob = torch.where(member, logits - denominator, torch.zeros_like(logits))
    mean_log_prob_pos = (pos * log_prob).sum(dim=1) / (pos.sum(dim=1) + torch.finfo(logits.dtype).tiny)
    return mean_nonzero(-mean_log_prob_pos)


SPEC = LossSpec(
    name="supcon",
    doc="Supervised contrastive loss (Khosla et al., NeurIPS 2020).",
    hparams={"temperature": positive()},
    factory=pml("SupConLoss"),
    needs_pairs=True,
    soft=soft,
    soft_in_batch=True,
)
