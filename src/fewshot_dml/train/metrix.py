"""Metrix for text: interpolated examples inside a DML loss (Venkataramanan et al., ICLR 2022).

What follows the paper and its code (billpsomas/metrix):

* lambda ~ Beta(alpha, alpha), one draw per step (``mixup_data``); alpha = 2 and w = 0.4 in the paper.
* An anchor with a positive in the batch: one of its positives is mixed with a negative of the
  anchor; an anchor without one: the anchor itself is mixed with a negative. The mixed example is a
  positive of the anchor with weight lambda and a negative with weight 1 - lambda; for a proxy loss,
  a positive of the proxies of both source classes with weights lambda and 1 - lambda.
* The negative is the anchor's hardest one: the most similar by the clean embeddings (the code's
  input mixing, ``top_k=1``).
* Loss = clean DML + w * mixed DML (the soft-label forms of each loss file's ``soft``).

Where text forces a difference:

* One mixed example per anchor (the code mixes each positive with every negative at the embedding,
  and per positive pair at the input), so input/feature mixing costs one extra pass of the batch
  through the remaining layers, which a 2-core CPU can afford.
* Mixing points: ``input`` interpolates the token embeddings (the embedding layer's output, where
  the code mixed pixels), ``feature`` the hidden states after encoder layer k, ``embedding`` the
  pooled sentence embedding. Sentences have different lengths: positions are mixed as they stand
  and the attention mask is the union of the two (a token of either sentence is attended to).
* SupCon (not in the paper) is a softmax over candidates: a lone mixed candidate would have
  probability 1 and no loss, so its mixed term is SupCon over the clean batch plus the mixed
  examples (each a positive of its anchor with weight lambda).
* The code picks the anchor-with-positive or the anchor-without case at random per step; in a
  class-balanced batch every anchor has a positive, so each anchor's case is decided by its batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from fewshot_dml.config.loss_sections import MetrixParams

_STREAM = 0x4D58  # Metrix draws from its own stream of the run's seed, so both arms see the same batches


class Mixing(NamedTuple):
    """Which rows are mixed: example m is ``lam * x[first[m]] + (1 - lam) * x[second[m]]``, compared
    with anchor ``anchor[m]`` (``first`` is a positive of the anchor, or the anchor itself)."""

    anchor: torch.Tensor
    first: torch.Tensor
    second: torch.Tensor
    lam: float


def choose(labels: torch.Tensor, embeddings: torch.Tensor, lam: float, rng: np.random.Generator) -> Mixing:
    """One mixed example per anchor that has a negative in the batch (see the module docstring)."""
    labels_np = labels.detach().cpu().numpy()
    normed = F.normalize(embeddings.detach().float(), dim=1)
    sim = (normed @ normed.T).cpu().numpy()
    anchors, firsts, seconds = [], [], []
    for a, y in enumerate(labels_np):
        negatives = np.flatnonzero(labels_np != y)
        if negatives.size == 0:
            continue
        positives = np.flatnonzero(labels_np == y)
        positives = positives[positives != a]
        anchors.append(a)
        firsts.append(int(positives[rng.integers(positives.size)]) if positives.size else a)
        seconds.append(int(negatives[np.argmax(sim[a, negatives])]))
    device = labels.device
    as_index = lambda xs: torch.as_tensor(xs, dtype=torch.int64, device=device)  # noqa: E731
    return Mixing(as_index(anchors), as_index(firsts), as_index(seconds), lam)


def interpolate(x: torch.Tensor, mixing: Mixing) -> torch.Tensor:
    """``lam * x[first] + (1 - lam) * x[second]`` along the first dimension (gradients reach both)."""
    return mixing.lam * x[mixing.first] + (1.0 - mixing.lam) * x[mixing.second]


def pair_weights(mixing: Mixing, n_anchors: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(anchors, mixed) weights: mixed m is a positive of its anchor with lambda, a negative with 1 - lambda."""
    m = len(mixing.anchor)
    pos = torch.zeros(n_anchors, m, device=mixing.anchor.device)
    pos[mixing.anchor, torch.arange(m, device=pos.device)] = mixing.lam
    neg = torch.zeros_like(pos)
    neg[mixing.anchor, torch.arange(m, device=pos.device)] = 1.0 - mixing.lam
    return pos, neg


def proxy_weights(mixing: Mixing, labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(mixed, classes) weights: a positive of the first source's class with lambda and of the second's
    with 1 - lambda, a negative of each class with one minus its positive weight."""
    m = len(mixing.first)
    rows = torch.arange(m, device=labels.device)
    pos = torch.zeros(m, num_classes, device=labels.device)
    for source, weight in ((mixing.first, mixing.lam), (mixing.second, 1.0 - mixing.lam)):
        pos.index_put_((rows, labels[source]), torch.full((m,), weight, device=labels.device), accumulate=True)
    return pos, 1.0 - pos


class Metrix:
    """The mixed term of one run: draws lambda and the pairs, mixes at the configured point, scores."""

    def __init__(self, params: MetrixParams, seed: int) -> None:
        self.params = params
        self.rng = np.random.default_rng([seed, _STREAM])

    @property
    def hidden_layer(self) -> int | None:
        """The layer whose output the forward must expose (None: the pooled embedding suffices)."""
        return {"input": 0, "feature": self.params.layer, "embedding": None}[self.params.point]

    def mixed_embeddings(
        self,
        pooled: torch.Tensor,
        labels: torch.Tensor,
        hidden: torch.Tensor | None,
        mask: torch.Tensor | None,
        resume: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor] | None,
    ) -> tuple[torch.Tensor, Mixing]:
        """The pooled embeddings of the mixed examples (M, D) and how they were made."""
        lam = float(self.rng.beta(self.params.alpha, self.params.alpha))
        mixing = choose(labels, pooled, lam, self.rng)
        if self.hidden_layer is None:
            return interpolate(pooled, mixing), mixing
        if hidden is None or mask is None or resume is None:
            raise ValueError(
                f"Metrix at point {self.params.point!r} needs the hidden states after layer "
                f"{self.hidden_layer} and a way to resume the encoder from them"
            )
        union = torch.maximum(mask[mixing.first], mask[mixing.second])
        return resume(interpolate(hidden, mixing), union, self.hidden_layer), mixing
