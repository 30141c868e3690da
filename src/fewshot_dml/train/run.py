"""The training loop of one (dataset, size, seed, arm) cell and its run directory.

``train_run`` reads the table, card and split, seeds everything from the split's seed, fine-tunes
the classifier for a fixed budget of optimisation steps (``train.steps`` or ``train.epochs``) on
the few-shot set, then embeds the evaluation and training sets with the final model and writes the run directory of
docs/architecture.md atomically (a run that fails half-way leaves no directory behind).
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.metadata
import logging
import math
import random
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from fewshot_dml.core import io, rundir
from fewshot_dml.model.batching import collate, is_pair_table, make_batches, tokenize
from fewshot_dml.data.table import read_card_and_table
from fewshot_dml.model.device import precision_for, resolve_device, torch_settings
from fewshot_dml.train.health import diagnose
from fewshot_dml.infer.inference import accuracy_f1
from fewshot_dml.train.objective import Objective, build_objective
from fewshot_dml.losses.registry import get_spec
from fewshot_dml.model.ref import Resolved, resolve
from fewshot_dml.model.classifier import TextClassifier, load_classifier
from fewshot_dml.config.params import LossParams, TrainParams, training_steps
from fewshot_dml.data.sampling import check_split, split_file
from fewshot_dml.core.timing import Phases

logger = logging.getLogger(__name__)



def train_group(train: TrainParams, loss: LossParams, table_path: Path, card_path: Path, splits_dir: Path,
                seeds: Sequence[int], out_dir: Path, phases: Phases | None = None) -> dict[int, dict[str, Any]]:
    """Every seed's run of one (dataset, size, arm): ``out_dir/<seed>/``, written atomically as a whole.

    One process trains every seed: the imports are paid once, not once per seed, and DVC has one
    stage to record instead of five (bench/results.md). Each seed loads the model afresh, so its run
    is exactly the run ``train_run`` writes on its own (tested byte for byte). The model is resolved
    (and its weights hashed) once.
    """
    model = resolve(train.model)
    with io.atomic_dir(out_dir) as tmp:
        return {int(seed): train_run(train, loss, table_path, card_path, Path(splits_dir) / split_file(seed),
                                     tmp / str(int(seed)), phases, model)
                for seed in seeds}


def train_run(train: TrainParams, loss: LossParams, table_path: Path, card_path: Path, split_path: Path,
              out_dir: Path, phases: Phases | None = None, model: Resolved | None = None) -> dict[str, Any]:
    """Train one run and write ``out_dir`` (see docs/architecture.md); return its metrics.
    ``model`` is ``train.model`` resolved (:func:`fewshot_dml.model.ref.resolve`), or None to resolve it here.

    ``phases`` collects where the wall time goes (:mod:`fewshot_dml.core.timing`); it never goes into
    the run directory: a DVC output must hash the same for the same params and seed.
    """
    phases = Phases() if phases is None else phases
    with phases("read"):
        model = resolve(train.model) if model is None else model
        card, split, table = _read_inputs(Path(table_path), Path(card_path), Path(split_path))
    _check_loss(train, loss)
    num_classes = len(card["label_names"])
    device = resolve_device(train.device)
    started = time.perf_counter()
    fit = _fit_setfit if get_spec(loss.base).kind == "setfit" else _fit_finetune
    with torch_settings(device, train.threads):
        fitted = fit(train, loss, table, split, num_classes, device, phases, model.directory)
    curve, arrays = fitted["curve"], fitted["arrays"]
    no_pairs = sum(1 for row in curve if not row["pairs_ok"])
    if no_pairs:
        logger.warning("%d of %d batches had no positive and negative pair: their DML term was skipped",
                       no_pairs, len(curve))
    ev, dev = arrays["eval"], arrays["dev"]
    degenerate = diagnose([row["loss"] for row in curve], ev["logits"], ev["embeddings"], ev["labels"])
    for symptom in degenerate:
        logger.warning("%s is degenerate: %s", Path(out_dir).name, symptom)
    dev_scores = (accuracy_f1(dev["labels"], dev["logits"].argmax(axis=1), num_classes) if len(dev["labels"])
                  else {"accuracy": None, "macro_f1": None})
    metrics = {
        **accuracy_f1(ev["labels"], ev["logits"].argmax(axis=1), num_classes),
        "dev_accuracy": dev_scores["accuracy"], "dev_macro_f1": dev_scores["macro_f1"],
        "majority_accuracy": majority_accuracy(table["label"].to_numpy(np.int64), ev["labels"]),
        "n_train": len(split["train"]), "n_dev": len(split["dev"]), "n_eval": len(split["eval"]),
        "num_classes": num_classes, "steps": len(curve), "batches_without_pairs": no_pairs,
        "device": device.type, "degenerate": degenerate,
    }
    seconds = time.perf_counter() - started
    with phases("write"):
        rundir.write(
            out_dir, eval_arrays=ev, dev_arrays=dev, train_arrays=arrays["train"], loss_state=fitted["loss_state"],
            curve=curve, metrics=metrics,
            record=_run_record(card, split, train, loss, model, fitted["embedding_size"], num_classes),
            save_model=fitted["save_model"] if train.keeps_weights(card["dataset"]) else None)
    logger.info("%s seed %s: accuracy %.4f, macro-F1 %.4f (%d steps, %.1f s on %s)", loss.name, split["seed"],
                metrics["accuracy"], metrics["macro_f1"], len(curve), seconds, device.type)
    return metrics


def majority_accuracy(table_labels: np.ndarray, eval_labels: np.ndarray) -> float:
    """Accuracy on the evaluation set of always predicting the table's most frequent class (ties: lowest id)."""
    majority = int(np.bincount(table_labels).argmax())
    return float(np.mean(np.asarray(eval_labels) == majority))


