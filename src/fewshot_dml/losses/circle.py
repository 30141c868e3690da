"""Circle loss: self-paced pair similarity optimisation (Sun et al., CVPR 2020)."""

from __future__ import annotations

from fewshot_dml.catalog.loss_spec import HParam, LossSpec, pml, positive

SPEC = LossSpec(
    name="circle",
    doc="Circle loss: self-paced pair similarity optimisation (Sun et al., CVPR 2020).",
    hparams={"m": HParam("float", 0.0, 1.0), "gamma": positive()},
    factory=pml("CircleLoss"),
    needs_pairs=True,
)
