"""``losses.<name>``: the common keys (``beta``, ``proxy_lr``, ``dml_on``), each loss's own
hyperparameters (declared in its loss file, :mod:`fewshot_dml.losses`), variants and Metrix."""

from __future__ import annotations

import re
import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fewshot_dml.catalog.arms import KIND_DML
from fewshot_dml.catalog.loss_spec import HParam
from fewshot_dml.config.sections import DATASET_NAME
from fewshot_dml.core.errors import ParamsError
from fewshot_dml.core.strict import check_keys, mapping, scalar
from fewshot_dml.losses import get_spec, loss_names

MIX_POINTS = ("input", "feature", "embedding")
DML_ON = ("pooled", "tokens")


@dataclass(frozen=True)
class MetrixParams:
    """Metrix (mixup for DML, Venkataramanan et al., ICLR 2022) inside a DML loss.

    ``point``: what is interpolated: the token embeddings (``input``), the hidden states after
    encoder layer ``layer`` (``feature``), or the pooled embedding (``embedding``). ``layer`` is
    always given (so ``dvc exp run -S ...metrix.point=...`` can switch points) and read by
    ``feature`` only. lambda ~ Beta(alpha, alpha) once per step; the mixed loss is weighted by ``weight``.
    """

    point: str
    layer: int
    alpha: float
    weight: float


@dataclass(frozen=True)
class LossParams:
    """One ``losses.<name>`` section: ``beta``, ``proxy_lr`` and ``dml_on`` are common, the rest per loss.

    A section whose name is not a registered loss is a variant: its ``variant_of`` key names the
    registered loss (``base`` here; ``base == name`` for a registered loss) whose hyperparameters it
    sets; ``metrix`` is optional.
    """

    name: str
    beta: float | None  # weight of CCE in beta*CCE + (1-beta)*DML; None for the baseline
    proxy_lr: float | None  # learning rate of proxies/centres; None if the loss has none
    hparams: Mapping[str, Any]
    base: str = ""
    dml_on: str = "pooled"  # the DML loss on the pooled embedding, or on every token (the studies')
    metrix: MetrixParams | None = None

    def __post_init__(self) -> None:
        if not self.base:
            object.__setattr__(self, "base", self.name)


# The keys every DML loss section has besides its own hyperparameters (one range vocabulary: HParam).
BETA = HParam("float", 0.0, 1.0)
PROXY_LR = HParam("float", 0.0, 1.0, low_open=True)
# An arm (a loss or variant) name: dataset-name words (DATASET_NAME, the one rule for names that become
# paths) joined by '-', e.g. ``supcon-metrix``. It names stages, run folders (``<dataset>-<size>-<arm>``) and files.
ARM_NAME = re.compile(rf"{DATASET_NAME.pattern}(?:-[a-z0-9_]+)*")


def check_arm_name(name: Any, where: str) -> str:
    """``name`` if it is an arm name (:data:`ARM_NAME`); ParamsError naming ``where``, the value and the pattern otherwise."""
    if not isinstance(name, str) or not ARM_NAME.fullmatch(name):
        raise ParamsError(
            f"{where}: {name!r} is not an arm name; expected a name matching {ARM_NAME.pattern} (lower-case letters, "
            "digits and '_', starting with a letter, words joined by '-'): it names stages, folders and files"
        )
    return name


def loss_section(name: str, raw: Any) -> LossParams:
    """Validate ``losses.<name>`` against its loss file's schema (a variant's: its ``variant_of``)."""
    where = f"losses.{name}"
    check_arm_name(name, where)
    values = dict(mapping(raw if raw is not None else {}, where))
    base = values.pop("variant_of", None)
    if name in loss_names():
        if base is not None:
            raise ParamsError(f"{where}.variant_of: {name!r} is a registered loss; only a variant (a new name) has one")
        base = name
    elif base is None:
        raise ParamsError(
            f"{where}: unknown loss {name!r}; expected one of {list(loss_names())}, or a variant with a `variant_of` key naming one of them"
        )
    try:
        loss_spec = get_spec(base if isinstance(base, str) else repr(base))
    except KeyError as err:
        raise ParamsError(f"{where}.variant_of: {err.args[0]}") from None
    if loss_spec.kind != KIND_DML and name != base:
        raise ParamsError(f"{where}.variant_of: {base!r} is a peer arm, not a DML loss; a variant needs a DML loss")
    metrix_raw = values.pop("metrix", None)
    declared: dict[str, HParam] = dict(loss_spec.hparams)
    if loss_spec.kind == KIND_DML:
        declared["beta"] = BETA
        declared["dml_on"] = HParam("str")
        if loss_spec.has_proxies:
            declared["proxy_lr"] = PROXY_LR
    check_keys(values, declared, where)
    for key, hp in declared.items():
        values[key] = scalar(values[key], hp.kind, hp.low, hp.high, f"{where}.{key}", hp.low_open)
    common: dict[str, Any] = {key: values.pop(key, None) for key in ("beta", "proxy_lr")}
    dml_on = values.pop("dml_on", "pooled")
    if dml_on not in DML_ON:
        raise ParamsError(f"{where}.dml_on: {dml_on!r} is not allowed; expected one of {list(DML_ON)}")
    metrix = None
    if metrix_raw is not None:
        if not loss_spec.has_metrix:
            with_form = [n for n in loss_names() if get_spec(n).has_metrix]
            raise ParamsError(f"{where}.metrix: loss {base!r} has no Metrix form; expected a base in {with_form}")
        if dml_on != "pooled":
            raise ParamsError(f"{where}.metrix: Metrix mixes sentence embeddings; expected dml_on: pooled, got {dml_on!r}")
        metrix = metrix_section(metrix_raw, f"{where}.metrix")
    return LossParams(name=name, hparams=types.MappingProxyType(values), base=base, dml_on=dml_on, metrix=metrix, **common)


def metrix_section(raw: Any, where: str) -> MetrixParams:
    """Validate ``losses.<variant>.metrix``."""
    values = dict(mapping(raw, where))
    check_keys(values, {"point": None, "layer": None, "alpha": None, "weight": None}, where)
    point = values["point"]
    if point not in MIX_POINTS:
        raise ParamsError(f"{where}.point: {point!r} is not allowed; expected one of {list(MIX_POINTS)}")
    return MetrixParams(
        point=point,
        layer=scalar(values["layer"], "int", 1, 1000, f"{where}.layer"),
        alpha=scalar(values["alpha"], "float", 0, None, f"{where}.alpha", low_open=True),
        weight=scalar(values["weight"], "float", 0, None, f"{where}.weight", low_open=True),
    )