def _fit_setfit(train: TrainParams, loss: LossParams, table: pd.DataFrame, split: Mapping[str, Any],
                num_classes: int, device: torch.device, phases: Phases, directory: str) -> dict[str, Any]:
    from fewshot_dml.train.setfit import fit_setfit, save_setfit

    fitted = fit_setfit(train, loss, table, split, num_classes, device, phases, directory)
    arrays = {part: {k: _float16(v) if k == "embeddings" else (v.astype(np.float32) if k == "logits" else v)
                     for k, v in fitted["arrays"][part].items()} for part in ("eval", "dev", "train")}
    model = fitted.pop("model")
    return {**fitted, "arrays": arrays, "loss_state": {}, "save_model": lambda path: save_setfit(model, path)}


def _fit_finetune(train: TrainParams, loss: LossParams, table: pd.DataFrame, split: Mapping[str, Any],
                  num_classes: int, device: torch.device, phases: Phases, directory: str) -> dict[str, Any]:
    """CCE or CCE + DML: fine-tune the classifier, then embed every part of the split."""
    model, tokenizer, objective, curve, arrays = _train_and_embed(train, loss, table, split, num_classes, device,
                                                                  phases, directory)
    if get_spec(loss.base).has_proxies:
        with phases("embed"):
            _add_class_scores(objective, arrays)
    return {
        "curve": curve, "arrays": arrays, "embedding_size": model.embedding_size,
        "loss_state": {} if objective.dml is None else {k: v.cpu() for k, v in objective.dml.state_dict().items()},
        "save_model": lambda path: model.cpu().save(path, tokenizer),
    }


def _check_loss(train: TrainParams, loss: LossParams) -> None:
    spec = get_spec(loss.base)
    if spec.needs_pairs and train.sampler == "random":
        raise ValueError(f"loss {loss.name!r} needs >= 2 examples of a class per batch, which "
                         "train.sampler='random' does not guarantee; set train.sampler: balanced")
    if spec.has_proxies and loss.proxy_lr is None:
        raise ValueError(f"losses.{loss.name}.proxy_lr is missing; the loss has learnable proxies")


def _train_and_embed(train: TrainParams, loss: LossParams, table: pd.DataFrame, split: Mapping[str, Any],
                     num_classes: int, device: torch.device, phases: Phases,
                     directory: str | None = None) -> tuple[TextClassifier, Any, Objective, list, dict]:
    """Seed, build, fit; then the arrays of ``eval.npz`` and ``train.npz`` (dtypes of the contract)."""
    seed = int(split["seed"])
    with phases("load"):
        generator = _seed_everything(seed)
        model, tokenizer = load_classifier(train, num_classes, directory)
        # Proxies draw from a forked RNG so that both arms of a seed see the same dropout masks.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            objective = build_objective(loss, num_classes, model.embedding_size, depth=model.depth, seed=seed)
        model.to(device)
        objective.to(device)
    with phases("fit"):
        pair = is_pair_table(table)
        labels = table["label"].to_numpy(np.int64)
        train_rows = list(split["train"])
        train_features = tokenize(tokenizer, table, train_rows, train.max_length, pair)
        curve = _fit(model, objective, tokenizer, train_features, labels[train_rows], train, loss, device, generator)
    arrays = {}
    with phases("embed"):
        for part in ("eval", "dev", "train"):
            rows = list(split[part])
            features = (train_features if part == "train" else
                        tokenize(tokenizer, table, rows, train.max_length, pair) if rows else [])
            logits, emb = embed(model, tokenizer, features, train.eval_batch_size, device, model.num_labels)
            arrays[part] = {"logits": logits.astype(np.float32), "embeddings": _float16(emb),
                            "labels": labels[rows], "indices": np.asarray(rows, np.int64)}
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
        scores = (spec.class_scores(module, emb).float().numpy() if len(emb)
                  else np.zeros(arrays[part]["logits"].shape, np.float32))
        arrays[part]["scores"] = scores.astype(np.float32)


