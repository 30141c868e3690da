"""Typed, strict loading of ``params.yaml`` into frozen dataclasses.

Every key must be declared here (or, for ``losses.<name>``, in the loss registry); unknown keys,
missing keys, wrong types and out-of-range values raise :class:`ParamsError` naming the key path,
the bad value and what was expected. Code holds no hidden defaults: ``params.yaml`` is the single
place where a default lives, next to the note on where it comes from.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from fewshot_dml.catalog.datasets import REGISTRY as _DATASET_REGISTRY

# Every choice list of the params lives here, once; the modules that act on a choice import it.
DATASETS = tuple(_DATASET_REGISTRY)
BASELINE = "cce"
SETFIT = "setfit"
PEERS = (BASELINE, SETFIT)  # the arms every experiment trains beside its DML arm (dvc.yaml's train matrix)
PROTOCOLS = ("kfold", "per_class")
POOLINGS = ("cls", "mean")
SCHEDULERS = ("linear", "cosine", "constant_with_warmup")
SAMPLERS = ("random", "balanced")
DEVICES = ("auto", "cpu", "cuda")
DISTANCES = ("mean", "centroid")  # analyze.distance_to: the mean evaluation embedding, or the example's class mean
# own_datasets.<name>.source: a local file's suffix -> the `datasets` builder that reads it (else a hub dataset id)
OWN_FORMATS: Mapping[str, str] = types.MappingProxyType(
    {".csv": "csv", ".tsv": "csv", ".jsonl": "json", ".json": "json", ".parquet": "parquet"})
DATASET_NAME = re.compile(r"[a-z][a-z0-9_]*")  # used in file names and metric keys (`<dataset>.<field>`)
# Suffixes of data files that are not read (so ``data/x.txt`` is a bad file, not a hub id with a dot).
_OTHER_FILES = (".txt", ".xlsx", ".xls", ".gz", ".zip", ".bz2", ".xz", ".arrow", ".xml", ".html", ".ndjson", ".tab")
HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?")  # huggingface_hub's repo id form


def dataset_order(name: str) -> tuple[int, str]:
    """Sort key of dataset names: the built-in seven in their order, then datasets of your own by name."""
    return (DATASETS.index(name), "") if name in DATASETS else (len(DATASETS), name)


class ParamsError(ValueError):
    """A value in params.yaml is unknown, missing, mistyped or out of range."""


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 floats and no duplicate keys.

    PyYAML implements YAML 1.1, whose float pattern needs a dot: ``1e-05`` (how DVC's ``-S`` writes
    0.00001) and ``1e-5`` load as strings. This loader resolves every YAML 1.2 float spelling
    (``1e-5``, ``1.0e+3``, ``.5``, ``.inf``) to a float and leaves everything else as SafeLoader does.
    A key given twice in one mapping (two datasets of one name) is an error: PyYAML keeps the last.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"found duplicate key {key!r}; expected each name once", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_FLOAT_TAG = "tag:yaml.org,2002:float"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _FLOAT_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _FLOAT_TAG,
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                 |[-+]?(?:[0-9][0-9_]*)[eE][-+]?[0-9]+
                 |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                 |[-+]?\.(?:inf|Inf|INF)
                 |\.(?:nan|NaN|NAN))$""", re.VERBOSE),
    list("-+0123456789."),
)


def read_yaml(text: str) -> Any:
    """Parse YAML text with :class:`_Loader` (floats in every spelling DVC or a person may write)."""
    return yaml.load(text, Loader=_Loader)


def _range(low: float | None = None, high: float | None = None, *, low_open: bool = False) -> dict:
    return {"low": low, "high": high, "low_open": low_open}


def spec(low: float | None = None, high: float | None = None, *, low_open: bool = False) -> Any:
    """A dataclass field whose numeric value must lie in [low, high] (or (low, high] if low_open)."""
    return field(metadata=_range(low, high, low_open=low_open))


