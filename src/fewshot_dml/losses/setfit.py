"""SetFit (Tunstall et al., 2022): the peer arm, trained by the setfit library (fewshot_dml.train.setfit)."""

from __future__ import annotations

from fewshot_dml.catalog.arms import KIND_SETFIT, SETFIT
from fewshot_dml.catalog.loss_spec import HParam, baseline_spec, positive

SPEC = baseline_spec(
    SETFIT,
    "SetFit: contrastive pair fine-tuning + logistic-regression head (Tunstall et al., 2022); a peer arm trained by the setfit library.",
    {
        "batch_size": HParam("int", 1, 4096),
        "num_epochs": HParam("int", 1, 1000),
        "num_iterations": HParam("int", 0, 1000),  # 0 = the library's default pair sampling (oversampling)
        "body_lr": positive(),
    },
    KIND_SETFIT,
)
