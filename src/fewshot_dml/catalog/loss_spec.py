"""What a loss file declares: :class:`LossSpec`, its hyperparameters, and the helpers most losses share.

A loss is one module in :mod:`fewshot_dml.losses` holding a ``SPEC``: its params schema (each key of
``losses.<name>`` in ``params.yaml`` besides the common ``beta``, ``dml_on`` and ``proxy_lr``), how to
build the module, and, for a loss with proxies, its class scores and centres; for a loss with a
Metrix form, its soft-label form. Importing this module (or a loss file) does not import torch or
pytorch-metric-learning (``params.yaml`` is validated against the specs): they are imported inside
the functions that need them.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from fewshot_dml.catalog.arms import KIND_BASELINE, KIND_DML, KIND_SETFIT, KINDS

if TYPE_CHECKING:
    import torch


class HParam(NamedTuple):
    """A hyperparameter's type and range: ``low <= value <= high`` (``low < value`` if ``low_open``);
    None = unbounded. The same range vocabulary as the params dataclasses' fields."""

    kind: str  # "float" | "int" | "bool" | "str"
    low: float | None = None
    high: float | None = None
    low_open: bool = False


def positive(kind: str = "float") -> HParam:
    """A strictly positive number."""
    return HParam(kind, 0.0, None, low_open=True)


def nonnegative(kind: str = "float") -> HParam:
    """A number >= 0."""
    return HParam(kind, 0.0, None)


Build = Callable[[int, int, Mapping[str, Any]], "torch.nn.Module | None"]
ClassScores = Callable[["torch.nn.Module", "torch.Tensor"], "torch.Tensor"]
Centres = Callable[["torch.nn.Module"], "tuple[torch.Tensor, torch.Tensor]"]
Soft = Callable[..., "torch.Tensor"]


@dataclass(frozen=True)
class LossSpec:
    """One loss: its schema, capabilities and callables (see the module docstring)."""

    name: str
    doc: str  # one line: what the loss is and where it comes from
    hparams: Mapping[str, HParam]
    factory: Build  # (num_classes, emb_dim, hparams) -> module; None for the peer arms
    has_proxies: bool = False  # learnable proxies / centres / class weights inside the loss module
    needs_pairs: bool = False  # needs a positive pair (and a negative one) in a batch
    # (module, embeddings) -> (N, C) class scores, higher = more likely; given iff the loss has proxies.
    class_scores: ClassScores | None = None
    # (module) -> (the learned proxies / centres / class weights as (P, D) rows, the class of each (P,));
    # given iff the loss has proxies. The analysis maps them beside the embeddings.
    centres: Centres | None = None
    # Its soft-label form for Metrix's mixed examples: (module, anchors, candidates, pos, neg) for a pair
    # loss and (module, embeddings, pos, neg) for a proxy loss; None: the loss has no Metrix form.
    soft: Soft | None = None
    # True: the mixed examples are scored among the clean batch (a softmax over one candidate is
    # always 1, so SupCon's mixed term is SupCon over the batch plus the mixed examples).
    soft_in_batch: bool = False
    # Who trains the arm (catalog.arms): a DML loss added to CCE, CCE alone, or the SetFit library.
    kind: str = KIND_DML

    def __post_init__(self) -> None:
        object.__setattr__(self, "hparams", types.MappingProxyType(dict(self.hparams)))
        if self.kind not in KINDS:
            raise AssertionError(f"loss {self.name!r}: kind {self.kind!r}; expected one of {list(KINDS)}")
        if not self.has_proxies == (self.class_scores is not None) == (self.centres is not None):
            raise AssertionError(f"loss {self.name!r}: class scores and centres must be given iff it has proxies")
        if self.soft_in_batch and self.soft is None:
            raise AssertionError(f"loss {self.name!r}: soft_in_batch without a soft form")

    def build(self, num_classes: int, emb_dim: int, hparams: Mapping[str, Any]) -> torch.nn.Module | None:
        """The loss module for a model's shapes; ``hparams`` must hold exactly the declared keys."""
        if sorted(hparams) != sorted(self.hparams):
            raise ValueError(f"loss {self.name!r}: hyperparameters {sorted(hparams)}; expected exactly {sorted(self.hparams)}")
        return self.factory(num_classes, emb_dim, hparams)

    @property
    def has_metrix(self) -> bool:
        """Whether Metrix can be applied to the loss (it has a soft-label form)."""
        return self.soft is not None


