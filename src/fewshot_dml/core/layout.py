"""Names of the pipeline's per-cell files. Directories come from dvc.yaml; names come from here.

Stage granularity follows cost (bench/results.md): one ``sample`` stage per (dataset, size) writes a
directory with one split file per seed, and one ``train`` stage per (dataset, size, arm) writes a
directory with one run directory per seed, so a cell's path is ``<group>/<seed>``. A contract test
checks that the patterns in dvc.yaml produce the same names.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def split_group(dataset: str, size: int) -> str:
    """data/splits/<split_group>/: the sample stage of (dataset, size), one file per seed."""
    return f"{dataset}-{size}"


def split_id(dataset: str, size: int, seed: int) -> str:
    return f"{split_group(dataset, size)}/{int(seed)}"


def split_file(seed: int) -> str:
    """The file name of a seed's split inside its (dataset, size) directory: ``<seed>.json``."""
    return f"{int(seed)}{SPLIT_SUFFIX}"


def seed_dir(seed: int) -> str:
    """The name of a seed's run directory inside its (dataset, size, arm) directory: ``<seed>``."""
    return str(int(seed))


def run_group(dataset: str, size: int, arm: str) -> str:
    """data/runs/<run_group>/: the train stage of (dataset, size, arm), one run directory per seed."""
    return f"{dataset}-{size}-{arm}"


def run_id(dataset: str, size: int, seed: int, arm: str) -> str:
    return f"{run_group(dataset, size, arm)}/{seed_dir(seed)}"


def grid(datasets: Sequence[str], sizes: Sequence[int], seeds: Sequence[int], arms: Sequence[str]) -> list[tuple[str, int, int, str]]:
    """Every (dataset, size, seed, arm) cell of an experiment, in the order reports list them."""
    return [(d, size, seed, arm) for d in datasets for size in sizes for seed in seeds for arm in arms]


TABLE_SUFFIX = ".jsonl"  # data/raw/<dataset>.jsonl
CARD_SUFFIX = ".card.json"  # data/raw/<dataset>.card.json
SPLIT_SUFFIX = ".json"  # data/splits/<split_id>.json
INFER_SUFFIX = ".json"  # data/infer/<run_id>.json


def workspace_root(root: Path) -> Path:
    """The user's workspace for a repository root ``root``.

    DVC runs ``exp run --temp`` and queued experiments in a copy of the repository under
    ``<workspace>/.dvc/tmp/`` (e.g. ``.dvc/tmp/exps/standalone/tmpXXXX``), where a path relative
    to the root such as ``../shared/senteval`` would point inside ``.dvc/tmp``. Relative paths are
    resolved against the workspace those copies belong to instead, so every run sees one place.
    """
    root = Path(root).resolve()
    for parent in root.parents:
        if parent.name == "tmp" and parent.parent.name == ".dvc":
            return parent.parent.parent
    return root
