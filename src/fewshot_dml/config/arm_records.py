"""``data/raw/arms/<arm>.json``: which loss file each arm of the grid trains with, and its sha256.

A loss is one file found by name at run time (:mod:`fewshot_dml.losses`), so no stage imports it
statically and ``dvc.yaml`` cannot list it per arm (a variant's file is its base's, which only
``params.yaml`` knows). The always-run ``check`` stage writes this record per arm instead, and each
``train`` stage depends on its arm's record: editing one loss file retrains only the arms that use it,
and adding a loss file retrains nothing.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from fewshot_dml.config.params import Params
from fewshot_dml.core import io
from fewshot_dml.losses import loss_file

RECORD_SUFFIX = ".json"  # data/raw/arms/<arm>.json


def arm_record(params: Params, arm: str) -> dict[str, str]:
    """The record of ``arm``: its loss file (a variant's base) relative to the package, and its sha256."""
    base = params.losses[arm].base
    path = loss_file(base)
    return {
        "arm": arm,
        "loss": base,
        "file": f"losses/{path.name}",
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }


def write_arm_records(params: Params, out_dir: Path) -> list[str]:
    """One record per arm of the grid in ``out_dir`` (replaced whole); returns the arms written."""
    out_dir = Path(out_dir)
    records = {arm: arm_record(params, arm) for arm in params.arms}
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    for arm, record in records.items():
        io.write_json(out_dir / f"{arm}{RECORD_SUFFIX}", record)
    return list(records)
