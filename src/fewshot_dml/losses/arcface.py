"""ArcFace: additive angular margin on class weights (Deng et al., CVPR 2019)."""

from __future__ import annotations

from fewshot_dml.catalog.loss_spec import HParam, LossSpec, pml, positive, weight_centres, weight_scores

SPEC = LossSpec(
    name="arcface",
    doc="ArcFace: additive angular margin on class weights, margin in degrees (Deng et al., CVPR 2019).",
    hparams={"margin": HParam("float", 0.0, 90.0), "scale": positive()},
    factory=pml("ArcFaceLoss", proxies=True),
    has_proxies=True,
    class_scores=weight_scores,
    centres=weight_centres,
)