@dataclass(frozen=True)
class FetchUrls:
    """Download addresses of the official files (a mirror, or a loopback server in tests)."""

    senteval_small: str  # SentEval's datasmall_NB_ACL12.zip (MR, CR, SUBJ, MPQA)
    sst2: str  # GLUE's SST-2.zip
    trec: str  # TREC's train_5500.label
    mrpc: str  # msr_paraphrase_train.txt
    mrpc_dev_ids: str  # GLUE's mrpc_dev_ids.tsv: the pairs GLUE moved from MSR's train file to dev


@dataclass(frozen=True)
class FetchParams:
    local_dir: str
    download: bool  # false: a missing local copy is an error; true: download from `urls` instead
    urls: FetchUrls
    timeout_s: float = spec(0, low_open=True)
    retries: int = spec(0, 10)


@dataclass(frozen=True)
class OwnDatasetParams:
    """``own_datasets.<name>``: a labelled text set of your own, read with Hugging Face ``datasets``.

    ``source`` is a local file (its suffix, one of :data:`OWN_FORMATS`, picks the reader; a
    relative path is resolved against the workspace root) or a hub dataset id, which needs a pinned
    ``revision`` and names its ``split``; a file is one split, ``train``. ``text``, ``text_pair``
    (null: single sentences) and ``label`` name the columns.
    """

    source: str
    revision: str | None
    split: str
    text: str
    text_pair: str | None
    label: str

    @property
    def builder(self) -> str | None:
        """The packaged ``datasets`` builder of a local file; None for a hub dataset."""
        return OWN_FORMATS.get(Path(self.source).suffix.lower())


@dataclass(frozen=True)
class SampleParams:
    protocol: Literal[PROTOCOLS]
    folds: int = spec(2, 100)
    eval_max: int = spec(0)  # 0 = evaluate on the whole held-out set
    dev_ratio: float = spec(0, 100)  # development rows per training row; 0 = no development set


@dataclass(frozen=True)
class TrainParams:
    model: str
    pooling: Literal[POOLINGS]
    max_length: int = spec(8, 4096)
    batch_size: int = spec(2, 4096)
    eval_batch_size: int = spec(1, 4096)
    steps: int = spec(1, 1_000_000)  # the training length when ``epochs`` is 0
    epochs: int = spec(0, 100_000)  # 0 = ``steps``; n = n passes over the few-shot set (see :func:`training_steps`)
    lr: float = spec(0, 1, low_open=True)
    llrd: float = spec(0, 1, low_open=True)  # layer-wise lr decay: lr * llrd**k for the k-th layer from the top
    reinit_layers: int = spec(0, 1000)  # re-initialise the top k encoder layers before training
    head_lr: float = spec(0, 1, low_open=True)
    weight_decay: float = spec(0, 1)
    adam_eps: float = spec(0, 1, low_open=True)
    warmup_steps: int = spec(0)
    scheduler: Literal[SCHEDULERS]
    max_grad_norm: float = spec(0)  # 0 = no clipping
    dropout: float = spec(0, 1)
    sampler: Literal[SAMPLERS]
    device: Literal[DEVICES]
    threads: int = spec(0, 1024)  # 0 = all cores
    save_weights: bool | tuple[str, ...]  # every run's weights (true), none (false), or those of the listed datasets

    def keeps_weights(self, dataset: str) -> bool:
        """Whether the runs of ``dataset`` write their model weights (``train.save_weights``)."""
        return self.save_weights if isinstance(self.save_weights, bool) else dataset in self.save_weights


def training_steps(train: TrainParams, n_train: int) -> int:
    """The number of optimisation steps: ``train.steps``, or ``ceil(epochs * n_train / batch_size)``.

    With 16 examples and batches of 16, 20 epochs (Mosbach et al., ICLR 2021) are 20 steps; with
    more examples, epochs keep the number of passes over the data fixed where steps do not.
    """
    if train.epochs == 0:
        return train.steps
    return max(1, math.ceil(train.epochs * n_train / train.batch_size))


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


