"""N-pair loss: one positive against N-1 negatives (Sohn, NeurIPS 2016)."""

from __future__ import annotations

from fewshot_dml.catalog.loss_spec import LossSpec, pml

SPEC = LossSpec(
    name="npairs",
    doc="N-pair loss: one positive against N-1 negatives (Sohn, NeurIPS 2016).",
    hparams={},
    factory=pml("NPairsLoss"),
    needs_pairs=True,
)
