"""The training length chosen on the development set, run by run (LM-BFF's rule).

Gao et al. (ACL 2021, "Making Pre-trained Language Models Better Few-shot Learners") train for a fixed
budget, evaluate the development set every few steps and keep the best checkpoint. Here every arm
evaluates ``train.dev_checkpoints`` evenly spaced checkpoints of its own training (the last one
included) and keeps the one with the highest development accuracy, so every arm gets the same number
of dev-evaluated configurations: the fine-tuned arms over their steps, SetFit over its pair steps.
A tie goes to the later checkpoint: equal development accuracy is no evidence for stopping early, and
the full budget is the recipe as written. With one checkpoint, or no development set, a run keeps its
final model, as a fixed budget does.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from typing import Any


def checkpoint_steps(total: int, checkpoints: int) -> list[int]:
    """``checkpoints`` evenly spaced steps of ``total``, the last one ``total`` (every step if fewer)."""
    if total < 1 or checkpoints < 1:
        raise ValueError(f"total={total}, checkpoints={checkpoints}; expected both >= 1")
    n = min(checkpoints, total)
    return sorted({math.ceil(total * k / n) for k in range(1, n + 1)})


class BestCheckpoint:
    """Scores the development set at :attr:`steps` (``score()``: an accuracy) and keeps the best state.

    ``states`` gives the ``state_dict``-bearing objects whose weights make a checkpoint (the model, and
    the loss's proxies where it has any). Call the tracker after every optimisation step; :meth:`restore`
    loads the chosen checkpoint back after the last one. Only a checkpoint better than (or tied with)
    the best so far is copied, and never the last one, which is the model as trained.
    """

    def __init__(self, steps: list[int], score: Callable[[], float], states: Mapping[str, Any]) -> None:
        self.steps = list(steps)
        self.score = score
        self.states = dict(states)
        self.history: list[dict[str, Any]] = []
        self.best_step: int | None = None
        self._best_accuracy = -math.inf
        self._saved: dict[str, Any] | None = None

    def __call__(self, step: int) -> None:
        if step not in self.steps:
            return
        accuracy = float(self.score())
        self.history.append({"step": step, "dev_accuracy": accuracy})
        if accuracy >= self._best_accuracy:  # ties: the later checkpoint
            self.best_step, self._best_accuracy = step, accuracy
            last = step == self.steps[-1]
            self._saved = None if last else {name: copy.deepcopy(obj.state_dict()) for name, obj in self.states.items()}

    def restore(self) -> bool:
        """Load the chosen checkpoint's weights; False when the final model is the chosen one."""
        if self._saved is None:
            return False
        for name, obj in self.states.items():
            obj.load_state_dict(self._saved[name])
        self._saved = None
        return True

    def record(self) -> dict[str, Any]:
        """``selected_step`` and the development accuracy of every checkpoint, for the run's metrics."""
        return {"selected_step": self.best_step, "dev_checkpoints": list(self.history)}
