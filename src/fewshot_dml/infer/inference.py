"""Inference from a run's saved artifacts: classifier, proxy mixture, class prototypes and kNN.

Nothing here runs the encoder or the loss: the train stage saved the evaluation logits, embeddings
and (for a loss with proxies) the loss's class scores in ``eval.npz``, and the few-shot training
embeddings in ``train.npz``; see docs/architecture.md. So this module is numpy alone, without
torch or PML, and one process infers every run of the grid in about a second (bench/results.md).
All math is float32 (embeddings are stored float16).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from fewshot_dml.catalog.loss_spec import LossSpec
from fewshot_dml.config.params import Params
from fewshot_dml.config.sections import InferParams
from fewshot_dml.core import io, layout, rundir
from fewshot_dml.core.timing import Phases
from fewshot_dml.losses import get_spec

logger = logging.getLogger(__name__)

EVAL_KEYS = ("logits", "embeddings", "labels", "indices")
TRAIN_KEYS = ("embeddings", "labels", "indices")
SCORES = "scores"  # eval.npz / dev.npz of a loss with proxies: its class scores (N, C), higher = more likely


@dataclass(frozen=True)
class RunArtifacts:
    """What inference needs from a run directory, validated and in float32."""

    spec: LossSpec
    num_classes: int
    eval_scores: np.ndarray | None  # (N, C) float32: the loss's class scores; None without proxies
    eval_logits: np.ndarray  # (N, C) float32
    eval_embeddings: np.ndarray  # (N, D) float32
    eval_labels: np.ndarray  # (N,) int64
    train_embeddings: np.ndarray  # (M, D) float32
    train_labels: np.ndarray  # (M,) int64


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) counts: row = true class, column = predicted class (sklearn's convention)."""
    confusion = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(confusion, (np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)), 1)
    return confusion


def accuracy_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> dict[str, float]:
    """Accuracy and macro-F1 over classes ``0..num_classes-1``.

    Same as sklearn's ``f1_score(labels=range(C), average="macro", zero_division=0)``: per class
    F1 = 2TP / (2TP + FP + FN), 0 when the class is neither present nor predicted, then the mean.
    Written with numpy so the package does not depend on scikit-learn for five lines.
    """
    y_true, y_pred = np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)
    if y_true.shape != y_pred.shape or y_true.ndim != 1 or y_true.size == 0:
        raise ValueError(f"labels {y_true.shape} and predictions {y_pred.shape}: expected two non-empty 1-d arrays of one length")
    confusion = confusion_matrix(y_true, y_pred, num_classes)
    tp = np.diag(confusion)
    denom = confusion.sum(axis=0) + confusion.sum(axis=1)  # = 2TP + FP + FN
    f1 = np.divide(2 * tp, denom, out=np.zeros(num_classes), where=denom > 0)
    return {"accuracy": float(np.mean(y_true == y_pred)), "macro_f1": float(f1.mean())}


def _softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float32 (the max subtracted first, as torch.softmax does)."""
    scores = np.asarray(scores, np.float32)
    exp = np.exp(scores - scores.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def _normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, np.float32(1e-12))


def proxy_scores(artifacts: RunArtifacts) -> np.ndarray | None:
    """The loss's own class scores of the eval embeddings (higher = more likely), or None."""
    return artifacts.eval_scores if artifacts.spec.has_proxies else None


def mixture_predictions(logits: np.ndarray, scores: np.ndarray, weight: float) -> np.ndarray:
    """argmax of ``w * softmax(logits) + (1 - w) * softmax(scores)``; w=1 is the classifier alone.

    The proxies' softmax uses the scores at the scale the loss trains them (e.g. alpha * cosine for
    Proxy-Anchor, cosine / temperature for NormSoftmax): the loss's own posterior, no new temperature.
    """
    w = np.float32(weight)
    mixed = w * _softmax(logits) + (np.float32(1.0) - w) * _softmax(scores)
    return mixed.argmax(axis=1)


def prototype_predictions(train_emb: np.ndarray, train_labels: np.ndarray, eval_emb: np.ndarray, num_classes: int) -> np.ndarray:
    """Nearest class mean of the L2-normalised training embeddings, by cosine similarity.

    A class absent from the few-shot training set has no prototype and is never predicted.
    """
    train_n = _normalise(train_emb)
    sums = np.zeros((num_classes, train_n.shape[1]), np.float32)
    np.add.at(sums, train_labels, train_n)
    present = np.bincount(train_labels, minlength=num_classes) > 0
    sims = _normalise(eval_emb) @ _normalise(sums).T
    sims[:, ~present] = -np.inf
    return sims.argmax(axis=1)


def knn_predictions(train_emb: np.ndarray, train_labels: np.ndarray, eval_emb: np.ndarray, num_classes: int, k: int) -> np.ndarray:
    """Majority vote of the ``k`` most cosine-similar training embeddings.

    Ties: equally similar neighbours by lower training index (stable sort); equal votes by the
    larger summed similarity, then the lowest class id. Hand-written because sklearn's
    KNeighborsClassifier breaks vote ties by class order only.
    """
    sims = _normalise(eval_emb) @ _normalise(train_emb).T  # (N, M)
    nearest = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    rows = np.arange(len(sims))[:, None]
    votes = np.zeros((len(sims), num_classes), np.int64)
    summed = np.zeros((len(sims), num_classes), np.float32)
    np.add.at(votes, (rows, train_labels[nearest]), 1)
    np.add.at(summed, (rows, train_labels[nearest]), sims[rows, nearest])
    best = votes == votes.max(axis=1, keepdims=True)
    return np.where(best, summed, -np.inf).argmax(axis=1)


