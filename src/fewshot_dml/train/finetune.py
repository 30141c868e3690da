"""The fine-tuned arms (CCE, CCE + a DML loss): one run's training on the few-shot rows, the checkpoint
its development rows choose, and the arrays of every part of its split.

:func:`fit_classifier` is the one training path of the ``train`` stage (through :func:`fit_finetune`) and of
the Python API (:mod:`fewshot_dml.api`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from fewshot_dml.config.loss_sections import LossParams
from fewshot_dml.config.sections import TrainParams, training_steps
from fewshot_dml.core.timing import Phases
from fewshot_dml.losses import get_spec
from fewshot_dml.model.batching import is_pair_table, tokenize
from fewshot_dml.model.classifier import Pretrained, TextClassifier, load_classifier, load_pretrained
from fewshot_dml.train.checkpoints import BestCheckpoint, checkpoint_steps
from fewshot_dml.train.loop import embed, fit, float16, seed_everything
from fewshot_dml.train.objective import Objective, build_objective


def fit_finetune(
    train: TrainParams,
    loss: LossParams,
    table: pd.DataFrame,
    split: Mapping[str, Any],
    num_classes: int,
    device: torch.device,
    phases: Phases,
    shared: Any,
) -> dict[str, Any]:
    """CCE or CCE + DML: fine-tune the classifier, then embed every part of the split."""
    with phases("load"):
        pretrained = shared.loaded("classifier", lambda: load_pretrained(train.model, shared.model.directory))
    model, tokenizer, objective, curve, arrays, checkpoints = train_and_embed(
        train, loss, table, split, num_classes, device, phases, pretrained
    )
    if get_spec(loss.base).has_proxies:
        with phases("embed"):
            add_class_scores(objective, arrays)
    return {
        "curve": curve,
        "arrays": arrays,
        "checkpoints": checkpoints,
        "embedding_size": model.embedding_size,
        "loss_state": {} if objective.dml is None else {k: v.cpu() for k, v in objective.dml.state_dict().items()},
        "save_model": lambda path: model.cpu().save(path, tokenizer),
    }


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
    dev_rows: Sequence[int] = (),
) -> tuple[TextClassifier, Any, Objective, list, list, dict[str, Any]]:
    """Seed, build (a copy of ``pretrained``), fine-tune on ``table``'s ``rows``: the model, its tokenizer,
    the objective, the training curve, the tokenised rows and the checkpoint record. The train stage and
    the Python API (:mod:`fewshot_dml.api`) both train through here.

    With ``dev_rows`` and ``train.dev_checkpoints`` > 1, the returned model is the checkpoint with the
    best development accuracy (:mod:`fewshot_dml.train.checkpoints`); else the final one."""
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
        pair = is_pair_table(table)
        features = tokenize(tokenizer, table, list(rows), train.max_length, pair)
        tracker = None
        if len(dev_rows) and train.dev_checkpoints > 1:
            dev_features = tokenize(tokenizer, table, list(dev_rows), train.max_length, pair)
            dev_labels = labels[list(dev_rows)]

            def score() -> float:
                logits, _ = embed(model, tokenizer, dev_features, train.eval_batch_size, device, model.num_labels)
                return float(np.mean(logits.argmax(axis=1) == dev_labels))

            steps = checkpoint_steps(training_steps(train, len(features)), train.dev_checkpoints)
            tracker = BestCheckpoint(steps, score, {"model": model, "objective": objective})
        curve = fit(model, objective, tokenizer, features, labels[list(rows)], train, loss, device, generator, on_step=tracker)
        if tracker is not None:
            tracker.restore()
    record = tracker.record() if tracker is not None else {"selected_step": len(curve), "dev_checkpoints": []}
    return model, tokenizer, objective, curve, features, record


def train_and_embed(
    train: TrainParams,
    loss: LossParams,
    table: pd.DataFrame,
    split: Mapping[str, Any],
    num_classes: int,
    device: torch.device,
    phases: Phases,
    pretrained: Pretrained,
) -> tuple[TextClassifier, Any, Objective, list, dict, dict]:
    """:func:`fit_classifier` on the split's training rows (the checkpoint the development rows choose);
    then the arrays of ``eval.npz``, ``dev.npz`` and ``train.npz`` (dtypes of the contract)."""
    fitted = fit_classifier(train, loss, table, split["train"], int(split["seed"]), num_classes, device, phases, pretrained, split["dev"])
    model, tokenizer, objective, curve, train_features, checkpoints = fitted
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
    return model, tokenizer, objective, curve, arrays, checkpoints


@torch.no_grad()
def add_class_scores(objective: Objective, arrays: dict[str, dict[str, np.ndarray]]) -> None:
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
