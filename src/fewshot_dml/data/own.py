"""Datasets of your own (``own_datasets.<name>``), read with Hugging Face ``datasets`` and checked.

A local file is read by the packaged builder its suffix names (``csv`` for .csv and .tsv, ``json``
for .jsonl and .json, ``parquet``), in a throw-away cache so that nothing stale is ever reused; a
CSV cell is text as written (``NA`` stays ``NA``; only an empty cell is empty). A hub dataset is
loaded at its pinned ``revision`` through the hub's cache (``HF_HUB_OFFLINE=1`` reads only that).

Labels are numbered in an order that does not depend on the rows' order, so adding, removing or
shuffling rows never renumbers a class (only a new or vanished class does):

- a ``ClassLabel`` column (hub datasets): its own names, in its own id order (``class_label``);
- otherwise the distinct values as text, sorted numerically when every one is an integer
  (``numeric``: 2 before 10), else by Unicode code point (``lexicographic``); the id is the rank.

The card records the order (``label_order``) and the names in id order (``label_names``).
Every problem is a :class:`~fewshot_dml.data.FetchError` naming the file (or hub id), the row
(1-based, a CSV header not counted) and what was expected; nothing is written before all rows pass.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fewshot_dml.config.sections import OwnDatasetParams
from fewshot_dml.core.errors import FetchError
from fewshot_dml.core.layout import workspace_root

_INTEGER = re.compile(r"-?[0-9]+")


@dataclass(frozen=True)
class OwnLoaded:
    """An own dataset, checked: rows ``(label id, text, text_pair)`` in file order, and its card's fields."""

    rows: list[tuple[int, str, str]]
    label_names: tuple[str, ...]
    card: dict[str, Any]


def source_path(own: OwnDatasetParams, root: Path) -> Path:
    """A local file's path: absolute as is, relative to the workspace root otherwise."""
    path = Path(own.source).expanduser()
    return path if path.is_absolute() else workspace_root(root) / path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def source_record(name: str, own: OwnDatasetParams, root: Path) -> dict[str, Any]:
    """What identifies the data without reading it (the ``check`` stage's record, a dep of ``fetch``):
    a local file's sha256, or a hub id with its revision and split. FetchError if the file is missing."""
    if own.builder is None:
        return {"hub": own.source, "revision": own.revision, "split": own.split}
    path = source_path(own, root)
    if not path.is_file():
        raise FetchError(
            f"own_datasets.{name}.source: no file at {path}; expected the dataset's "
            f"{path.suffix} file (a relative path is resolved against the workspace root)"
        )
    return {"file": own.source, "sha256": _sha256(path)}


def _load(name: str, own: OwnDatasetParams, root: Path) -> tuple[dict[str, list], Any, str, dict[str, Any]]:
    """``(columns as lists, features, where, card fields)`` of the whole source."""
    import datasets

    if own.builder is None:
        where = f"{own.source}@{own.revision}:{own.split}"
        try:
            data = datasets.load_dataset(own.source, revision=own.revision, split=own.split)
        except Exception as err:  # `datasets` raises many types (offline, unknown repo, revision, split)
            raise FetchError(f"own_datasets.{name}: cannot load the hub dataset {where}: {type(err).__name__}: {err}") from err
        return (
            data.to_dict(),
            data.features,
            where,
            {
                "source": "hub",
                "location": own.source,
                "revision": own.revision,
                "split": own.split,
                "format": None,
                "inputs": [{"name": where, "rows": len(data)}],
            },
        )
    path = source_path(own, root)
    where = str(path)
    options: dict[str, Any] = {}
    if own.builder == "csv":
        options = {"keep_default_na": False, **({"sep": "\t"} if path.suffix.lower() == ".tsv" else {})}
    try:
        with tempfile.TemporaryDirectory(prefix="fewshot-dml-datasets-") as cache:
            data = datasets.load_dataset(own.builder, data_files=str(path), split="train", cache_dir=cache, **options)
            columns, features = data.to_dict(), data.features
    except Exception as err:  # a malformed file surfaces as the reader's own error type
        raise FetchError(f"{where}: `datasets` cannot read it as {own.builder}: {type(err).__name__}: {err}") from err
    sha256 = _sha256(path)
    return (
        columns,
        features,
        where,
        {
            "source": "file",
            "location": own.source,
            "revision": None,
            "split": "train",
            "format": own.builder,
            "inputs": [{"name": own.source, "sha256": sha256, "rows": len(next(iter(columns.values()), []))}],
        },
    )


def _texts(values: list[Any], column: str, where: str) -> list[str]:
    for i, value in enumerate(values):
        if value is None or (isinstance(value, str) and not value.strip()):
            raise FetchError(
                f"{where}: row {i + 1}: empty text in column {column!r}; expected every row to have text (drop the row or fill it in)"
            )
        if not isinstance(value, str):
            raise FetchError(
                f"{where}: row {i + 1}: column {column!r} holds {type(value).__name__} {value!r}, not text; expected a column of strings"
            )
    return values


def label_ids(values: list[Any], where: str, column: str, class_names: list[str] | None = None) -> tuple[list[int], tuple[str, ...], str]:
    """``(id per row, names in id order, label_order)``; see the module docstring for the order."""
    if class_names is not None:
        bad = next((i for i, v in enumerate(values) if not isinstance(v, int) or not 0 <= v < len(class_names)), None)
        if bad is not None:
            raise FetchError(
                f"{where}: row {bad + 1}: label {values[bad]!r} in column {column!r}; expected a class "
                f"id in 0..{len(class_names) - 1} of {class_names}"
            )
        ids, names, order = list(values), tuple(class_names), "class_label"
    else:
        text = []
        for i, value in enumerate(values):
            if isinstance(value, bool) or not isinstance(value, (str, int)) or (isinstance(value, str) and not value.strip()):
                raise FetchError(f"{where}: row {i + 1}: label {value!r} in column {column!r}; expected a non-empty string or an integer")
            text.append(str(value))
        numeric = all(_INTEGER.fullmatch(t) for t in text)
        names = tuple(sorted(set(text), key=int if numeric else None))
        index = {n: i for i, n in enumerate(names)}
        ids, order = [index[t] for t in text], "numeric" if numeric else "lexicographic"
    present = sorted(set(ids))
    if len(present) < 2:
        found = [names[i] for i in present]
        raise FetchError(f"{where}: the label column {column!r} has one class {found}; expected at least 2 classes")
    return ids, names, order


def read_own(name: str, own: OwnDatasetParams, root: Path) -> OwnLoaded:
    """Load, check and number an own dataset (nothing is written here)."""
    columns, features, where, card = _load(name, own, root)
    wanted = {"text": own.text, "text_pair": own.text_pair, "label": own.label}
    for key, column in wanted.items():
        if column is not None and column not in columns:
            raise FetchError(f"{where}: no column {column!r} (own_datasets.{name}.{key}); the columns are {list(columns)}")
    if not columns[own.label]:
        raise FetchError(f"{where}: no rows; expected a labelled dataset")
    texts = _texts(columns[own.text], own.text, where)
    pairs = _texts(columns[own.text_pair], own.text_pair, where) if own.text_pair else [""] * len(texts)
    feature = features[own.label]
    class_names = list(feature.names) if type(feature).__name__ == "ClassLabel" else None
    ids, names, order = label_ids(columns[own.label], where, own.label, class_names)
    card.update(columns={"text": own.text, "text_pair": own.text_pair, "label": own.label}, label_order=order)
    return OwnLoaded(rows=list(zip(ids, texts, pairs, strict=True)), label_names=names, card=card)
