"""The training loop of one (dataset, size, seed, arm) cell and its run directory.

``train_run`` reads the table, card and split, seeds everything from the split's seed, fine-tunes
the classifier for a fixed budget of optimisation steps (``train.steps`` or ``train.epochs``) on
the few-shot set, then embeds the evaluation and training sets with the final model and writes the run directory of
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
from fewshot_dml.model.batching import is_pair_table, tokenize
from fewshot_dml.model.classifier import Pretrained, TextClassifier, load_classifier, load_pretrained
from fewshot_dml.model.device import resolve_device, torch_settings
from fewshot_dml.model.ref import Resolved, resolve
from fewshot_dml.train.health import diagnose
from fewshot_dml.train.loop import embed, fit, float16, seed_everything
from fewshot_dml.train.objective import Objective, build_objective
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
    fit = _fit_setfit if get_spec(loss.base).kind == KIND_SETFIT else _fit_finetune
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


def _fit_finetune(
    train: TrainParams,
    loss: LossParams,
    table: pd.DataFrame,
    split: Mapping[str, Any],
    num_classes: int,
    device: torch.device,
    phases: Phases,
    shared: Shared,
) -> dict[str, Any]:
    """CCE or CCE + DML: fine-tune the classifier, then embed every part of the split."""
    with phases("load"):
        pretrained = shared.loaded("classifier", lambda: load_pretrained(train.model, shared.model.directory))
    model, tokenizer, objective, curve, arrays = _train_and_embed(train, loss, table, split, num_classes, device, phases, pretrained)
    if get_spec(loss.base).has_proxies:
        with phases("embed"):
            _add_class_scores(objective, arrays)
    return {
        "curve": curve,
        "arrays": arrays,
        "embedding_size": model.embedding_size,
        "loss_state": {} if objective.dml is None else {k: v.cpu() for k, v in objective.dml.state_dict().items()},
        "save_model": lambda path: model.cpu().save(path, tokenizer),
    }


def check_loss(train: TrainParams, loss: LossParams) -> None:
    spec = get_spec(loss.base)
    if spec.needs_pairs and train.sampler == "random":
        raise ValueError(
            f"loss {loss.name!r} needs >= 2 examples of a class per batch, which "
            "train.sampler='random' does not guarantee; set train.sampler: balanced"
        )
    if spec.has_proxies and loss.proxy_lr is None:
        raise ValueError(f"losses.{loss.name}.proxy_lr is missing; the loss has learnable proxies")


def fit_classifier(
    train: TrainParams,
    loss: LossParams,
    table: pd.DataFrame,
    rows: Sequence[int],
    seed: int,
    num_classes: int,
    device: torch.device,
    phases: Phases,
    pretrained: Pretrained,
) -> tuple[TextClassifier, Any, Objective, list, list]:
    """Seed, build (a copy of ``pretrained``), fine-tune on ``table``'s ``rows``: the model, its tokenizer,
    the objective, the training curve and the tokenised rows. The train stage and the Python API
    (:mod:`fewshot_dml.api`) both train through here."""
    with phases("load"):
        generator = seed_everything(seed)
        model, tokenizer = load_classifier(train, num_classes, pretrained=pretrained)
        # Proxies draw from a forked RNG so that both arms of a seed see the same dropout masks.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            objective = build_objective(loss, num_classes, model.embedding_size, depth=model.depth, seed=seed)
        model.to(device)
        objective.to(device)
    with phases("fit"):
        labels = table["label"].to_numpy(np.int64)
        features = tokenize(tokenizer, table, list(rows), train.max_length, is_pair_table(table))
        curve = fit(model, objective, tokenizer, features, labels[list(rows)], train, loss, device, generator)
    return model, tokenizer, objective, curve, features


def _train_and_embed(
    train: TrainParams,
    loss: LossParams,
    table: pd.DataFrame,
    split: Mapping[str, Any],
    num_classes: int,
    device: torch.device,
    phases: Phases,
    pretrained: Pretrained,
) -> tuple[TextClassifier, Any, Objective, list, dict]:
    """:func:`fit_classifier` on the split's training rows; then the arrays of ``eval.npz`` and ``train.npz`` (dtypes of the contract)."""
    fitted = fit_classifier(train, loss, table, split["train"], int(split["seed"]), num_classes, device, phases, pretrained)
    model, tokenizer, objective, curve, train_features = fitted
    pair = is_pair_table(table)
    labels = table["label"].to_numpy(np.int64)
    arrays = {}
    with phases("embed"):
        for part in ("eval", "dev", "train"):
            rows = list(split[part])
            features = train_features if part == "train" else tokenize(tokenizer, table, rows, train.max_length, pair) if rows else []
            logits, emb = embed(model, tokenizer, features, train.eval_batch_size, device, model.num_labels)
            arrays[part] = {
                "logits": logits.astype(np.float32),
                "embeddings": float16(emb),
                "labels": labels[rows],
                "indices": np.asarray(rows, np.int64),
            }
    del arrays["train"]["logits"]
    return model, tokenizer, objective, curve, arrays


@torch.no_grad()
def _add_class_scores(objective: Objective, arrays: dict[str, dict[str, np.ndarray]]) -> None:
    """The loss's own class scores of the stored (float16) eval and dev embeddings, as ``scores``.

    Computed here, once, on a float32 CPU copy of the trained loss module, so that inference is
    numpy on saved arrays and needs neither torch nor PML (bench/results.md).
    """
    module = copy.deepcopy(objective.dml).cpu().float().eval()
    spec = objective.spec
    for part in ("eval", "dev"):
        emb = torch.from_numpy(arrays[part]["embeddings"].astype(np.float32))
        scores = spec.class_scores(module, emb).float().numpy() if len(emb) else np.zeros(arrays[part]["logits"].shape, np.float32)
        arrays[part]["scores"] = scores.astype(np.float32)
