"""The DML loss registry: name -> :class:`LossSpec` (hyperparameters, capabilities, factory, scores).

Every loss is a pytorch-metric-learning (PML) loss; this module only records how to build it from
``params.yaml`` and how to read class scores out of the losses that own proxies. Importing it does
not import torch or PML (``params.py`` validates against it), so both are imported inside functions.

Keys of ``hparams`` are exactly the keys of ``losses.<name>`` in ``params.yaml`` besides ``beta``
(every DML loss) and ``proxy_lr`` (losses with proxies), which ``params.py`` adds itself. Ranges are
inclusive (``params.py`` checks ``low <= value <= high``), so strictly positive values use 1e-6.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import torch

_POSITIVE = 1e-6  # inclusive lower bound standing for "> 0"


class HParam(NamedTuple):
    kind: str  # "float" | "int" | "bool" | "str"
    low: float | None
    high: float | None


Build = Callable[[int, int, Mapping[str, Any]], "torch.nn.Module | None"]
ClassScores = Callable[["torch.nn.Module", "torch.Tensor"], "torch.Tensor"]
Centres = Callable[["torch.nn.Module"], "tuple[torch.Tensor, torch.Tensor]"]


@dataclass(frozen=True)
class LossSpec:
    name: str
    doc: str  # one line: what the loss is and where it comes from
    hparams: Mapping[str, HParam]
    has_proxies: bool  # learnable proxies / centres / class weights inside the loss module
    needs_pairs: bool  # needs a positive pair (and a negative one) in a batch
    build: Build  # (num_classes, emb_dim, hparams) -> module; None for the baseline
    class_scores: ClassScores | None  # (module, embeddings) -> (N, C), higher = more likely
    # (module) -> (the learned proxies / centres / class weights as (P, D) rows, the class of each (P,));
    # None without proxies. The analysis maps them beside the embeddings.
    centres: Centres | None = None
    # Its soft-label form for Metrix's mixed examples: the name of a function in
    # fewshot_dml.losses.soft, (module, anchors, candidates, pos, neg) for a pair loss and
    # (module, embeddings, pos, neg) for a proxy loss; None: the loss has no Metrix form.
    soft: str | None = None
    # "dml": a DML loss added to CCE (an experiment's `loss`); "baseline": CCE alone; "setfit": the
    # SetFit library's recipe (fewshot_dml.train.setfit). The last two are peer arms of every experiment.
    kind: str = "dml"
    # True: the mixed examples are scored among the clean batch (a softmax over one candidate is
    # always 1, so SupCon's mixed term is SupCon over the batch plus the mixed examples).
    soft_in_batch: bool = False


def _pml(cls_name: str, loss: str, *, proxies: bool, rename: Mapping[str, str] | None = None) -> Build:
    """A factory for PML's ``cls_name``: checks the keys, renames params.yaml keys to PML's."""
    rename = dict(rename or {})

    def build(num_classes: int, emb_dim: int, hparams: Mapping[str, Any]) -> torch.nn.Module:
        from pytorch_metric_learning import losses

        expected = sorted(LOSSES[loss].hparams)
        if sorted(hparams) != expected:
            raise ValueError(f"loss {loss!r}: hyperparameters {sorted(hparams)}; expected exactly {expected}")
        kwargs = {rename.get(k, k): v for k, v in hparams.items()}
        if proxies:
            if num_classes < 1 or emb_dim < 1:
                raise ValueError(f"loss {loss!r}: num_classes={num_classes}, emb_dim={emb_dim}; expected both >= 1")
            kwargs.update(num_classes=num_classes, embedding_size=emb_dim)
        return getattr(losses, cls_name)(**kwargs)

    return build


def _build_none(num_classes: int, emb_dim: int, hparams: Mapping[str, Any]) -> None:
    if hparams:
        raise ValueError(f"loss 'cce': hyperparameters {sorted(hparams)}; expected none")


def _build_setfit(num_classes: int, emb_dim: int, hparams: Mapping[str, Any]) -> None:
    # SetFit's settings are read by fewshot_dml.train.setfit; it has no loss module to save or restore.
    return None


# Class scores: each is the logit the loss itself feeds to its softmax/ranking, without the margin,
# so that softmax(scores) is the loss's own class posterior (used by inference's proxy mixture).


def _as_param_dtype(module: torch.nn.Module, embeddings: torch.Tensor) -> torch.Tensor:
    # PML casts its parameters to the embeddings' dtype; cast the embeddings instead (no mutation).
    return embeddings.to(next(module.parameters()).dtype)


def _scores_softtriple(module: Any, embeddings: torch.Tensor) -> torch.Tensor:
    # get_logits = per-class similarity (softmax over a class's centres, weighted sum), which
    # compute_loss scales by `la` before its cross-entropy; the margin is training-only.
    return module.la * module.get_logits(_as_param_dtype(module, embeddings))


def _scores_proxyanchor(module: Any, embeddings: torch.Tensor) -> torch.Tensor:
    # get_logits = cosine to each proxy; the loss exponentiates alpha * (cos -+ margin).
    return module.alpha * module.get_logits(_as_param_dtype(module, embeddings))


def _scores_proxynca(module: Any, embeddings: torch.Tensor) -> torch.Tensor:
    # get_logits = squared L2 distance (LOWER = closer); NCA's softmax is over -scale * distance.
    return -module.softmax_scale * module.get_logits(_as_param_dtype(module, embeddings))


def _scores_weights(module: Any, embeddings: torch.Tensor) -> torch.Tensor:
    # ArcFace: scale * cos(e, W_c) * |W_c| * |e| (PML's LargeMarginSoftmax scaling) without the
    # angular margin; NormSoftmax: cos(e, W_c) / temperature. Both are exactly PML's get_logits.
    return module.get_logits(_as_param_dtype(module, embeddings))


# Centres: where each loss keeps its class representatives (PML's parameter names and layouts).


def _centres_proxies(module: Any) -> tuple[torch.Tensor, torch.Tensor]:
    # ProxyAnchor, ProxyNCA: `proxies` (C, D), one per class.
    import torch

    return module.proxies.detach(), torch.arange(module.proxies.shape[0])


def _centres_softtriple(module: Any) -> tuple[torch.Tensor, torch.Tensor]:
    # SoftTriple: `fc` (D, C*K); get_logits views the similarities as (N, C, K), so column j is class j // K.
    import torch

    centres = module.fc.detach().t()
    return centres, torch.arange(centres.shape[0]) // module.centers_per_class


def _centres_weights(module: Any) -> tuple[torch.Tensor, torch.Tensor]:
    # ArcFace, NormSoftmax: class weights `W` (D, C).
    import torch

    return module.W.detach().t(), torch.arange(module.W.shape[1])


def _spec(name: str, doc: str, cls_name: str | None, hparams: Mapping[str, HParam], *,
          proxies: bool = False, pairs: bool = False, scores: ClassScores | None = None,
          centres: Centres | None = None,
          rename: Mapping[str, str] | None = None, metrix: bool = False, in_batch: bool = False,
          kind: str = "dml") -> LossSpec:
    build = {"dml": None, "baseline": _build_none, "setfit": _build_setfit}[kind] or _pml(
        cls_name, name, proxies=proxies, rename=rename)
    if not proxies == (scores is not None) == (centres is not None):
        raise AssertionError(f"loss {name!r}: class scores and centres must be given iff the loss has proxies")
    return LossSpec(name=name, doc=doc, hparams=types.MappingProxyType(dict(hparams)), has_proxies=proxies,
                    needs_pairs=pairs, build=build, class_scores=scores, centres=centres,
                    soft=name if metrix else None,
                    soft_in_batch=in_batch, kind=kind)


_F_POS = HParam("float", _POSITIVE, None)
_F_NONNEG = HParam("float", 0.0, None)

_SPECS = (
    _spec("cce", "Cross-entropy on the classification head alone: the baseline arm.", None, {}, kind="baseline"),
    _spec("setfit", "SetFit: contrastive pair fine-tuning + logistic-regression head (Tunstall et al., 2022); "
          "a peer arm trained by the setfit library.", None,
          {"batch_size": HParam("int", 1, 4096), "num_epochs": HParam("int", 1, 1000), "body_lr": _F_POS},
          kind="setfit"),
    _spec("softtriple", "SoftTriple: several learned centres per class (Qian et al., ICCV 2019).",
          "SoftTripleLoss", {"centers_per_class": HParam("int", 1, 100), "la": _F_POS,
                             "gamma": _F_POS, "margin": _F_NONNEG},
          proxies=True, scores=_scores_softtriple, centres=_centres_softtriple),
    _spec("proxyanchor", "Proxy-Anchor: proxies as anchors over the batch (Kim et al., CVPR 2020).",
          "ProxyAnchorLoss", {"margin": HParam("float", 0.0, 1.0), "alpha": _F_POS},
          proxies=True, scores=_scores_proxyanchor, centres=_centres_proxies, metrix=True),
    _spec("proxynca", "ProxyNCA: NCA against one learned proxy per class (Movshovitz-Attias et al., ICCV 2017).",
          "ProxyNCALoss", {"softmax_scale": _F_POS}, proxies=True, scores=_scores_proxynca, centres=_centres_proxies),
    _spec("supcon", "Supervised contrastive loss (Khosla et al., NeurIPS 2020).",
          "SupConLoss", {"temperature": _F_POS}, pairs=True, metrix=True, in_batch=True),
    _spec("triplet", "Triplet margin loss over all batch triplets (Schroff et al., FaceNet, CVPR 2015).",
          "TripletMarginLoss", {"margin": _F_NONNEG}, pairs=True),
    _spec("npairs", "N-pair loss: one positive against N-1 negatives (Sohn, NeurIPS 2016).",
          "NPairsLoss", {}, pairs=True),
    _spec("multisimilarity", "Multi-Similarity loss with pair weighting (Wang et al., CVPR 2019).",
          "MultiSimilarityLoss", {"alpha": _F_POS, "neg_beta": _F_POS, "base": HParam("float", -1.0, 1.0)},
          pairs=True, rename={"neg_beta": "beta"}, metrix=True),
    _spec("circle", "Circle loss: self-paced pair similarity optimisation (Sun et al., CVPR 2020).",
          "CircleLoss", {"m": HParam("float", 0.0, 1.0), "gamma": _F_POS}, pairs=True),
    _spec("contrastive", "Contrastive (pair margin) loss (Hadsell et al., CVPR 2006).",
          "ContrastiveLoss", {"pos_margin": _F_NONNEG, "neg_margin": _F_NONNEG}, pairs=True, metrix=True),
    _spec("arcface", "ArcFace: additive angular margin on class weights, margin in degrees (Deng et al., CVPR 2019).",
          "ArcFaceLoss", {"margin": HParam("float", 0.0, 90.0), "scale": _F_POS},
          proxies=True, scores=_scores_weights, centres=_centres_weights),
    _spec("normsoftmax", "Normalised softmax on cosine to class weights (Zhai & Wu, BMVC 2019).",
          "NormalizedSoftmaxLoss", {"temperature": _F_POS}, proxies=True, scores=_scores_weights, centres=_centres_weights),
)

LOSSES: Mapping[str, LossSpec] = types.MappingProxyType({s.name: s for s in _SPECS})


def get_spec(name: str) -> LossSpec:
    """The spec of loss ``name``; ``KeyError`` naming the valid choices otherwise."""
    try:
        return LOSSES[name]
    except (KeyError, TypeError):
        raise KeyError(f"unknown loss {name!r}; expected one of {sorted(LOSSES)}") from None


def describe() -> str:
    """A Markdown table of the registry (one row per loss), for the README."""
    rows = ["| loss | proxies | needs pairs | Metrix | hyperparameters | what |",
            "| --- | --- | --- | --- | --- | --- |"]
    for spec in LOSSES.values():
        hp = ", ".join(f"`{k}` ({h.kind})" for k, h in spec.hparams.items()) or "-"
        flags = ("yes" if spec.has_proxies else "no", "yes" if spec.needs_pairs else "no",
                 "yes" if spec.soft is not None else "no")
        rows.append(f"| `{spec.name}` | {flags[0]} | {flags[1]} | {flags[2]} | {hp} | {spec.doc} |")
    return "\n".join(rows) + "\n"
