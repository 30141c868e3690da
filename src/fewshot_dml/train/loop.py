"""The loop of one run: seeding, the optimiser, the fixed budget of steps, and the embedding pass.

Read top to bottom: :func:`seed_everything` -> :func:`build_optimizer` -> :func:`fit` (the steps, with
the training curve) -> :func:`embed` (logits and pooled embeddings of a set, length-sorted batches).
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from fewshot_dml.config.loss_sections import LossParams
from fewshot_dml.config.sections import TrainParams, training_steps
from fewshot_dml.core.logs import Progress
from fewshot_dml.model.batching import collate, make_batches
from fewshot_dml.model.classifier import TextClassifier
from fewshot_dml.model.device import FP32, Precision, precision_for
from fewshot_dml.train.objective import Objective

logger = logging.getLogger(__name__)


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch (dropout, head init) and return the sampler's own generator.

    numpy's legacy global state is seeded too because PML draws from it. (transformers' set_seed
    does the same, but importing it costs a second per run.)
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # CPU and every CUDA device
    return torch.Generator().manual_seed(seed)


def build_optimizer(model: TextClassifier, objective: Objective, train: TrainParams, loss: LossParams) -> torch.optim.AdamW:
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
    parts = [
        ([(n, p) for n, p in encoder if depths[n] == d], encoder_no_decay, train.lr * train.llrd**d) for d in sorted(set(depths.values()))
    ]
    head = nn.ModuleList([model.dense, model.out_proj])
    parts.append((list(head.named_parameters()), _no_decay_names(head), train.head_lr))
    for params, no_decay, lr in parts:
        groups.append({"params": [p for n, p in params if n not in no_decay], "lr": lr, "weight_decay": train.weight_decay})
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


def fit(
    model: TextClassifier,
    objective: Objective,
    tokenizer: Any,
    features: Sequence[dict],
    labels: np.ndarray,
    train: TrainParams,
    loss: LossParams,
    device: torch.device,
    generator: torch.Generator,
    on_step: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """:func:`~fewshot_dml.config.params.training_steps` optimisation steps; returns the per-step curve rows.

    The forward pass runs under ``train.precision``'s autocast (:func:`~fewshot_dml.model.device.precision_for`).
    ``on_step(step)`` is called after each step (bench/time_to_accuracy.py evaluates checkpoints there).
    """
    from transformers import get_scheduler

    optimizer = build_optimizer(model, objective, train, loss)
    steps = training_steps(train, len(features))
    scheduler = get_scheduler(train.scheduler, optimizer, num_warmup_steps=train.warmup_steps, num_training_steps=steps)
    precision = precision_for(device, train.precision)
    batches = make_batches(train.sampler, labels.tolist(), train.batch_size, generator)
    label_tensor = torch.as_tensor(labels, dtype=torch.int64)
    model.train()
    objective.train()
    curve = []
    progress = Progress(logger, f"train {loss.name}", steps)
    for step in range(1, steps + 1):
        idx = next(batches)
        batch = collate(tokenizer, [features[i] for i in idx], device)
        with precision.autocast(device):
            logits, pooled, states = model.forward_features(batch, objective.hidden_layer)
            out = objective(logits.float(), pooled.float(), label_tensor[idx].to(device), states, model.encode_from)
        values = {
            key: None if value is None else float(value.detach())
            for key, value in (("total", out.total), ("cce", out.cce), ("dml", out.dml))
        }
        if not all(v is None or math.isfinite(v) for v in values.values()):
            raise FloatingPointError(
                f"non-finite loss at step {step}/{steps} (loss {loss.name!r}): total={values['total']}, "
                f"cce={values['cce']}, dml={values['dml']}; try a lower train.lr / proxy_lr or check the inputs"
            )
        lr = optimizer.param_groups[0]["lr"]
        optimizer.zero_grad(set_to_none=True)
        out.total.backward()
        if train.max_grad_norm > 0:
            # The model's norm only: proxies have their own learning rate and no decay.
            torch.nn.utils.clip_grad_norm_(model.parameters(), train.max_grad_norm)
        optimizer.step()
        scheduler.step()
        curve.append(
            {
                "step": step,
                "lr": lr,
                "loss": values["total"],
                "cce": values["cce"],
                "dml": values["dml"],
                "pairs_ok": bool(out.pairs_ok),
            }
        )
        progress.update(step, loss=values["total"])
        if on_step is not None:
            on_step(step)
            model.train()  # the callback may have evaluated
    return curve


@torch.inference_mode()
def embed(
    model: TextClassifier,
    tokenizer: Any,
    features: Sequence[dict],
    batch_size: int,
    device: torch.device,
    num_classes: int | None = None,
    precision: Precision = FP32,
) -> tuple[np.ndarray, np.ndarray]:
    """Logits (N, C) and pooled embeddings (N, D), float32, in eval mode, in the order of ``features``.

    In float32 by default, whatever ``train.precision`` trained the model: bf16 evaluation changed
    predictions of the CPU default (bench/results.md, "Precision"), and the stored embeddings are float16.
    """
    if not features:  # e.g. no development set
        return np.zeros((0, num_classes or 0), np.float32), np.zeros((0, model.embedding_size), np.float32)
    model.eval()
    # Batches of similar length waste less compute on padding; results go back to input order.
    order = np.argsort([len(f["input_ids"]) for f in features], kind="stable")
    logits, pooled = [], []
    for start in range(0, len(order), batch_size):
        batch = collate(tokenizer, [features[i] for i in order[start : start + batch_size]], device)
        with precision.autocast(device):
            out_logits, out_pooled = model(batch)
        logits.append(out_logits.float().cpu())
        pooled.append(out_pooled.float().cpu())
    inverse = np.argsort(order, kind="stable")
    return torch.cat(logits).numpy()[inverse], torch.cat(pooled).numpy()[inverse]


def float16(embeddings: np.ndarray) -> np.ndarray:
    half = embeddings.astype(np.float16)
    if not np.isfinite(half).all():
        raise ValueError("embeddings are non-finite (or overflow float16) after training")
    return half