def infer(artifacts: RunArtifacts, params: InferParams) -> dict[str, Any]:
    """All inference results of one run, in the shape of ``data/infer/<run_id>.json``."""
    a, c = artifacts, artifacts.num_classes
    predicted = a.eval_logits.argmax(axis=1)
    result: dict[str, Any] = {
        "classifier": {**accuracy_f1(a.eval_labels, predicted, c), "confusion": confusion_matrix(a.eval_labels, predicted, c).tolist()},
        "proxy": None,
        "proxy_curve": [],
    }
    scores = proxy_scores(a)
    if scores is not None:
        configured = mixture_predictions(a.eval_logits, scores, params.proxy_weight)
        result["proxy"] = {"weight": params.proxy_weight, **accuracy_f1(a.eval_labels, configured, c)}
        n = params.curve_points
        for w in (i / (n - 1) for i in range(n)):
            preds = mixture_predictions(a.eval_logits, scores, w)
            result["proxy_curve"].append({"weight": w, **accuracy_f1(a.eval_labels, preds, c)})
    protos = prototype_predictions(a.train_embeddings, a.train_labels, a.eval_embeddings, c)
    result["prototype"] = accuracy_f1(a.eval_labels, protos, c)
    k = min(params.knn_k, len(a.train_labels))
    knn = knn_predictions(a.train_embeddings, a.train_labels, a.eval_embeddings, c, k)
    result["knn"] = {"k": k, **accuracy_f1(a.eval_labels, knn, c)}
    return result


def run_inference(run_dir: Path, params: InferParams, out_path: Path) -> dict[str, Any]:
    """Read ``run_dir``, run every inference, write the JSON to ``out_path`` atomically, return it."""
    artifacts = load_run(Path(run_dir))
    result = infer(artifacts, params)
    io.write_json(out_path, result)
    logger.info(
        "inference of %s: classifier %.4f, prototype %.4f, knn %.4f",
        run_dir,
        result["classifier"]["accuracy"],
        result["prototype"]["accuracy"],
        result["knn"]["accuracy"],
    )
    return result


def infer_grid(params: Params, runs_dir: Path, out_dir: Path, phases: Phases | None = None) -> int:
    """Infer every run the grid params imply: ``out_dir/<run_id>.json``, written atomically as a whole.

    Reads exactly those runs (stale runs of other losses in ``runs_dir`` are ignored); returns how many.
    """
    phases = Phases() if phases is None else phases
    cells = layout.grid(params.datasets, params.sample_sizes, params.seeds, params.arms)
    with io.atomic_dir(out_dir) as tmp:
        for cell in tqdm(cells, desc="infer", unit="run", disable=None):
            rid = layout.run_id(*cell)
            with phases("read"):
                artifacts = load_run(Path(runs_dir) / rid)
            with phases("infer"):
                result = infer(artifacts, params.infer)
            with phases("write"):
                io.write_json(tmp / f"{rid}{layout.INFER_SUFFIX}", result)
    logger.info("inferred %d runs of %s -> %s", len(cells), runs_dir, out_dir)
    return len(cells)


# ---- reading a run directory ----


def _check_arrays(path: Path, arrays: Mapping[str, np.ndarray], num_classes: int, emb_dim: int) -> None:
    n = len(arrays["labels"])
    if n == 0:
        raise ValueError(f"{path}: no examples")
    shapes = {"embeddings": (n, emb_dim), "labels": (n,), "indices": (n,), "logits": (n, num_classes), SCORES: (n, num_classes)}
    for key, array in arrays.items():
        if array.shape != shapes[key]:
            raise ValueError(f"{path}: {key} has shape {array.shape}; expected {shapes[key]} (run.json)")
        if key in ("embeddings", "logits", SCORES) and not np.isfinite(array).all():
            raise ValueError(f"{path}: {key} holds non-finite values")
    labels = arrays["labels"]
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"{path}: labels {labels.dtype} in [{labels.min()}, {labels.max()}]; expected integers in [0, {num_classes - 1}]")


def load_run(run_dir: Path) -> RunArtifacts:
    """Read and cross-check a run directory (see docs/architecture.md)."""
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: run directory not found")
    run = io.read_json(rundir.require(run_dir / rundir.RUN))
    missing = [k for k in ("arm", "loss", "num_classes", "embedding_size") if k not in run]
    if missing:
        raise ValueError(f"{run_dir / rundir.RUN}: missing keys {missing}")
    loss, c, d = run["loss"], int(run["num_classes"]), int(run["embedding_size"])
    if run["arm"] != loss["name"]:
        raise ValueError(f"{run_dir / rundir.RUN}: arm {run['arm']!r} but loss {loss['name']!r}; expected the same")
    spec = get_spec(loss["base"])
    ev = rundir.read_npz(run_dir / rundir.EVAL, EVAL_KEYS + ((SCORES,) if spec.has_proxies else ()))
    tr = rundir.read_npz(run_dir / rundir.TRAIN, TRAIN_KEYS)
    _check_arrays(run_dir / rundir.EVAL, ev, c, d)
    _check_arrays(run_dir / rundir.TRAIN, tr, c, d)
    return RunArtifacts(
        spec=spec,
        num_classes=c,
        eval_scores=ev[SCORES].astype(np.float32) if spec.has_proxies else None,
        eval_logits=ev["logits"].astype(np.float32),
        eval_embeddings=ev["embeddings"].astype(np.float32),
        eval_labels=ev["labels"].astype(np.int64),
        train_embeddings=tr["embeddings"].astype(np.float32),
        train_labels=tr["labels"].astype(np.int64),
    )
