"""Proxy-Anchor: proxies as anchors over the batch (Kim et al., CVPR 2020), with its Metrix form."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fewshot_dml.catalog.loss_spec import HParam, LossSpec, as_param_dtype, log1p_sum_exp, pml, positive, proxy_centres

if TYPE_CHECKING:
    import torch


def class_scores(module: Any, embeddings: torch.Tensor) -> torch.Tensor:
    """``alpha`` times the cosine to each proxy (the loss exponentiates alpha * (cos -+ margin))."""
    return module.alpha * module.get_logits(as_param_dtype(module, embeddings))


def soft(module: Any, embeddings: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Per proxy ``log(1 + sum_i p_ic e^{alpha (m - cos)})`` averaged over proxies with a positive, plus
    ``log(1 + sum_i n_ic e^{alpha (cos + m)})`` averaged over all proxies (PML's ProxyAnchorLoss)."""
    cos = module.get_logits(embeddings.to(module.proxies.dtype))
    pos_term = log1p_sum_exp(module.alpha * module.distance.margin(cos, module.margin), pos, dim=0)
    neg_term = log1p_sum_exp(module.alpha * module.distance.margin(-module.margin, cos), neg, dim=0)
    with_pos = int((pos > 0).any(dim=0).sum())
    return pos_term.sum() / max(with_pos, 1) + neg_term.sum() / module.num_classes


SPEC = LossSpec(
    name="proxyanchor",
    doc="Proxy-Anchor: proxies as anchors over the batch (Kim et al., CVPR 2020).",
    hparams={"margin": HParam("float", 0.0, 1.0), "alpha": positive()},
    factory=pml("ProxyAnchorLoss", proxies=True),
    has_proxies=True,
    class_scores=class_scores,
    centres=proxy_centres,
    soft=soft,
)