@dataclass(frozen=True)
class InferParams:
    proxy_weight: float = spec(0, 1)
    curve_points: int = spec(2, 1001)
    knn_k: int = spec(1, 1000)


@dataclass(frozen=True)
class AggregateParams:
    confidence: float = spec(0.5, 1, low_open=True)  # of the t-intervals
    alpha: float = spec(0, 0.5, low_open=True)  # family-wise error rate of the Holm-corrected tests
    seed: int = spec(0)  # Monte Carlo sign flips where exact enumeration is too large


@dataclass(frozen=True)
class AnalyzeParams:
    """What the analyze stage computes from saved run artifacts (no forward pass)."""

    seed: int = spec(0)  # random state of the t-SNE maps
    perplexity: float = spec(1, 1000)  # t-SNE's; capped below the number of points it maps
    bins: int = spec(2, 100)  # equal-count groups of distance and of sentence length
    distance_to: Literal[DISTANCES]


@dataclass(frozen=True)
class ExplainParams:
    """Token attributions (Integrated Gradients) of the runs that saved their weights."""

    sentences: int = spec(1, 100)  # evaluation sentences per dataset, the same for every arm and seed
    steps: int = spec(2, 1000)  # Riemann steps of the path integral
    seed: int = spec(0)  # which sentences


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

    ``sections`` (top-level keys, or ``losses.<name>``) limits the check to what a stage reads, so
    a typo in ``train`` is reported by the stages that train, not by ``fetch``; the sections it
    does not read are None (or absent from ``losses``). The ``check`` stage validates everything.
    """
    path = Path(path)
    try:
        raw = read_yaml(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ParamsError(f"params file not found: {path}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ParamsError(f"{where}: not valid YAML ({getattr(err, 'problem', None) or err})") from None
    return parse_params(raw, sections)


def parse_params(raw: Any, sections: Collection[str] | None = None) -> Params:
    """Validate an already-parsed params mapping (see :func:`load_params`)."""
    raw = _mapping(raw, "<root>")
    fields = {f.name: f for f in dataclasses.fields(Params)}
    _check_keys(raw, fields, "<root>")
    if sections is not None:
        unknown = sorted({s.split(".")[0] for s in sections} - set(fields))
        if unknown:
            raise ValueError(f"sections {unknown} are not params sections; expected some of {sorted(fields)}")

    def wanted(key: str) -> bool:
        return sections is None or key in sections

    hints = typing.get_type_hints(Params)
    values: dict[str, Any] = {}
    for name, f in fields.items():
        if name in ("losses", "own_datasets") or not wanted(name):
            values[name] = None
            continue
        values[name] = _convert(raw[name], hints[name], name, f.metadata)
    losses_raw = _mapping(raw["losses"], "losses")
    losses = {
        name: _loss_section(name, value)
        for name, value in losses_raw.items()
        if wanted("losses") or wanted(f"losses.{name}")
    }
    values["losses"] = types.MappingProxyType(losses)
    own_raw = _mapping(raw["own_datasets"] if raw["own_datasets"] is not None else {}, "own_datasets")
    if wanted("own_datasets"):
        values["own_datasets"] = types.MappingProxyType(
            {name: _own_dataset(name, value) for name, value in own_raw.items()})
    _check_grid(values, set(losses_raw), (*DATASETS, *own_raw))
    return Params(**values)


def _own_dataset(name: Any, raw: Any) -> OwnDatasetParams:
    where = f"own_datasets.{name}"
    if not isinstance(name, str) or not DATASET_NAME.fullmatch(name):
        raise ParamsError(f"{where}: {name!r} is not a dataset name; expected lower-case letters, digits and "
                          "underscores, starting with a letter (it names files and metric keys)")
    if name in DATASETS:
        raise ParamsError(f"{where}: {name!r} is the name of a built-in SentEval dataset; expected a new name")
    own = _build(OwnDatasetParams, raw, f"{where}.")
    if own.builder is None and (own.source.startswith((".", "~")) or not HUB_ID.fullmatch(own.source)
                                or Path(own.source).suffix.lower() in _OTHER_FILES):
        raise ParamsError(f"{where}.source: {own.source!r} is neither a file with a suffix in {list(OWN_FORMATS)} "
                          "nor a hub dataset id (name or org/name)")
    if own.builder is not None:
        if own.revision is not None:
            raise ParamsError(f"{where}.revision: {own.revision!r} is set for the local file {own.source!r}; "
                              "expected null (a revision pins a hub dataset)")
        if own.split != "train":
            raise ParamsError(f"{where}.split: {own.split!r}; a local file is one split, expected 'train'")
    elif own.revision is None:
        raise ParamsError(f"{where}.revision: null for the hub dataset {own.source!r}; expected a pinned "
                          "revision (a commit sha or tag), so the data cannot change under the study")
    columns = [c for c in (own.text, own.text_pair, own.label) if c is not None]
    if len(set(columns)) != len(columns):
        raise ParamsError(f"{where}: text, text_pair and label name the columns {columns}; expected distinct columns")
    return own


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
        for arm in (*PEERS, p["loss"]):
            if arm not in loss_names:
                role = "peer arm" if arm in PEERS else "configured loss"
                raise ParamsError(f"losses.{arm}: missing section for the {role}")


def _loss_section(name: str, raw: Any) -> LossParams:
    # Imported here: the registry is the one place that knows each loss's hyperparameters.
    from fewshot_dml.losses.registry import LOSSES, get_spec

    where = f"losses.{name}"
    values = dict(_mapping(raw if raw is not None else {}, where))
    base = values.pop("variant_of", None)
    if name in LOSSES:
        if base is not None:
            raise ParamsError(f"{where}.variant_of: {name!r} is a registered loss; only a variant (a new name) "
                              "has one")
        base = name
    elif base is None:
        raise ParamsError(f"{where}: unknown loss {name!r}; expected one of {sorted(LOSSES)}, "
                          "or a variant with a `variant_of` key naming one of them")
    try:
        loss_spec = get_spec(base if isinstance(base, str) else repr(base))
    except KeyError as err:
        raise ParamsError(f"{where}.variant_of: {err.args[0]}") from None
    if loss_spec.kind != "dml" and name != base:
        raise ParamsError(f"{where}.variant_of: {base!r} is a peer arm, not a DML loss; a variant needs a DML loss")
    metrix_raw = values.pop("metrix", None)
    declared = dict(loss_spec.hparams)
    if loss_spec.kind == "dml":
        declared["beta"] = ("float", 0.0, 1.0)
        declared["dml_on"] = ("str", None, None)
        if loss_spec.has_proxies:
            declared["proxy_lr"] = ("float", 0.0, 1.0)
    _check_keys(values, declared, where)
    for key, (kind, low, high) in declared.items():
        values[key] = _scalar(values[key], kind, low, high, f"{where}.{key}")
    common: dict[str, Any] = {key: values.pop(key, None) for key in ("beta", "proxy_lr")}
    dml_on = values.pop("dml_on", "pooled")
    if dml_on not in DML_ON:
        raise ParamsError(f"{where}.dml_on: {dml_on!r} is not allowed; expected one of {list(DML_ON)}")
    metrix = None
    if metrix_raw is not None:
        if loss_spec.soft is None:
            with_form = sorted(n for n, s in LOSSES.items() if s.soft is not None)
            raise ParamsError(f"{where}.metrix: loss {base!r} has no Metrix form; expected a base in {with_form}")
        if dml_on != "pooled":
            raise ParamsError(f"{where}.metrix: Metrix mixes sentence embeddings; expected dml_on: pooled, "
                              f"got {dml_on!r}")
        metrix = _metrix(metrix_raw, f"{where}.metrix")
    return LossParams(name=name, hparams=types.MappingProxyType(values), base=base, dml_on=dml_on,
                      metrix=metrix, **common)


def _metrix(raw: Any, where: str) -> MetrixParams:
    values = dict(_mapping(raw, where))
    _check_keys(values, {"point": None, "layer": None, "alpha": None, "weight": None}, where)
    point = values["point"]
    if point not in MIX_POINTS:
        raise ParamsError(f"{where}.point: {point!r} is not allowed; expected one of {list(MIX_POINTS)}")
    return MetrixParams(
        point=point,
        layer=_scalar(values["layer"], "int", 1, 1000, f"{where}.layer"),
        alpha=_scalar(values["alpha"], "float", 0, None, f"{where}.alpha", low_open=True),
        weight=_scalar(values["weight"], "float", 0, None, f"{where}.weight", low_open=True),
    )


def _check_keys(values: Mapping[str, Any], declared: Mapping[str, Any], where: str) -> None:
    unknown = sorted(set(values) - set(declared))
    if unknown:
        raise ParamsError(f"{where}.{unknown[0]}: unknown key; expected one of {sorted(declared)}")
    missing = sorted(set(declared) - set(values))
    if missing:
        raise ParamsError(f"{where}.{missing[0]}: missing key (params.yaml declares every value)")


def _build(cls: type, raw: Any, where: str) -> Any:
    here = where.rstrip(".") or "<root>"
    raw = _mapping(raw, here)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    _check_keys(raw, fields, here)
    kwargs = {}
    for name, f in fields.items():
        path = f"{where}{name}"
        kwargs[name] = _convert(raw[name], hints[name], path, f.metadata)
    return cls(**kwargs)


def _convert(value: Any, hint: Any, path: str, meta: Mapping[str, Any]) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, f"{path}.")
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise ParamsError(f"{path}: {value!r} is not allowed; expected one of {list(choices)}")
        return value
    if origin is types.UnionType:  # e.g. ``bool | tuple[str, ...]``: the first form the value has
        for option in typing.get_args(hint):
            try:
                return _convert(value, option, path, meta)
            except ParamsError:
                continue
        forms = " or ".join("true/false" if o is bool else "a list" if typing.get_origin(o) is tuple
                            else "null" if o is type(None) else "a non-empty string" if o is str else o.__name__
                            for o in typing.get_args(hint))
        raise ParamsError(f"{path}: {value!r} is not allowed; expected {forms}")
    if hint is type(None):
        if value is not None:
            raise ParamsError(f"{path}: {value!r} is not null")
        return None
    if origin is tuple:
        (item,) = {a for a in typing.get_args(hint) if a is not Ellipsis}
        if not isinstance(value, list):
            raise ParamsError(f"{path}: {value!r} is not a list")
        return tuple(_convert(v, item, f"{path}[{i}]", {}) for i, v in enumerate(value))
    if hint is str:
        if not isinstance(value, str) or not value:
            raise ParamsError(f"{path}: {value!r} is not a non-empty string")
        return value
    if origin in (Mapping, dict) or hint is Mapping:
        return value
    kind = {bool: "bool", int: "int", float: "float"}[hint]
    return _scalar(value, kind, meta.get("low"), meta.get("high"), path, meta.get("low_open", False))


def _scalar(value: Any, kind: str, low: Any, high: Any, path: str, low_open: bool = False) -> Any:
    if kind == "bool":
        if not isinstance(value, bool):
            raise ParamsError(f"{path}: {value!r} is not a boolean (true/false)")
        return value
    if kind == "str":
        if not isinstance(value, str):
            raise ParamsError(f"{path}: {value!r} is not a string")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ParamsError(f"{path}: {value!r} is not a number; expected {kind}")
    if kind == "int" and not isinstance(value, int):
        raise ParamsError(f"{path}: {value!r} is not an integer")
    value = float(value) if kind == "float" else value
    too_low = low is not None and (value <= low if low_open else value < low)
    if too_low or (high is not None and value > high):
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        raise ParamsError(f"{path}: {value!r} is out of range; expected {'(' if low_open else '['}{lo}, {hi}]")
    return value


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ParamsError(f"{where}: expected a mapping, got {type(value).__name__} {value!r}")
    return value
