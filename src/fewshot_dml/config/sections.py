"""The sections of ``params.yaml`` as frozen dataclasses, and the choice lists they allow.

Code holds no hidden defaults: ``params.yaml`` is the single place where a default lives, next to
the note on where it comes from. Ranges use :func:`fewshot_dml.core.strict.spec`.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from fewshot_dml.catalog.datasets import REGISTRY as _DATASET_REGISTRY
from fewshot_dml.catalog.datasets import URL_KEYS
from fewshot_dml.core.errors import ParamsError
from fewshot_dml.core.strict import build, spec

# Every choice list of the params lives here, once; the modules that act on a choice import it.
DATASETS = tuple(_DATASET_REGISTRY)
PROTOCOLS = ("kfold", "per_class")
POOLINGS = ("cls", "mean")
SCHEDULERS = ("linear", "cosine", "constant_with_warmup")
SAMPLERS = ("random", "balanced")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16", "auto")  # train.precision: the autocast dtype of training (model.device.precision_for)
DISTANCES = ("mean", "centroid")  # analyze.distance_to: the mean evaluation embedding, or the example's class mean
# own_datasets.<name>.source: a local file's suffix -> the `datasets` builder that reads it (else a hub dataset id)
OWN_FORMATS: Mapping[str, str] = types.MappingProxyType(
    {".csv": "csv", ".tsv": "csv", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}
)
DATASET_NAME = re.compile(r"[a-z][a-z0-9_]*")  # used in file names and metric keys (`<dataset>.<field>`)
# Suffixes of data files that are not read (so ``data/x.txt`` is a bad file, not a hub id with a dot).
_OTHER_FILES = (".txt", ".xlsx", ".xls", ".gz", ".zip", ".bz2", ".xz", ".arrow", ".xml", ".html", ".ndjson", ".tab")
HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?")  # huggingface_hub's repo id form


def dataset_order(name: str) -> tuple[int, str]:
    """Sort key of dataset names: the built-in seven in their order, then datasets of your own by name."""
    return (DATASETS.index(name), "") if name in DATASETS else (len(DATASETS), name)


# ``fetch.urls``: the download address of each official file (a mirror, or a loopback server in tests),
# one field per key of the datasets' registry (catalog.datasets.URL_KEYS, where each is described).
FetchUrls = dataclasses.make_dataclass("FetchUrls", [(key, str) for key in URL_KEYS], frozen=True)


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
    dev_checkpoints: int = spec(1, 1000)  # evenly spaced dev evaluations; the best is kept (1 = the final model)
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
    precision: Literal[PRECISIONS]
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


def own_dataset_section(name: Any, raw: Any) -> OwnDatasetParams:
    where = f"own_datasets.{name}"
    if not isinstance(name, str) or not DATASET_NAME.fullmatch(name):
        raise ParamsError(
            f"{where}: {name!r} is not a dataset name; expected lower-case letters, digits and "
            "underscores, starting with a letter (it names files and metric keys)"
        )
    if name in DATASETS:
        raise ParamsError(f"{where}: {name!r} is the name of a built-in SentEval dataset; expected a new name")
    own = build(OwnDatasetParams, raw, f"{where}.")
    if own.builder is None and (
        own.source.startswith((".", "~")) or not HUB_ID.fullmatch(own.source) or Path(own.source).suffix.lower() in _OTHER_FILES
    ):
        raise ParamsError(
            f"{where}.source: {own.source!r} is neither a file with a suffix in {list(OWN_FORMATS)} nor a hub dataset id (name or org/name)"
        )
    if own.builder is not None:
        if own.revision is not None:
            raise ParamsError(
                f"{where}.revision: {own.revision!r} is set for the local file {own.source!r}; "
                "expected null (a revision pins a hub dataset)"
            )
        if own.split != "train":
            raise ParamsError(f"{where}.split: {own.split!r}; a local file is one split, expected 'train'")
    elif own.revision is None:
        raise ParamsError(
            f"{where}.revision: null for the hub dataset {own.source!r}; expected a revision (a commit sha, "
            "tag or branch: check records the commit it names, so the data cannot change under the study unnoticed)"
        )
    columns = [c for c in (own.text, own.text_pair, own.label) if c is not None]
    if len(set(columns)) != len(columns):
        raise ParamsError(f"{where}: text, text_pair and label name the columns {columns}; expected distinct columns")
    return own
