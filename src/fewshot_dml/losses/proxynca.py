"""ProxyNCA: NCA against one learned proxy per class (Movshovitz-Attias et al., ICCV 2017)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fewshot_dml.catalog.loss_spec import LossSpec, as_param_dtype, pml, positive, proxy_centres

if TYPE_CHECKING:
    import torch


def class_scores(module: Any, embeddings: torch.Tensor) -> torch.Tensor:
    """``-softmax_scale`` times get_logits (squared L2 distance, LOWER = closer): NCA's softmax input."""
    return -module.softmax_scale * module.get_logits(as_param_dtype(module, embeddings))


SPEC = LossSpec(
    name="proxynca",
    doc="ProxyNCA: NCA against one learned proxy per class (Movshovitz-Attias et al., ICCV 2017).",
    hparams={"softmax_scale": positive()},
    factory=pml("ProxyNCALoss", proxies=True),
    has_proxies=True,
    class_scores=class_scores,
    centres=proxy_centres,
)