def _read_inputs(table_path: Path, card_path: Path, split_path: Path) -> tuple[dict, dict, pd.DataFrame]:
    """Card, split and table, cross-checked: the split must be one of this table's splits."""
    card, table = read_card_and_table(card_path, table_path, ("dataset", "label_names"))
    split = io.read_json(split_path)
    try:
        check_split(split, card["dataset"], len(table), card["table_sha256"])
    except ValueError as err:
        raise ValueError(f"{split_path}: {err} (table {table_path})") from None
    num_classes = len(card["label_names"])
    labels = table["label"].to_numpy()
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        raise ValueError(f"{table_path}: row {int(bad[0])} has label {int(labels[bad[0]])}; expected "
                         f"0..{num_classes - 1} ({num_classes} label_names in {card_path})")
    return card, split, table


def _seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch (dropout, head init) and return the sampler's own generator.

    numpy's legacy global state is seeded too because PML draws from it. (transformers' set_seed
    does the same, but importing it costs a second per run.)
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # CPU and every CUDA device
    return torch.Generator().manual_seed(seed)


def build_optimizer(model: TextClassifier, objective: Objective, train: TrainParams,
                    loss: LossParams) -> torch.optim.AdamW:
    """AdamW with groups: encoder (``lr``, decayed per layer by ``llrd``), head (``head_lr``), loss
    proxies (``proxy_lr``, no decay).

    Biases and LayerNorm weights get no weight decay (as transformers' Trainer).
    """
    groups: list[dict[str, Any]] = []
    encoder = list(model.encoder.named_parameters())
    # Layer-wise decay (ULMFiT's discriminative fine-tuning; Zhang et al. 2021): the top layer gets
    # `lr`, each layer below `llrd` times the one above. llrd = 1 is one encoder group, as before.
    depths = model.encoder_depths() if train.llrd < 1 else {name: 0 for name, _ in encoder}
    encoder_no_decay = _no_decay_names(model.encoder)
    parts = [([(n, p) for n, p in encoder if depths[n] == d], encoder_no_decay, train.lr * train.llrd ** d)
             for d in sorted(set(depths.values()))]
    head = nn.ModuleList([model.dense, model.out_proj])
    parts.append((list(head.named_parameters()), _no_decay_names(head), train.head_lr))
    for params, no_decay, lr in parts:
        groups.append({"params": [p for n, p in params if n not in no_decay], "lr": lr,
                       "weight_decay": train.weight_decay})
        groups.append({"params": [p for n, p in params if n in no_decay], "lr": lr, "weight_decay": 0.0})
    proxies = objective.proxy_parameters()
    if proxies:
        groups.append({"params": proxies, "lr": loss.proxy_lr, "weight_decay": 0.0})
    # The fused kernel is ~5x faster than the per-tensor loop on CPU (bench/results.md).
    fused = next(model.parameters()).device.type in ("cpu", "cuda")
    return torch.optim.AdamW([g for g in groups if g["params"]], eps=train.adam_eps, fused=fused)


def _no_decay_names(module: nn.Module) -> set[str]:
    from transformers.trainer_pt_utils import get_parameter_names

    decay = set(get_parameter_names(module, [nn.LayerNorm], ["bias", "layernorm", "rmsnorm"]))
    return {name for name, _ in module.named_parameters() if name not in decay}


