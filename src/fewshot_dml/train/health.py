"""Degenerate runs: the evidence that a run diverged or collapsed, from its curve and eval arrays.

A run can exit cleanly inside the allowed parameter ranges and still be useless (lr = 1, a loss
scale of 1e30): every prediction one class, embeddings with no variance, a loss far above where it
started. :func:`diagnose` names each symptom with its numbers; the train stage writes them to the
run's ``metrics.json`` (``degenerate``) and logs a warning, and the report marks and counts them.
The thresholds are deliberately loose: they catch a broken run, not a weak one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

LOSS_RISE_FACTOR = 2.0  # mean loss of the last quarter of steps > 2x the first step's loss
TAIL_FRACTION = 0.25
RELATIVE_VARIANCE_FLOOR = 1e-6  # total variance / mean squared norm of the eval embeddings


def diagnose(losses: Sequence[float], logits: np.ndarray, embeddings: np.ndarray, labels: np.ndarray) -> list[str]:
    """The symptoms of a degenerate run, each one sentence with its evidence; [] for a healthy run.

    ``losses``: the training loss per step; ``logits`` (N, C), ``embeddings`` (N, D) and ``labels``
    (N,) of the evaluation set, from the final model.
    """
    flags = []
    losses = np.asarray(losses, np.float64)
    tail = losses[-max(1, int(round(TAIL_FRACTION * losses.size))) :]
    if losses.size >= 2 and tail.mean() > LOSS_RISE_FACTOR * losses[0]:
        flags.append(
            f"training loss rose from {losses[0]:.4g} at step 1 to {tail.mean():.4g} (mean of the "
            f"last {tail.size} steps), more than {LOSS_RISE_FACTOR:g}x"
        )
    predicted = np.unique(np.asarray(logits).argmax(axis=1))
    present = np.unique(labels)
    if predicted.size == 1 and present.size > 1:
        flags.append(
            f"predictions collapsed: all {len(labels)} evaluation examples are predicted as class "
            f"{int(predicted[0])} ({present.size} classes present)"
        )
    emb = np.asarray(embeddings, np.float64)
    total_variance = float(emb.var(axis=0).sum())
    mean_sq_norm = float((emb**2).sum(axis=1).mean())
    if total_variance <= RELATIVE_VARIANCE_FLOOR * mean_sq_norm:
        flags.append(
            f"embeddings have no variance: total variance {total_variance:.3g} against a mean squared "
            f"norm of {mean_sq_norm:.3g} over {len(emb)} evaluation examples"
        )
    return flags
