"""The training loop of one (dataset, size, seed, arm) cell and its run directory.

``train_run`` reads the table, card and split, seeds everything from the split's seed, fine-tunes
the classifier for a budget of optimisation steps (``train.steps`` or ``train.epochs``) on the
few-shot set, keeping the checkpoint with the best development accuracy (``train.dev_checkpoints``),
then embeds the evaluation and training sets with that model and writes the run directory of
docs/architecture.md atomically (a run that fails half-way leaves no directory behind).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from fewshot_dml.catalog.arms import KIND_SETFIT
from fewshot_dml.config.loss_sections import LossParams
from fewshot_dml.config.sections import TrainParams
from fewshot_dml.core import io, layout, rundir
from fewshot_dml.core.timing import Phases
from fewshot_dml.infer.inference import accuracy_f1
from fewshot_dml.losses import get_spec
from fewshot_dml.model.device import resolve_device, torch_settings
from fewshot_dml.model.ref import Resolved, resolve
from fewshot_dml.train.finetune import fit_finetune
from fewshot_dml.train.health import diagnose
from fewshot_dml.train.loop import float16
from fewshot_dml.train.record import majority_accuracy, read_labelled_table, read_split, run_record

logger = logging.getLogger(__name__)


class Shared:
    """What every seed of a group reads alike, read once: the table and card (verified once), and
    ``train.model`` loaded by the first run that needs it; each run trains a deep copy of it."""

    def __init__(self, model: Resolved, table_path: Path, card_path: Path) -> None:
        self.model = model
        self.table_path = Path(table_path)
        self.card, self.table = read_labelled_table(self.table_path, Path(card_path))
        self._loaded: dict[str, Any] = {}

    def loaded(self, kind: str, load: Callable[[], Any]) -> Any:
        """The ``kind`` of model (``classifier`` or ``setfit``), loaded by ``load()`` the first time."""
        if kind not in self._loaded:
            self._loaded[kind] = load()
        return self._loaded[kind]


def train_group(
    train: TrainParams,
    loss: LossParams,
    table_path: Path,
    card_path: Path,
    splits_dir: Path,
    seeds: Sequence[int],
    out_dir: Path,
    phases: Phases | None = None,
) -> dict[int, dict[str, Any]]:
    """Every seed's run of one (dataset, size, arm): ``out_dir/<seed>/``, written atomically as a whole.

    One process trains every seed: the imports, the model's load and the table's read and checksum
    are paid once, not once per seed (:class:`Shared`), and DVC has one stage to record instead of
    five (bench/results.md). Each seed trains a fresh copy of the pretrained model, so its run is
    exactly the run ``train_run`` writes on its own (tested byte for byte).
    """
    phases = Phases() if phases is None else phases
    with phases("read"):
        shared = Shared(resolve(train.model), table_path, card_path)
    runs: dict[int, dict[str, Any]] = {}
    with io.atomic_dir(out_dir) as tmp:
        for k, seed in enumerate(seeds, 1):
            logger.info("%s seed %s [%d/%d]", Path(out_dir).name, seed, k, len(seeds))
            runs[int(seed)] = train_run(
                train,
                loss,
                table_path,
                card_path,
                Path(splits_dir) / layout.split_file(seed),
                tmp / layout.seed_dir(seed),
                phases,
                run_name=Path(out_dir).name,  # the seed directories are written inside a temporary folder
                shared=shared,
            )
    return runs


def train_run(
    train: TrainParams,
    loss: LossParams,
    table_path: Path,
    card_path: Path,
    split_path: Path,
    out_dir: Path,
    phases: Phases | None = None,
    run_name: str | None = None,
    shared: Shared | None = None,
) -> dict[str, Any]:
    """Train one run and write ``out_dir`` (see docs/architecture.md); return its metrics.
    ``run_name`` names the run in warnings with the split's seed (``sst2-16-setfit seed 0``); default: ``out_dir``'s name.
    ``shared`` is the group's :class:`Shared` inputs (of ``table_path`` and ``card_path``), or None to read them here.

    ``phases`` collects where the wall time goes (:mod:`fewshot_dml.core.timing`); it never goes into
    the run directory: a DVC output must hash the same for the same params and seed.
    """
    phases = Phases() if phases is None else phases
    with phases("read"):
        shared = Shared(resolve(train.model), table_path, card_path) if shared is None else shared
        card, table = shared.card, shared.table
        split = read_split(Path(split_path), card, table, shared.table_path)
    model = shared.model
    check_loss(train, loss)
    num_classes = len(card["label_names"])
    device = resolve_device(train.device)
    started = time.perf_counter()
    fit = _fit_setfit if get_spec(loss.base).kind == KIND_SETFIT else fit_finetune
    with torch_settings(device, train.threads):
        fitted = fit(train, loss, table, split, num_classes, device, phases, shared)
    curve, arrays = fitted["curve"], fitted["arrays"]
    no_pairs = sum(1 for row in curve if not row["pairs_ok"])
    if no_pairs:
        logger.warning("%d of %d batches had no positive and negative pair: their DML term was skipped", no_pairs, len(curve))
    ev, dev = arrays["eval"], arrays["dev"]
    degenerate = diagnose([row["loss"] for row in curve], ev["logits"], ev["embeddings"], ev["labels"])
    for symptom in degenerate:
        logger.warning("%s seed %s is degenerate: %s", run_name or Path(out_dir).name, split["seed"], symptom)
    dev_scores = (
        accuracy_f1(dev["labels"], dev["logits"].argmax(axis=1), num_classes)
        if len(dev["labels"])
        else {"accuracy": None, "macro_f1": None}
    )
    metrics = {
        **accuracy_f1(ev["labels"], ev["logits"].argmax(axis=1), num_classes),
        "dev_accuracy": dev_scores["accuracy"],
        "dev_macro_f1": dev_scores["macro_f1"],
        "majority_accuracy": majority_accuracy(table["label"].to_numpy(np.int64), ev["labels"]),
        "n_train": len(split["train"]),
        "n_dev": len(split["dev"]),
        "n_eval": len(split["eval"]),
        "num_classes": num_classes,
        "steps": len(curve),
        **fitted["checkpoints"],  # selected_step, dev_checkpoints (train.dev_checkpoints)
        "batches_without_pairs": no_pairs,
        "device": device.type,
        "degenerate": degenerate,
    }
    seconds = time.perf_counter() - started
    with phases("write"):
        rundir.write(
            out_dir,
            eval_arrays=ev,
            dev_arrays=dev,
            train_arrays=arrays["train"],
            loss_state=fitted["loss_state"],
            curve=curve,
            metrics=metrics,
            record=run_record(card, split, train, loss, model, fitted["embedding_size"], num_classes),
            save_model=fitted["save_model"] if train.keeps_weights(card["dataset"]) else None,
        )
    logger.info(
        "%s seed %s: accuracy %.4f, macro-F1 %.4f (%d steps, %.1f s on %s)",
        loss.name,
        split["seed"],
        metrics["accuracy"],
        metrics["macro_f1"],
        len(curve),
        seconds,
        device.type,
    )
    return metrics


def _fit_setfit(
    train: TrainParams,
    loss: LossParams,
    table: pd.DataFrame,
    split: Mapping[str, Any],
    num_classes: int,
    device: torch.device,
    phases: Phases,
    shared: Shared,
) -> dict[str, Any]:
    from fewshot_dml.train.setfit import fit_setfit, load_setfit, save_setfit

    with phases("load"):
        template = shared.loaded("setfit", lambda: load_setfit(train, shared.model.directory, device))
        model = copy.deepcopy(template)
    fitted = fit_setfit(train, loss, table, split, num_classes, device, phases, model)
    arrays = {
        part: {
            k: float16(v) if k == "embeddings" else (v.astype(np.float32) if k == "logits" else v)
            for k, v in fitted["arrays"][part].items()
        }
        for part in ("eval", "dev", "train")
    }
    model = fitted.pop("model")
    return {**fitted, "arrays": arrays, "loss_state": {}, "save_model": lambda path: save_setfit(model, path)}


def check_loss(train: TrainParams, loss: LossParams) -> None:
    spec = get_spec(loss.base)
    if spec.needs_pairs and train.sampler == "random":
        raise ValueError(
            f"loss {loss.name!r} needs >= 2 examples of a class per batch, which "
            "train.sampler='random' does not guarantee; set train.sampler: balanced"
        )
    if spec.has_proxies and loss.proxy_lr is None:
        raise ValueError(f"losses.{loss.name}.proxy_lr is missing; the loss has learnable proxies")
