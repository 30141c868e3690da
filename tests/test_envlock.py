"""requirements.lock: the environment the committed dvc.lock was made in, applied by the README install."""

from __future__ import annotations

import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

from fewshot_dml.core import envlock

ROOT = Path(__file__).resolve().parents[1]


def test_the_lock_pins_every_declared_dependency_and_this_environment_matches_it() -> None:
    lock = envlock.read_lock(ROOT / envlock.LOCK_FILE)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"] + [d for extra in project["optional-dependencies"].values() for d in extra]
    names = {re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9._-]+", d).group(0)).lower() for d in declared}
    assert names - set(lock) == set()
    assert lock["torch"] == "2.13.0"  # the CPU wheel on disk, without its local label
    # CI installs with `-c requirements.lock` (README): any drift here means the lock is stale or unused.
    assert envlock.drift(lock) == []


def test_drift_names_each_differing_version_and_ignores_local_labels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    installed = {"transformers": "5.25.0", "torch": "2.13.0+cpu", "numpy": "2.4.6"}

    def version(name: str) -> str:
        if name not in installed:
            raise importlib.metadata.PackageNotFoundError(name)
        return installed[name]

    monkeypatch.setattr(importlib.metadata, "version", version)
    (tmp_path / envlock.LOCK_FILE).write_text("# comment\nTransformers==5.24.0\ntorch==2.13.0\nnumpy==2.4.6\nnot-installed==1.0\n")
    assert envlock.drift(envlock.read_lock(tmp_path / envlock.LOCK_FILE)) == [("transformers", "5.24.0", "5.25.0")]
    message = envlock.drift_message(tmp_path)
    assert message is not None and message.startswith(
        "the installed versions differ from requirements.lock: transformers 5.25.0 (locked 5.24.0);"
    )
    installed["transformers"] = "5.24.0"
    assert envlock.drift_message(tmp_path) is None
    assert envlock.drift_message(tmp_path / "elsewhere") is None  # no lock file: nothing to compare


def test_the_readme_names_exactly_the_python_versions_the_project_admits() -> None:
    specifier = SpecifierSet(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"])
    admitted = [f"3.{minor}" for minor in range(8, 20) if f"3.{minor}" in specifier]
    line = next(line for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines() if line.startswith("You need Python"))
    named = re.findall(r"\b3\.\d+\b", line.split(". ", 1)[0])  # its first sentence
    assert named == admitted, (line, admitted)
    assert f"{sys.version_info.major}.{sys.version_info.minor}" in admitted  # the suite runs on an admitted version
