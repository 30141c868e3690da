"""DML losses over soft pair labels: a pair counts as positive with weight p and negative with weight n.

Metrix (Venkataramanan et al., ICLR 2022, section 3) writes each loss so that an interpolated example
is a positive of its anchor with weight lambda and a negative with weight 1 - lambda; for a proxy
loss, a positive of the proxies of both source classes with weights lambda and 1 - lambda.
pytorch-metric-learning's losses only take hard (0/1) pairs, so the generalised forms are written
here, once, for the four losses that have a Metrix form. Each reads its hyperparameters and
distance from the PML module it generalises, and reduces as that module does, so with 0/1 weights
it equals the library's loss (tested to float tolerance, forward and gradient).

Pair losses take ``anchors`` (A, D), ``candidates`` (K, D) and weights ``pos``, ``neg`` (A, K);
the proxy loss takes ``embeddings`` (K, D) and weights (K, C) against the C proxies.
"""

from __future__ import annotations

from typing import Any

import torch


def log1p_sum_exp(x: torch.Tensor, weights: torch.Tensor, dim: int) -> torch.Tensor:
    """``log(1 + sum_j w_j exp(x_j))`` along ``dim``; 0 where every weight is 0 (PML's ``logsumexp``
    with ``add_one=True`` and ``keep_mask = w > 0``, generalised to real weights)."""
    keep = weights > 0
    logw = torch.log(torch.where(keep, weights, torch.ones_like(weights)))
    shifted = torch.where(keep, x + logw, torch.full_like(x, float("-inf")))
    zeros = torch.zeros_like(shifted.narrow(dim, 0, 1))
    out = torch.logsumexp(torch.cat([shifted, zeros], dim=dim), dim=dim)
    return torch.where(keep.any(dim=dim), out, torch.zeros_like(out))


def _mean_nonzero(losses: torch.Tensor) -> torch.Tensor:
    """PML's AvgNonZeroReducer: the mean of the losses above zero, 0 if there is none."""
    positive = losses[losses > 0]
    return positive.mean() if positive.numel() else losses.sum() * 0.0


def contrastive(module: Any, anchors: torch.Tensor, candidates: torch.Tensor, pos: torch.Tensor,
                neg: torch.Tensor) -> torch.Tensor:
    """``p * [d - m_pos]_+`` and ``n * [m_neg - d]_+`` on PML's distance (L2 of normalised vectors),
    each averaged over its non-zero terms (PML's ContrastiveLoss reduction), then summed."""
    dist = module.distance(anchors, candidates)
    pos_terms = pos * torch.relu(module.distance.margin(dist, module.pos_margin))
    neg_terms = neg * torch.relu(module.distance.margin(module.neg_margin, dist))
    return _mean_nonzero(pos_terms[pos > 0]) + _mean_nonzero(neg_terms[neg > 0])


def multisimilarity(module: Any, anchors: torch.Tensor, candidates: torch.Tensor, pos: torch.Tensor,
                    neg: torch.Tensor) -> torch.Tensor:
    """Per anchor ``1/alpha log(1 + sum p e^{alpha (base - s)}) + 1/beta log(1 + sum n e^{beta (s - base)})``,
    averaged over anchors (Metrix eq. 9; PML's MultiSimilarityLoss when weights are 0/1)."""
    sim = module.distance(anchors, candidates)
    pos_loss = log1p_sum_exp(module.alpha * module.distance.margin(sim, module.base), pos, dim=1) / module.alpha
    neg_loss = log1p_sum_exp(module.beta * module.distance.margin(module.base, sim), neg, dim=1) / module.beta
    return (pos_loss + neg_loss).mean()


def supcon(module: Any, anchors: torch.Tensor, candidates: torch.Tensor, pos: torch.Tensor,
           neg: torch.Tensor) -> torch.Tensor:
    """``-sum_j p_j log softmax_j(s / t) / sum_j p_j`` per anchor, the softmax over every candidate with
    a positive or negative weight, averaged over anchors with a non-zero loss (PML's SupConLoss)."""
    if not (bool((pos > 0).any()) and bool((neg > 0).any())):
        return anchors.sum() * 0.0 + candidates.sum() * 0.0
    logits = module.distance(anchors, candidates) / module.temperature
    logits = logits - logits.max(dim=1, keepdim=True).values.detach()  # numerical stability only
    member = (pos + neg) > 0
    denominator = torch.logsumexp(logits.masked_fill(~member, float("-inf")), dim=1, keepdim=True)
    log_prob = torch.where(member, logits - denominator, torch.zeros_like(logits))
    mean_log_prob_pos = (pos * log_prob).sum(dim=1) / (pos.sum(dim=1) + torch.finfo(logits.dtype).tiny)
    return _mean_nonzero(-mean_log_prob_pos)


def proxyanchor(module: Any, embeddings: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Per proxy ``log(1 + sum_i p_ic e^{alpha (m - cos)})`` averaged over proxies with a positive, plus
    ``log(1 + sum_i n_ic e^{alpha (cos + m)})`` averaged over all proxies (PML's ProxyAnchorLoss)."""
    cos = module.get_logits(embeddings.to(module.proxies.dtype))
    pos_term = log1p_sum_exp(module.alpha * module.distance.margin(cos, module.margin), pos, dim=0)
    neg_term = log1p_sum_exp(module.alpha * module.distance.margin(-module.margin, cos), neg, dim=0)
    with_pos = int((pos > 0).any(dim=0).sum())
    return pos_term.sum() / max(with_pos, 1) + neg_term.sum() / module.num_classes


def hard_pair_weights(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """0/1 weights of every (anchor, candidate) pair of one batch: same class (not itself), other class."""
    same = labels[:, None] == labels[None, :]
    pos = (same & ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)).float()
    return pos, (~same).float()
