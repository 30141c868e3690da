"""Typed, strict loading of ``params.yaml`` into :class:`Params`.

Every key must be declared (:mod:`fewshot_dml.config.sections`, or for ``losses.<name>`` the loss's
file); unknown keys, missing keys, wrong types and out-of-range values raise :class:`ParamsError`
naming the key path, the bad value and what was expected. A stage loads only the sections it
declares in ``dvc.yaml`` (``sections``), so a typo in ``train`` is reported by the stages that train.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fewshot_dml.catalog.arms import PEERS
from fewshot_dml.config.loss_sections import LossParams, check_arm_name, loss_section
from fewshot_dml.config.sections import (
    DATASETS,
    AggregateParams,
    AnalyzeParams,
    ExplainParams,
    FetchParams,
    InferParams,
    OwnDatasetParams,
    SampleParams,
    TrainParams,
    own_dataset_section,
)
from fewshot_dml.core.errors import ParamsError
from fewshot_dml.core.strict import check_keys, convert, load_yaml_file, mapping
from fewshot_dml.losses import loss_names as registered_losses

DML_SECTION = "losses.${loss}"  # in `sections`: the section of the configured DML loss (as dvc.yaml writes it)


@dataclass(frozen=True)
class Params:
    datasets: tuple[str, ...]
    sample_sizes: tuple[int, ...]
    seeds: tuple[int, ...]
    loss: str
    fetch: FetchParams
    sample: SampleParams
    train: TrainParams
    losses: Mapping[str, LossParams]
    infer: InferParams
    aggregate: AggregateParams
    analyze: AnalyzeParams
    explain: ExplainParams
    own_datasets: Mapping[str, OwnDatasetParams]

    @property
    def arms(self) -> tuple[str, ...]:
        """The arms of the experiment: the peer arms (CCE, SetFit) and the configured DML loss."""
        return (*PEERS, self.loss)


def load_params(path: str | Path = "params.yaml", sections: Collection[str] | None = None) -> Params:
    """Read and validate ``path``; raise :class:`ParamsError` on the first problem.

    ``sections`` (top-level keys, ``losses.<name>``, or ``losses.${loss}`` for the configured DML loss's
    section, spelled as in ``dvc.yaml``) limits the check to what a stage reads, so a typo in ``train``
    is reported by the stages that train, not by ``fetch``; the sections it does not read are None (or
    absent from ``losses``). The ``check`` stage validates everything.
    """
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"params file not found: {path}")
    return parse_params(load_yaml_file(path), sections)


def load_section(path: str | Path, name: str) -> Any:
    """One top-level section of a params file, validated alone (the study tools read ``aggregate``)."""
    raw = mapping(load_yaml_file(path), "<root>")
    fields = {f.name: f for f in dataclasses.fields(Params)}
    if name not in fields or name in ("losses", "own_datasets"):
        raise ValueError(f"{name!r} is not a section load_section reads; expected a top-level dataclass section")
    if name not in raw:
        raise ParamsError(f"{path}: {name}: missing section")
    return convert(raw[name], typing.get_type_hints(Params)[name], name, fields[name].metadata)


def arm_section(params: Params, arm: str, path: str | Path = "params.yaml") -> LossParams:
    """The ``losses.<arm>`` section of ``params`` (loaded from ``path`` with that section); ParamsError
    naming the arm and the arms ``path`` declares otherwise."""
    if arm not in params.losses:
        raw = load_yaml_file(path)
        declared = sorted(raw["losses"]) if isinstance(raw, Mapping) and isinstance(raw.get("losses"), Mapping) else []
        raise ParamsError(f"--arm {arm!r}: no losses.{arm} section in {path}; expected one of {declared}")
    return params.losses[arm]


def parse_params(raw: Any, sections: Collection[str] | None = None) -> Params:
    """Validate an already-parsed params mapping (see :func:`load_params`)."""
    raw = mapping(raw, "<root>")
    fields = {f.name: f for f in dataclasses.fields(Params)}
    check_keys(raw, fields, "<root>")
    if sections is not None:
        unknown = sorted({s.split(".")[0] for s in sections} - set(fields))
        if unknown:
            raise ValueError(f"sections {unknown} are not params sections; expected some of {sorted(fields)}")

    def wanted(key: str) -> bool:
        return sections is None or key in sections or (key == f"losses.{raw['loss']}" and DML_SECTION in sections)

    hints = typing.get_type_hints(Params)
    values: dict[str, Any] = {}
    for name, f in fields.items():
        if name in ("losses", "own_datasets") or not wanted(name):
            values[name] = None
            continue
        values[name] = convert(raw[name], hints[name], name, f.metadata)
    losses_raw = mapping(raw["losses"], "losses")
    losses = {name: loss_section(name, value) for name, value in losses_raw.items() if wanted("losses") or wanted(f"losses.{name}")}
    values["losses"] = types.MappingProxyType(losses)
    own_raw = mapping(raw["own_datasets"] if raw["own_datasets"] is not None else {}, "own_datasets")
    if wanted("own_datasets"):
        values["own_datasets"] = types.MappingProxyType({name: own_dataset_section(name, value) for name, value in own_raw.items()})
    _check_grid(values, set(losses_raw), (*DATASETS, *own_raw))
    return Params(**values)


def _check_grid(p: Mapping[str, Any], loss_names: set[str], known: tuple[str, ...]) -> None:
    """The grid's names: ``known`` = the built-in datasets and those of ``own_datasets``."""
    hint = f"expected one of {list(known)} (a dataset of your own is declared under own_datasets)"
    if p["datasets"] is not None:
        for i, name in enumerate(p["datasets"]):
            if name not in known:
                raise ParamsError(f"datasets[{i}]: unknown dataset {name!r}; {hint}")
    kept = () if p["train"] is None or isinstance(p["train"].save_weights, bool) else p["train"].save_weights
    for i, name in enumerate(kept):
        if name not in known:
            raise ParamsError(f"train.save_weights[{i}]: unknown dataset {name!r}; {hint}")
    for key in ("datasets", "sample_sizes", "seeds"):
        values = p[key]
        if values is None:
            continue
        if not values:
            raise ParamsError(f"{key}: must list at least one value")
        if len(set(values)) != len(values):
            raise ParamsError(f"{key}: duplicate values in {list(values)}")
    for i, size in enumerate(p["sample_sizes"] or ()):
        if size < 1:
            raise ParamsError(f"sample_sizes[{i}]: {size} is not a positive integer")
    for i, seed in enumerate(p["seeds"] or ()):
        if seed < 0:
            raise ParamsError(f"seeds[{i}]: {seed} is negative; expected an integer >= 0")
    if p["loss"] is not None:
        if p["loss"] in PEERS:
            raise ParamsError(f"loss: {p['loss']!r} is a peer arm that always runs; expected a DML loss")
        check_arm_name(p["loss"], "loss")
        for arm in (*PEERS, p["loss"]):
            if arm not in loss_names:
                raise ParamsError(f"losses.{arm}: missing section for the {_missing_arm(arm, loss_names)}")


def _missing_arm(arm: str, declared: set[str]) -> str:
    """Why ``arm`` has no section, and what ``loss`` may name: the DML losses and variants declared under ``losses``."""
    if arm in PEERS:
        return "peer arm; expected a losses section for each of " + str(list(PEERS))
    choices = sorted(n for n in declared if n not in PEERS)
    if arm in registered_losses():
        return f"configured loss {arm!r}; expected its section (its hyperparameters), or loss set to one of {choices}"
    known = "is neither a registered loss nor a variant declared under losses"
    return f"configured loss: {arm!r} {known}; expected loss set to one of {choices}"
