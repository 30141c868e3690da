"""The locked environment: ``requirements.lock`` pins every installed distribution.

``run.json`` records the versions of torch, transformers and pytorch-metric-learning, so a fresh
install that resolved a newer transformers changes every ``train`` output in ``dvc.lock`` (and a
later release may change the numbers). The README's install applies the lock (``pip install -c
requirements.lock ...``); ``check`` warns when what is installed differs from it.
"""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

LOCK_FILE = "requirements.lock"
_PIN = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)")


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path) -> dict[str, str]:
    """``{normalised name: version}`` of the ``name==version`` lines of a lock file."""
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = _PIN.match(line.strip())
        if match:
            pins[_normal(match.group(1))] = match.group(2)
    return pins


def drift(lock: dict[str, str]) -> list[tuple[str, str, str]]:
    """``(name, locked, installed)`` for each locked distribution installed at another version (a local
    label such as ``+cpu`` is not a difference; a distribution that is not installed is not either)."""
    out = []
    for name, locked in sorted(lock.items()):
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        if installed.split("+")[0] != locked.split("+")[0]:
            out.append((name, locked, installed))
    return out


def drift_message(root: Path) -> str | None:
    """One line naming every distribution that differs from ``<root>/requirements.lock``; None if none
    does (or there is no lock file)."""
    path = Path(root) / LOCK_FILE
    if not path.is_file():
        return None
    found = drift(read_lock(path))
    if not found:
        return None
    listed = ", ".join(f"{name} {installed} (locked {locked})" for name, locked, installed in found)
    return (
        f"the installed versions differ from {LOCK_FILE}: {listed}; outputs may differ from the committed dvc.lock "
        f'(install with: pip install -c {LOCK_FILE} -e ".[dev]")'
    )
