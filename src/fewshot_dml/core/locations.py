"""Whether a name in params.yaml is a place in the workspace or may be a hub repository.

One rule for ``train.model`` and for ``own_datasets.<name>.source``: a name that could be a path in
the workspace is never looked up on the hub, because online the hub would answer for a missing
folder with whatever repository has that name (this happened in a cluster shard, whose git clone
lacks the untracked model folder). A name is a workspace location when

- it is written as a path (``/``, ``.``, ``~``, a backslash, a trailing ``/``, or more than one ``/``,
  which no hub id has), or
- it exists under the workspace root, or its first component does, or git ignores its first
  component (a ``models/`` folder listed in ``.gitignore`` is a local folder even in a clone that
  lacks it).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from fewshot_dml.core.layout import workspace_root


def resolve(name: str, root: Path) -> Path:
    """``name`` as a path: absolute as is, relative to the workspace root otherwise."""
    path = Path(name).expanduser()
    return path if path.is_absolute() else workspace_root(root) / path


def _git_ignored(first: str, workspace: Path) -> bool:
    try:
        done = subprocess.run(["git", "check-ignore", "-q", "--", first], cwd=workspace, capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):  # no git, or not a repository: nothing is ignored
        return False
    return done.returncode == 0


def is_workspace_location(name: str, root: Path) -> bool:
    """Whether ``name`` (without any ``@revision``) names a place in the workspace (module docstring)."""
    if not name or name.startswith(("/", ".", "~")) or "\\" in name or name.endswith("/") or name.count("/") > 1:
        return True
    workspace = workspace_root(root)
    first = name.split("/")[0]
    return (workspace / name).exists() or (workspace / first).exists() or _git_ignored(first, workspace)
