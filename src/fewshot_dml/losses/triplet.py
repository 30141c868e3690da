"""Triplet margin loss over all batch triplets (Schroff et al., FaceNet, CVPR 2015)."""

from __future__ import annotations

from fewshot_dml.catalog.loss_spec import LossSpec, nonnegative, pml

SPEC = LossSpec(
    name="triplet",
    doc="Triplet margin loss over all batch triplets (Schroff et al., FaceNet, CVPR 2015).",
    hparams={"margin": nonnegative()},
    factory=pml("TripletMarginLoss"),
    needs_pairs=True,
)