def pml(cls_name: str, *, proxies: bool = False, rename: Mapping[str, str] | None = None) -> Build:
    """A factory for pytorch-metric-learning's ``losses.<cls_name>``: renames params.yaml keys to PML's
    and, for a proxy loss, passes the number of classes and the embedding size."""
    rename = dict(rename or {})

    def build(num_classes: int, emb_dim: int, hparams: Mapping[str, Any]) -> torch.nn.Module:
        from pytorch_metric_learning import losses

        kwargs = {rename.get(k, k): v for k, v in hparams.items()}
        if proxies:
            if num_classes < 1 or emb_dim < 1:
                raise ValueError(f"{cls_name}: num_classes={num_classes}, emb_dim={emb_dim}; expected both >= 1")
            kwargs.update(num_classes=num_classes, embedding_size=emb_dim)
        return getattr(losses, cls_name)(**kwargs)

    return build


def no_module(num_classes: int, emb_dim: int, hparams: Mapping[str, Any]) -> None:
    """The peer arms' ``build``: no loss module to train, save or restore."""
    return None


def baseline_spec(name: str, doc: str, hparams: Mapping[str, HParam], kind: str) -> LossSpec:
    """The spec of a peer arm (``kind`` baseline or setfit)."""
    if kind not in (KIND_BASELINE, KIND_SETFIT):
        raise AssertionError(f"{name!r}: a peer arm's kind is baseline or setfit, not {kind!r}")
    return LossSpec(name=name, doc=doc, hparams=hparams, factory=no_module, kind=kind)


def as_param_dtype(module: torch.nn.Module, embeddings: torch.Tensor) -> torch.Tensor:
    """The embeddings in the dtype of the module's parameters (PML casts its parameters to the
    embeddings' dtype; casting the embeddings instead mutates nothing)."""
    return embeddings.to(next(module.parameters()).dtype)


# Class scores and centres shared by several losses (PML's parameter names and layouts).


def weight_scores(module: Any, embeddings: torch.Tensor) -> torch.Tensor:
    """ArcFace: scale * cos(e, W_c) * |W_c| * |e| (PML's LargeMarginSoftmax scaling) without the
    angular margin; NormSoftmax: cos(e, W_c) / temperature. Both are exactly PML's get_logits."""
    return module.get_logits(as_param_dtype(module, embeddings))


def proxy_centres(module: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """ProxyAnchor, ProxyNCA: ``proxies`` (C, D), one per class."""
    import torch

    return module.proxies.detach(), torch.arange(module.proxies.shape[0])


def weight_centres(module: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """ArcFace, NormSoftmax: class weights ``W`` (D, C)."""
    import torch

    return module.W.detach().t(), torch.arange(module.W.shape[1])


# The soft-label maths shared by the Metrix forms (Venkataramanan et al., ICLR 2022): a pair counts
# as positive with weight p and negative with weight n. PML's losses only take hard (0/1) pairs, so the
# generalised forms are written by hand, in the loss files; each equals PML's loss with 0/1 weights
# (tested to float tolerance, forward and gradient).


def log1p_sum_exp(x: torch.Tensor, weights: torch.Tensor, dim: int) -> torch.Tensor:
    """``log(1 + sum_j w_j exp(x_j))`` along ``dim``; 0 where every weight is 0 (PML's ``logsumexp``
    with ``add_one=True`` and ``keep_mask = w > 0``, generalised to real weights)."""
    import torch

    keep = weights > 0
    logw = torch.log(torch.where(keep, weights, torch.ones_like(weights)))
    shifted = torch.where(keep, x + logw, torch.full_like(x, float("-inf")))
    zeros = torch.zeros_like(shifted.narrow(dim, 0, 1))
    out = torch.logsumexp(torch.cat([shifted, zeros], dim=dim), dim=dim)
    return torch.where(keep.any(dim=dim), out, torch.zeros_like(out))


def mean_nonzero(losses: torch.Tensor) -> torch.Tensor:
    """PML's AvgNonZeroReducer: the mean of the losses above zero, 0 if there is none."""
    positive = losses[losses > 0]
    return positive.mean() if positive.numel() else losses.sum() * 0.0


def hard_pair_weights(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """0/1 weights of every (anchor, candidate) pair of one batch: same class (not itself), other class."""
    import torch

    same = labels[:, None] == labels[None, :]
    pos = (same & ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)).float()
    return pos, (~same).float()
