"""The training objective: ``beta * CCE(logits) + (1 - beta) * DML``, or CCE alone.

The DML term is the registry's PML loss on the pooled embeddings, or on every token's hidden state
labelled with its sentence's class (``dml_on: tokens``, the studies' protocol, padding excluded),
plus, with Metrix, ``weight`` times the loss's soft-label form on interpolated examples.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F

from fewshot_dml.catalog.arms import BASELINE, KIND_SETFIT
from fewshot_dml.catalog.loss_spec import LossSpec, hard_pair_weights
from fewshot_dml.config.loss_sections import LossParams
from fewshot_dml.losses import get_spec
from fewshot_dml.model.classifier import Features
from fewshot_dml.model.device import full_precision
from fewshot_dml.train.metrix import Metrix, Mixing, pair_weights, proxy_weights

Resume = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]  # (hidden, mask, layer) -> pooled


class ObjectiveOutput(NamedTuple):
    total: torch.Tensor  # what to backpropagate
    cce: torch.Tensor  # unweighted cross-entropy of the head
    dml: torch.Tensor | None  # unweighted DML term (clean + w * mixed); None for cce, and for a batch without pairs
    pairs_ok: bool  # False iff a pair loss had no positive or no negative pair in the batch


def has_pairs(labels: torch.Tensor) -> bool:
    """True if the batch holds a positive pair (a class seen twice) and a negative pair (two classes).

    Without both, PML's pair losses return a zero (or positive-only) loss: training on it would
    silently drop the DML term, so the objective skips it and says so instead.
    """
    counts = torch.bincount(labels.detach().flatten().to("cpu", torch.int64))
    return bool((counts >= 2).any()) and int((counts > 0).sum()) >= 2


def token_view(features: Features, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every non-padding token's last hidden state (N_tokens, H), labelled with its sentence's class."""
    keep = features.mask.bool()
    return features.tokens[keep], labels[:, None].expand_as(keep)[keep]


class Objective(torch.nn.Module):
    """CCE on the head, plus (for a DML arm) the registry's PML loss and, optionally, Metrix."""

    def __init__(
        self, spec: LossSpec, beta: float | None, dml: torch.nn.Module | None, *, dml_on: str = "pooled", metrix: Metrix | None = None
    ) -> None:
        super().__init__()
        if spec.kind == KIND_SETFIT:
            raise ValueError(f"loss {spec.name!r} is trained by the setfit library (fewshot_dml.train.setfit), not through an Objective")
        if (dml is None) != (spec.name == BASELINE):
            raise ValueError(f"loss {spec.name!r}: a DML module is needed iff the loss is not {BASELINE!r}")
        if dml is not None and (beta is None or not 0.0 <= beta <= 1.0):
            raise ValueError(f"loss {spec.name!r}: beta={beta!r}; expected a number in [0, 1]")
        if metrix is not None and spec.soft is None:
            raise ValueError(f"loss {spec.name!r} has no soft-label form; Metrix cannot be applied to it")
        self.spec = spec
        self.beta = beta
        self.dml = dml
        self.dml_on = dml_on
        self.metrix = metrix

    @property
    def hidden_layer(self) -> int | None:
        """The encoder layer whose output the training forward must expose (for Metrix), or None."""
        return None if self.metrix is None else self.metrix.hidden_layer

    def forward(
        self,
        logits: torch.Tensor,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        features: Features | None = None,
        resume: Resume | None = None,
    ) -> ObjectiveOutput:
        cce = F.cross_entropy(logits.float(), labels)
        if self.dml is None:
            return ObjectiveOutput(total=cce, cce=cce, dml=None, pairs_ok=True)
        weighted_cce = self.beta * cce
        if self.spec.needs_pairs and not has_pairs(labels):
            return ObjectiveOutput(total=weighted_cce, cce=cce, dml=None, pairs_ok=False)
        mixed = None
        if self.metrix is not None:  # under the caller's autocast, like the clean forward
            hidden, mask = (None, None) if features is None else (features.hidden, features.mask)
            mixed = self.metrix.mixed_embeddings(embeddings, labels, hidden, mask, resume)
        if self.dml_on == "tokens":
            if features is None:
                raise ValueError("dml_on: tokens needs the token hidden states of the forward")
            dml_inputs, dml_labels = token_view(features, labels)
        else:
            dml_inputs, dml_labels = embeddings, labels
        with full_precision(embeddings.device):
            dml = self.dml(dml_inputs.float(), dml_labels)
            if mixed is not None:
                dml = dml + self.metrix.params.weight * self._mixed_loss(embeddings.float(), labels, *mixed)
        return ObjectiveOutput(total=weighted_cce + (1.0 - self.beta) * dml, cce=cce, dml=dml, pairs_ok=True)

    def _mixed_loss(self, clean: torch.Tensor, labels: torch.Tensor, mixed: torch.Tensor, mixing: Mixing) -> torch.Tensor:
        """The soft-label loss of the mixed examples: against their anchors, or the classes' proxies."""
        mixed, form = mixed.float(), self.spec.soft
        if self.spec.has_proxies:
            pos, neg = proxy_weights(mixing, labels, self.dml.num_classes)
            return form(self.dml, mixed, pos, neg)
        pos, neg = pair_weights(mixing, len(clean))
        if self.spec.soft_in_batch:
            clean_pos, clean_neg = hard_pair_weights(labels)
            mixed = torch.cat([clean, mixed])
            pos, neg = torch.cat([clean_pos, pos], dim=1), torch.cat([clean_neg, neg], dim=1)
        return form(self.dml, clean, mixed, pos, neg)

    def proxy_parameters(self) -> list[torch.nn.Parameter]:
        """The DML module's own parameters (proxies, centres, class weights): their own optimiser group."""
        return [] if self.dml is None else list(self.dml.parameters())


def build_objective(loss: LossParams, num_classes: int, emb_dim: int, *, depth: int | None = None, seed: int = 0) -> Objective:
    """The objective of ``loss`` (a validated ``losses.<name>`` section) for a model's shapes.

    ``depth`` (the encoder's layer count) bounds ``metrix.layer``; ``seed`` seeds Metrix's own draws.
    Proxies are initialised from torch's global RNG (PML's initialisers): seed before calling.
    """
    spec = get_spec(loss.base)
    dml = spec.build(num_classes, emb_dim, loss.hparams)
    if dml is not None and spec.has_proxies != any(True for _ in dml.parameters()):
        raise AssertionError(f"loss {loss.name!r}: registry says has_proxies={spec.has_proxies}, module disagrees")
    metrix = None
    if loss.metrix is not None:
        if depth is not None and loss.metrix.point == "feature" and loss.metrix.layer >= depth:
            raise ValueError(
                f"losses.{loss.name}.metrix.layer: {loss.metrix.layer} is not inside the encoder's "
                f"{depth} layers; expected 1..{depth - 1} (the embedding point mixes after the last)"
            )
        metrix = Metrix(loss.metrix, seed)
    return Objective(spec, loss.beta, dml, dml_on=loss.dml_on, metrix=metrix)
