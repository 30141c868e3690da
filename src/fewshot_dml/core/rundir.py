"""The run directory ``data/runs/<run_id>/``: the one module that names, writes and reads its files.

The train stage writes it (atomically, through :func:`write`); inference reads the arrays (with
the loss's stored class scores) and ``run.json``; aggregate reads the metrics, ``run.json`` and the
curve. The formats are specified in docs/architecture.md.
"""

from __future__ import annotations

import csv
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fewshot_dml.core import io

EVAL = "eval.npz"
DEV = "dev.npz"  # the development set (zero rows when sample.dev_ratio is 0)
TRAIN = "train.npz"
LOSS_STATE = "loss_state.pt"
CURVE = "curve.csv"
METRICS = "metrics.json"
RUN = "run.json"
MODEL = "model"  # only with train.save_weights
CURVE_COLUMNS = ("step", "lr", "loss", "cce", "dml", "pairs_ok")
_NPZ_TIME = (1980, 1, 1, 0, 0, 0)  # fixed zip entry timestamp (the earliest zip allows)


def write(
    out_dir: Path,
    *,
    eval_arrays: Mapping[str, np.ndarray],
    dev_arrays: Mapping[str, np.ndarray],
    train_arrays: Mapping[str, np.ndarray],
    loss_state: Mapping[str, Any],
    curve: Sequence[Mapping[str, Any]],
    metrics: Mapping[str, Any],
    record: Mapping[str, Any],
    save_model: Callable[[Path], None] | None = None,
) -> None:
    """Write a complete run directory atomically (a failure leaves no directory behind)."""
    import torch

    with io.atomic_dir(out_dir) as tmp:
        write_npz(tmp / EVAL, **eval_arrays)
        write_npz(tmp / DEV, **dev_arrays)
        write_npz(tmp / TRAIN, **train_arrays)
        torch.save(dict(loss_state), tmp / LOSS_STATE)
        write_curve(tmp / CURVE, curve)
        io.write_json(tmp / METRICS, metrics)
        io.write_json(tmp / RUN, record)
        if save_model is not None:
            save_model(tmp / MODEL)


def write_npz(path: Path, **arrays: np.ndarray) -> None:
    """``np.savez`` (uncompressed, loadable by ``np.load``) with fixed zip timestamps.

    Written by hand because ``np.savez`` stamps every entry with the current time, so two
    identical runs would not give byte-identical files.
    """
    with zipfile.ZipFile(path, mode="w", compression=zipfile.ZIP_STORED) as archive:
        for key, value in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_NPZ_TIME)
            with archive.open(info, mode="w", force_zip64=True) as handle:
                np.lib.format.write_array(handle, np.asanyarray(value), allow_pickle=False)


def write_curve(path: Path, curve: Sequence[Mapping[str, Any]]) -> None:
    """``curve.csv``: ``cce``/``dml`` are empty where the arm has no such term; ``pairs_ok`` is 1 or 0.

    ``loss`` is what was optimised: beta * cce + (1 - beta) * dml (+ Metrix's mixed term) for a DML
    arm, cce for the baseline, SetFit's pair loss (in ``dml``) for SetFit.
    """
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(CURVE_COLUMNS)
        for row in curve:
            writer.writerow(
                [
                    row["step"],
                    repr(float(row["lr"])),
                    repr(row["loss"]),
                    "" if row["cce"] is None else repr(row["cce"]),
                    "" if row["dml"] is None else repr(row["dml"]),
                    int(row["pairs_ok"]),
                ]
            )


def require(path: Path) -> Path:
    """``path`` if it is a file; FileNotFoundError naming the run artifacts otherwise."""
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: missing run artifact; expected the train stage's output "
            f"({EVAL}, {DEV}, {TRAIN}, {LOSS_STATE}, {CURVE}, {METRICS}, {RUN})"
        )
    return path


# What np.load (and reading an array out of it) raises for a file that is truncated or no npz at all.
NPZ_ERRORS: tuple[type[BaseException], ...] = (zipfile.BadZipFile, EOFError, ValueError, OSError)
RERUN = "expected the train stage's output, rerun dvc repro"


def unreadable_npz(path: Path | str, err: BaseException, expected: str = RERUN) -> ValueError:
    """The error for an npz file that cannot be read: names the file, the cause and ``expected``."""
    return ValueError(f"{path}: cannot read it (truncated or not an npz: {type(err).__name__}: {err}); {expected}")


def read_npz(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The arrays ``keys`` of an npz file of the run; ValueError naming the file if one is missing or
    the file cannot be read (truncated, or not an npz)."""
    require(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in keys if k not in npz.files]
            if not missing:
                return {k: npz[k] for k in keys}
            found = sorted(npz.files)
    except NPZ_ERRORS as err:
        raise unreadable_npz(path, err) from err
    raise ValueError(f"{path}: missing arrays {missing}; expected keys {list(keys)}, found {found}")


def read_curve(path: Path) -> tuple[tuple[int, float, float, float], ...]:
    """``(step, loss, cce, dml)`` per optimisation step of ``curve.csv`` (NaN for an absent term)."""
    import pandas as pd

    curve = pd.read_csv(path)
    for column in ("step", "loss", "cce", "dml"):
        if column not in curve.columns:
            raise ValueError(f"{path}: missing column {column!r}; columns are {list(curve.columns)}")
    if curve.empty:
        raise ValueError(f"{path}: no optimisation steps recorded")
    return tuple(zip(curve["step"].astype(int).tolist(), *(curve[c].astype(float).tolist() for c in ("loss", "cce", "dml")), strict=True))
