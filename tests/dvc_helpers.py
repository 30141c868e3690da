"""Running DVC in a temporary repository, for the end-to-end tests."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from code_deps import PIPELINE_FILES

CHECK = "check/dvc.yaml:check"  # the check stage's address, as DVC prints it


def copy_pipeline(root: Path, repo: Path) -> None:
    """The pipeline files of ``root`` into ``repo``, at the same relative paths."""
    for name in PIPELINE_FILES:
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_bytes((root / name).read_bytes())


def copy_project(root: Path, repo: Path, folders: tuple[str, ...] = ("stages", "src"), model: Path | None = None) -> None:
    """The pipeline files, pyproject.toml and ``folders`` of ``root`` into ``repo``; ``model`` (a local checkpoint),
    when given, as the untracked ``models/tiny`` that params name relative to the workspace."""
    copy_pipeline(root, repo)
    shutil.copy(root / "pyproject.toml", repo / "pyproject.toml")
    for name in folders:
        shutil.copytree(root / name, repo / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    ignored = (root / ".gitignore").read_text()
    if model is not None:
        shutil.copytree(model, repo / "models" / "tiny")
        ignored += "/models/\n"
    (repo / ".gitignore").write_text(ignored)


def run(cmd: list[str], cwd: Path, ok: bool = True) -> str:
    """Run ``cmd`` offline with this interpreter's tools first on PATH; its output. Fails the test
    unless it exits 0 (``ok``) or non-zero (``ok=False``)."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    env.update(FEWSHOT_DML_LOG="WARNING", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    out = proc.stdout + proc.stderr
    assert (proc.returncode == 0) == ok, f"{' '.join(cmd)} exited {proc.returncode}:\n{out[-6000:]}"
    return out


def ran(out: str) -> list[str]:
    """The stages a DVC command ran, in order."""
    return re.findall(r"Running stage '([^']+)'", out)


def init_repo(repo: Path) -> None:
    """``git init`` and ``dvc init`` in ``repo``, with a committer, without analytics, and with this checkout's
    plot templates (``.dvc/plots``, which dvc.yaml's plots name)."""
    run(["git", "init", "-q"], repo)
    run(["git", "config", "user.email", "ci@example.invalid"], repo)
    run(["git", "config", "user.name", "ci"], repo)
    run(["dvc", "init", "-q"], repo)
    run(["dvc", "config", "core.analytics", "false"], repo)
    shutil.copytree(Path(__file__).resolve().parents[1] / ".dvc" / "plots", repo / ".dvc" / "plots", dirs_exist_ok=True)