def _fit(model: TextClassifier, objective: Objective, tokenizer: Any, features: Sequence[dict],
         labels: np.ndarray, train: TrainParams, loss: LossParams, device: torch.device,
         generator: torch.Generator) -> list[dict[str, Any]]:
    """:func:`~fewshot_dml.config.params.training_steps` optimisation steps; returns the per-step curve rows."""
    from transformers import get_scheduler

    optimizer = build_optimizer(model, objective, train, loss)
    steps = training_steps(train, len(features))
    scheduler = get_scheduler(train.scheduler, optimizer, num_warmup_steps=train.warmup_steps,
                              num_training_steps=steps)
    precision = precision_for(device)
    scaler = torch.amp.GradScaler("cuda", enabled=precision.scale_grads)
    batches = make_batches(train.sampler, labels.tolist(), train.batch_size, generator)
    label_tensor = torch.as_tensor(labels, dtype=torch.int64)
    model.train()
    objective.train()
    curve = []
    for step in tqdm(range(1, steps + 1), desc=f"train {loss.name}", unit="step", disable=None):
        idx = next(batches)
        batch = collate(tokenizer, [features[i] for i in idx], device)
        with precision.autocast(device):
            logits, pooled, states = model.forward_features(batch, objective.hidden_layer)
            out = objective(logits.float(), pooled.float(), label_tensor[idx].to(device), states,
                            model.encode_from)
        values = {key: None if value is None else float(value.detach())
                  for key, value in (("total", out.total), ("cce", out.cce), ("dml", out.dml))}
        if not all(v is None or math.isfinite(v) for v in values.values()):
            raise FloatingPointError(
                f"non-finite loss at step {step}/{steps} (loss {loss.name!r}): total={values['total']}, "
                f"cce={values['cce']}, dml={values['dml']}; try a lower train.lr / proxy_lr or check the inputs")
        lr = optimizer.param_groups[0]["lr"]
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(out.total).backward()
        if train.max_grad_norm > 0:
            # The model's norm only: proxies have their own learning rate and no decay.
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), train.max_grad_norm)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        curve.append({"step": step, "lr": lr, "loss": values["total"], "cce": values["cce"],
                      "dml": values["dml"], "pairs_ok": bool(out.pairs_ok)})
    return curve


@torch.no_grad()
def embed(model: TextClassifier, tokenizer: Any, features: Sequence[dict], batch_size: int,
          device: torch.device, num_classes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Logits (N, C) and pooled embeddings (N, D), float32, in eval mode, in the order of ``features``."""
    if not features:  # e.g. no development set
        return np.zeros((0, num_classes or 0), np.float32), np.zeros((0, model.embedding_size), np.float32)
    model.eval()
    precision = precision_for(device)
    # Batches of similar length waste less compute on padding; results go back to input order.
    order = np.argsort([len(f["input_ids"]) for f in features], kind="stable")
    logits, pooled = [], []
    for start in range(0, len(order), batch_size):
        batch = collate(tokenizer, [features[i] for i in order[start:start + batch_size]], device)
        with precision.autocast(device):
            out_logits, out_pooled = model(batch)
        logits.append(out_logits.float().cpu())
        pooled.append(out_pooled.float().cpu())
    inverse = np.argsort(order, kind="stable")
    return torch.cat(logits).numpy()[inverse], torch.cat(pooled).numpy()[inverse]


def _float16(embeddings: np.ndarray) -> np.ndarray:
    half = embeddings.astype(np.float16)
    if not np.isfinite(half).all():
        raise ValueError("embeddings are non-finite (or overflow float16) after training")
    return half


def _run_record(card: Mapping[str, Any], split: Mapping[str, Any], train: TrainParams, loss: LossParams,
                model: Resolved, embedding_size: int, num_classes: int) -> dict[str, Any]:
    """``run.json``: the resolved inputs of the run."""
    import pytorch_metric_learning
    import transformers

    return {
        "dataset": card["dataset"], "size": split["size"], "seed": split["seed"], "arm": loss.name,
        "train": dataclasses.asdict(train),
        "loss": {"name": loss.name, "base": loss.base, "beta": loss.beta, "proxy_lr": loss.proxy_lr,
                 "hparams": dict(loss.hparams), "dml_on": loss.dml_on,
                 "metrix": None if loss.metrix is None else dataclasses.asdict(loss.metrix)},
        "model": model.record, "embedding_size": embedding_size,
        "num_classes": num_classes, "label_names": list(card["label_names"]),
        "table_sha256": card["table_sha256"],
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "pytorch_metric_learning": pytorch_metric_learning.__version__,
                     **({"setfit": importlib.metadata.version("setfit")} if get_spec(loss.base).kind == "setfit" else {})},
    }
