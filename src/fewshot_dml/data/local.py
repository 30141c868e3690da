"""The local SentEval copy (the layout of its README.md): where it is, and its verified files.

Every file is checked against the sha256 pinned in the dataset registry before it is parsed, so
an edited, truncated or swapped file is an error naming the file and both checksums.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path

from fewshot_dml.catalog.datasets import REGISTRY, DatasetSpec, Loaded, parse_parts
from fewshot_dml.core import locations
from fewshot_dml.core.errors import FetchError

log = logging.getLogger(__name__)


def resolve_local_dir(local_dir: str, root: Path) -> Path:
    """``fetch.local_dir`` as a path: absolute as is, relative to the workspace root otherwise."""
    return locations.resolve(local_dir, root)


def read_verified(spec: DatasetSpec, directory: Path) -> list[tuple[str, bytes]]:
    """``(path, bytes)`` of ``spec``'s local files, each matching its pinned sha256."""
    blobs: list[tuple[str, bytes]] = []
    for part in spec.local.parts:
        path = directory / part.path
        if not path.is_file():
            raise FetchError(f"{spec.name}: missing file {path} in the local copy {directory}")
        data = path.read_bytes()
        actual = hashlib.sha256(data).hexdigest()
        if part.sha256 is not None and actual != part.sha256:
            raise FetchError(
                f"{path}: sha256 {actual} does not match the pinned {part.sha256}; "
                "the local copy was changed (restore it from ../shared/senteval)"
            )
        blobs.append((str(path), data))
    return blobs


def read_local(spec: DatasetSpec, directory: Path) -> Loaded:
    """Verify and parse ``spec``'s files under ``directory``; FetchError naming the file if one is bad."""
    blobs = read_verified(spec, directory)
    parsed, encoding = parse_parts(spec, spec.local, blobs)
    inputs = [
        {"name": part.path, "sha256": hashlib.sha256(data).hexdigest(), "rows": len(rows)}
        for part, (_, data), rows in zip(spec.local.parts, blobs, parsed, strict=True)
    ]
    log.info("%s: read %s from %s (%s)", spec.name, [i["rows"] for i in inputs], directory, encoding)
    return Loaded(rows=[row for rows in parsed for row in rows], inputs=inputs, encoding=encoding)


def verify_local_copy(
    directory: Path, required: Iterable[str], registry: Mapping[str, DatasetSpec] | None = None
) -> dict[str, dict[str, str]]:
    """``{dataset: {file: sha256}}`` for every registered dataset whose files are in ``directory``.

    The datasets in ``required`` must be complete; every file present is checked against its pin.
    The result does not depend on ``required``, so changing the grid does not re-fetch.
    """
    registry = REGISTRY if registry is None else registry
    required = set(required)
    out: dict[str, dict[str, str]] = {}
    for name, spec in registry.items():
        present = any((directory / part.path).is_file() for part in spec.local.parts)
        if not present and name not in required:
            continue
        blobs = read_verified(spec, directory)
        out[name] = {part.path: hashlib.sha256(data).hexdigest() for part, (_, data) in zip(spec.local.parts, blobs, strict=True)}
    return out
