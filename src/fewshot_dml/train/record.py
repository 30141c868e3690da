"""What a run reads and records: its inputs, cross-checked, the majority baseline, and ``run.json``."""

from __future__ import annotations

import dataclasses
import importlib.metadata
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from fewshot_dml.catalog.arms import KIND_SETFIT
from fewshot_dml.config.loss_sections import LossParams
from fewshot_dml.config.sections import TrainParams
from fewshot_dml.core import io
from fewshot_dml.data.sampling import check_split
from fewshot_dml.data.table import read_card_and_table
from fewshot_dml.losses import get_spec
from fewshot_dml.model.ref import Resolved


def majority_accuracy(table_labels: np.ndarray, eval_labels: np.ndarray) -> float:
    """Accuracy on the evaluation set of always predicting the table's most frequent class (ties: lowest id)."""
    majority = int(np.bincount(table_labels).argmax())
    return float(np.mean(np.asarray(eval_labels) == majority))


def read_labelled_table(table_path: Path, card_path: Path) -> tuple[dict, pd.DataFrame]:
    """Card and table, verified against the card's sha256, every label one of the card's classes."""
    card, table = read_card_and_table(card_path, table_path, ("dataset", "label_names"))
    num_classes = len(card["label_names"])
    labels = table["label"].to_numpy()
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        raise ValueError(
            f"{table_path}: row {int(bad[0])} has label {int(labels[bad[0]])}; expected "
            f"0..{num_classes - 1} ({num_classes} label_names in {card_path})"
        )
    return card, table


def read_split(split_path: Path, card: Mapping[str, Any], table: pd.DataFrame, table_path: Path) -> dict:
    """The split at ``split_path``, checked to be one of this (card, table)'s splits."""
    split = io.read_json(split_path)
    try:
        check_split(split, card["dataset"], len(table), card["table_sha256"])
    except ValueError as err:
        raise ValueError(f"{split_path}: {err} (table {table_path})") from None
    return split


def run_record(
    card: Mapping[str, Any],
    split: Mapping[str, Any],
    train: TrainParams,
    loss: LossParams,
    model: Resolved,
    embedding_size: int,
    num_classes: int,
) -> dict[str, Any]:
    """``run.json``: the resolved inputs of the run."""
    import pytorch_metric_learning
    import transformers

    return {
        "dataset": card["dataset"],
        "size": split["size"],
        "seed": split["seed"],
        "arm": loss.name,
        "train": dataclasses.asdict(train),
        "loss": {
            "name": loss.name,
            "base": loss.base,
            "beta": loss.beta,
            "proxy_lr": loss.proxy_lr,
            "hparams": dict(loss.hparams),
            "dml_on": loss.dml_on,
            "metrix": None if loss.metrix is None else dataclasses.asdict(loss.metrix),
        },
        "model": model.record,
        "embedding_size": embedding_size,
        "num_classes": num_classes,
        "label_names": list(card["label_names"]),
        "table_sha256": card["table_sha256"],
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "pytorch_metric_learning": pytorch_metric_learning.__version__,
            **({"setfit": importlib.metadata.version("setfit")} if get_spec(loss.base).kind == KIND_SETFIT else {}),
        },
    }
