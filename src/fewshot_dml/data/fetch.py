"""The fetch stage's one call: a dataset -> ``data/raw/<dataset>.jsonl`` + its card.

A SentEval dataset is read from the local copy (``fetch.local_dir``) when that directory exists;
otherwise the official files are downloaded from ``fetch.urls`` if ``fetch.download`` allows it, and
it is an error if not. A dataset of your own (``own_datasets``) is read by :mod:`fewshot_dml.data.own`.
Everything is read, verified (file pins, counts, the table's pinned sha256), parsed and counted
before anything is written; then the table and the card are written atomically, the card last,
so a failure leaves neither behind.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from fewshot_dml.catalog.datasets import REGISTRY, DatasetSpec, get_spec
from fewshot_dml.config.sections import FetchParams, OwnDatasetParams
from fewshot_dml.core import io
from fewshot_dml.core.errors import FetchError
from fewshot_dml.data.local import read_local, resolve_local_dir, verify_local_copy
from fewshot_dml.data.official import official_url, read_official
from fewshot_dml.data.own import read_own, source_record
from fewshot_dml.data.table import encode_table, make_table

__all__ = ["FetchError", "fetch_dataset", "verify_sources"]

log = logging.getLogger(__name__)


def _local_dir(params: FetchParams, root: Path, required: bool = True) -> Path | None:
    """The local copy's directory; None if absent and downloads are allowed (or it is not ``required``);
    FetchError otherwise."""
    local_dir = resolve_local_dir(params.local_dir, root)
    if local_dir.is_dir():
        return local_dir
    if not required:
        return None
    if params.download:
        log.info("no local copy at %s; downloading from fetch.urls (fetch.download: true)", local_dir)
        return None
    raise FetchError(
        f"fetch.local_dir={params.local_dir!r}: no directory at {local_dir}; expected the SentEval "
        "copy there, or set fetch.download: true to download the official files from fetch.urls"
    )


def verify_sources(
    params: FetchParams,
    datasets: tuple[str, ...],
    root: Path,
    out_dir: Path,
    registry: Mapping[str, DatasetSpec] | None = None,
    own: Mapping[str, OwnDatasetParams] | None = None,
) -> dict[str, dict]:
    """Write ``out_dir/<dataset>.json``, one record per dataset: the verified checksums of its files in
    the local copy (or the download addresses), or what identifies an own dataset (a local file's
    sha256; a hub dataset's id, revision and the commit it names). Returns the records by dataset.

    The ``check`` stage runs this on every ``dvc repro`` (it is ``always_changed``); each ``fetch``
    depends on its dataset's record only, so a changed source file is caught here and, once restored,
    re-fetched, and editing one own file re-fetches that dataset alone. A record does not depend on
    the grid. The SentEval copy is needed only if ``datasets`` holds a built-in set.
    """
    registry_names = REGISTRY if registry is None else registry
    local_dir = _local_dir(params, root, required=any(d in registry_names for d in datasets))
    records: dict[str, dict] = {}
    if local_dir is not None:
        for name, files in verify_local_copy(local_dir, datasets, registry).items():
            records[name] = {"source": "local", "files": files}
    elif params.download:
        urls = {k: official_url(params, k) for k in sorted(vars(params.urls))}
        records.update({name: {"source": "official", "urls": urls} for name in datasets if name in registry_names})
    for name, spec in sorted((own or {}).items()):
        records[name] = {"source": "own", **source_record(name, spec, root)}
    out_dir = Path(out_dir)
    with io.atomic_dir(out_dir) as tmp:
        for name, record in sorted(records.items()):
            io.write_json(tmp / f"{name}.json", record)
    return records


def fetch_dataset(
    name: str,
    params: FetchParams,
    out_table: Path,
    out_card: Path,
    root: Path = Path("."),
    *,
    registry: Mapping[str, DatasetSpec] | None = None,
    own: OwnDatasetParams | None = None,
) -> dict:
    """Read dataset ``name`` and write its table and card; return the card.

    ``params.local_dir`` (and an own file) is resolved against the workspace of ``root`` (the
    repository root, see :func:`~fewshot_dml.data.local.workspace_root`); ``registry`` replaces the
    dataset registry (tests use it to change pins and expected counts); ``own`` is the dataset's
    ``own_datasets`` section, for a dataset of your own.
    """
    if own is not None:
        loaded_own = read_own(name, own, root)
        card = _count(
            {"dataset": name, **loaded_own.card},
            loaded_own.label_names,
            loaded_own.rows,
            loaded_own.card["location"],
            pair=own.text_pair is not None,
        )
        return _write(name, card, loaded_own.rows, None, out_table, out_card, loaded_own.card["location"])
    spec = get_spec(name, registry)
    local_dir = _local_dir(params, root)
    if local_dir is not None:
        source, expected, location = "local", spec.local.n_examples, params.local_dir
        loaded = read_local(spec, local_dir)
        where = str(local_dir)
    else:
        source, expected = "official", spec.official.n_examples
        location = [official_url(params, spec.official.url_key)] if spec.official.url_key else []
        loaded = read_official(spec, params)
        where = ", ".join(location)
    if len(loaded.rows) != expected:
        raise FetchError(f"{name}: read {len(loaded.rows)} examples from {where}, expected exactly {expected}")
    card = _count(
        {"dataset": spec.name, "source": source, "location": location, "encoding": loaded.encoding, "inputs": loaded.inputs},
        spec.label_names,
        loaded.rows,
        location,
        spec.pair,
    )
    return _write(name, card, loaded.rows, spec.table_sha256, out_table, out_card, where)


def _write(name: str, card: dict, rows: list, pinned: str | None, out_table: Path, out_card: Path, where: str) -> dict:
    """Encode the table, check it against ``pinned``, write table then card (neither on failure)."""
    labels, texts, pairs = zip(*rows, strict=True)
    data = encode_table(make_table(labels, texts, pairs))
    sha256 = hashlib.sha256(data).hexdigest()
    if pinned is not None and sha256 != pinned:
        raise FetchError(
            f"{name}: the table read from {where} has sha256 {sha256}, not the pinned "
            f"{pinned}; this source holds a different version of the dataset"
        )
    card["table_sha256"] = sha256
    with io.atomic_path(out_table) as tmp:
        tmp.write_bytes(data)
    try:
        io.write_json(out_card, card)
    except BaseException:
        Path(out_table).unlink(missing_ok=True)
        raise
    log.info("%s: wrote %d examples to %s", name, card["n_examples"], out_table)
    return card


def _count(card: dict, label_names: tuple[str, ...], rows: list, location: str | list[str], pair: bool) -> dict:
    """``card`` with the counts, label names and pair flag (no ``table_sha256`` yet); FetchError if a
    class has no example."""
    counts = Counter(label for label, _, _ in rows)
    missing = [label_names[i] for i in range(len(label_names)) if counts[i] == 0]
    if missing:
        raise FetchError(f"{card['dataset']}: no example of class(es) {missing} in {location}")
    return {
        **card,
        "n_examples": len(rows),
        "label_names": list(label_names),
        "class_counts": {label_name: counts[i] for i, label_name in enumerate(label_names)},
        "pair": pair,
    }
