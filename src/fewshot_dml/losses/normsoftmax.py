"""Normalised softmax on cosine to class weights (Zhai & Wu, BMVC 2019)."""

from __future__ import annotations

from fewshot_dml.catalog.loss_spec import LossSpec, pml, positive, weight_centres, weight_scores

SPEC = LossSpec(
    name="normsoftmax",
    doc="Normalised softmax on cosine to class weights (Zhai & Wu, BMVC 2019).",
    hparams={"temperature": positive()},
    factory=pml("NormalizedSoftmaxLoss", proxies=True),
    has_proxies=True,
    class_scores=weight_scores,
    centres=weight_centres,
)
