"""Datasets of your own (``own_datasets.<name>``), read with Hugging Face ``datasets`` and checked.

A local file is read exactly as written by :mod:`fewshot_dml.data.own_files` (no type guessing,
strict quoting). A hub dataset is loaded with Hugging Face ``datasets`` at its pinned ``revision``
through the hub's cache (``HF_HUB_OFFLINE=1`` reads only that).

Labels are numbered in an order that does not depend on the rows' order, so adding, removing or
shuffling rows never renumbers a class (only a new or vanished class does):

- a ``ClassLabel`` column (hub datasets): its own names, in its own id order (``class_label``);
- otherwise the distinct values exactly as written (``01`` and ``1`` are two classes; spaces
  around a label, a fraction, a boolean or a mix of integers and strings are errors), sorted
  numerically when every one is an integer (``numeric``: 2 before 10), else by Unicode code point
  (``lexicographic``); the id is the rank.

A text (with its pair) that appears twice with one label is kept once and reported (the card's
``duplicates_dropped``), so no split puts it in training and in evaluation; with two labels it is an error.

The card records the order (``label_order``) and the names in id order (``label_names``).
Every problem is a :class:`~fewshot_dml.data.FetchError` naming the file (or hub id), the row
(1-based, a CSV header not counted) and what was expected; nothing is written before all rows pass.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fewshot_dml.config.sections import OWN_FORMATS, OwnDatasetParams
from fewshot_dml.core import hub, locations
from fewshot_dml.core.errors import FetchError, UserError
from fewshot_dml.data.own_files import Fraction, read_file

log = logging.getLogger(__name__)
_INTEGER = re.compile(r"-?[0-9]+")


@dataclass(frozen=True)
class OwnLoaded:
    """An own dataset, checked: rows ``(label id, text, text_pair)`` in file order, and its card's fields."""

    rows: list[tuple[int, str, str]]
    label_names: tuple[str, ...]
    card: dict[str, Any]


def source_path(own: OwnDatasetParams, root: Path) -> Path:
    """A local file's path: absolute as is, relative to the workspace root otherwise."""
    return locations.resolve(own.source, root)


def hub_commit(name: str, own: OwnDatasetParams, root: Path) -> str:
    """The commit a hub source's ``revision`` names now; FetchError if ``source`` is a place in the
    workspace (a folder needs its file named; a missing path is never looked up on the hub)."""
    if locations.is_workspace_location(own.source, root):
        path = source_path(own, root)
        found = f"a folder; name the data file in it, e.g. {own.source}/train.csv" if path.is_dir() else "no such file"
        raise FetchError(
            f"own_datasets.{name}.source: {own.source!r} is a location in the workspace ({path}: {found}), so it is not read "
            f"as a hub dataset; expected a file with a suffix in {list(OWN_FORMATS)}, or a hub dataset id that is not a workspace path"
        )
    try:
        return hub.resolve_commit(own.source, own.revision or "", "dataset")
    except UserError as err:
        raise FetchError(f"own_datasets.{name}: {err}") from None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def source_record(name: str, own: OwnDatasetParams, root: Path) -> dict[str, Any]:
    """What identifies the data without reading it (the ``check`` stage's record, a dep of ``fetch``):
    a local file's sha256, or a hub id with its revision, the commit it names now, and the split.
    FetchError if the file is missing."""
    if own.builder is None:
        return {"hub": own.source, "revision": own.revision, "commit": hub_commit(name, own, root), "split": own.split}
    path = source_path(own, root)
    if not path.is_file():
        raise FetchError(
            f"own_datasets.{name}.source: no file at {path}; expected the dataset's "
            f"{path.suffix} file (a relative path is resolved against the workspace root)"
        )
    return {"file": own.source, "sha256": _sha256(path)}


def _load(name: str, own: OwnDatasetParams, root: Path) -> tuple[dict[str, list], Any, str, dict[str, Any]]:
    """``(columns as lists, features, where, card fields)`` of the whole source."""
    if own.builder is None:
        import datasets

        commit = hub_commit(name, own, root)
        where = f"{own.source}@{own.revision}:{own.split}"
        try:
            data = datasets.load_dataset(own.source, revision=commit, split=own.split)
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
                "commit": commit,
                "split": own.split,
                "format": None,
                "inputs": [{"name": where, "rows": len(data)}],
            },
        )
    path = source_path(own, root)
    where = str(path)
    columns, features = read_file(path, own.builder)
    sha256 = _sha256(path)
    return (
        columns,
        features,
        where,
        {
            "source": "file",
            "location": own.source,
            "revision": None,
            "commit": None,
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
        text, kinds = [], set()
        for i, value in enumerate(values):
            if isinstance(value, bool) or not isinstance(value, (str, int)) or isinstance(value, Fraction):
                raise FetchError(
                    f"{where}: row {i + 1}: label {value!r} in column {column!r}; expected a string or an integer "
                    "(a fractional number, a boolean or null is not a class name)"
                )
            if isinstance(value, str) and (not value.strip() or value != value.strip()):
                raise FetchError(
                    f"{where}: row {i + 1}: label {value!r} in column {column!r} is empty or has spaces around it; "
                    "expected the class name exactly (labels are compared as written)"
                )
            kinds.add(type(value).__name__)
            text.append(str(value))
        if len(kinds) > 1:
            raise FetchError(f"{where}: the label column {column!r} mixes integers and strings; expected one type")
        numeric = all(_INTEGER.fullmatch(t) for t in text)
        # As written: `01` and `1` are two classes (ordered 01 < 1 < 2: by value, then by spelling).
        names = tuple(sorted(set(text), key=(lambda t: (int(t), t)) if numeric else None))
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
    feature = None if features is None else features[own.label]
    class_names = list(feature.names) if type(feature).__name__ == "ClassLabel" else None
    ids, names, order = label_ids(columns[own.label], where, own.label, class_names)
    rows, duplicates = drop_duplicates(list(zip(ids, texts, pairs, strict=True)), names, where)
    card.update(
        columns={"text": own.text, "text_pair": own.text_pair, "label": own.label}, label_order=order, duplicates_dropped=duplicates
    )
    return OwnLoaded(rows=rows, label_names=names, card=card)


def drop_duplicates(rows: list[tuple[int, str, str]], names: tuple[str, ...], where: str) -> tuple[list[tuple[int, str, str]], int]:
    """``(rows without repeats, how many were dropped)``: a text (with its pair) written twice with one
    label is kept once, at its first row, and reported, so no split can put it in training and in
    evaluation at once; written twice with two labels, it is an error naming both rows."""
    first: dict[tuple[str, str], int] = {}
    kept, repeats = [], []
    for i, (label, text, pair) in enumerate(rows):
        j = first.setdefault((text, pair), i)
        if j == i:
            kept.append((label, text, pair))
        elif rows[j][0] != label:
            raise FetchError(
                f"{where}: rows {j + 1} and {i + 1} hold the same text {text[:60]!r} with the labels "
                f"{names[rows[j][0]]!r} and {names[label]!r}; expected one label per text (fix or drop one row)"
            )
        else:
            repeats.append((j + 1, i + 1))
    if repeats:
        shown = ", ".join(f"row {b} repeats row {a}" for a, b in repeats[:3])
        log.warning(
            "%s: dropped %d duplicate row(s), each the same text and label as an earlier row (%s%s)",
            where,
            len(repeats),
            shown,
            ", ..." if len(repeats) > 3 else "",
        )
    return kept, len(repeats)
