"""The training length chosen on the development set (train.dev_checkpoints, LM-BFF's rule)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from fewshot_dml.train.checkpoints import BestCheckpoint, checkpoint_steps
from fewshot_dml.train.run import train_run
from test_training import LOSSES, NEGATIVE, POSITIVE, write_dataset, write_split
from tiny_models import tiny_train_params as train_params


@pytest.mark.parametrize(
    ("total", "n", "expected"),
    [(60, 3, [20, 40, 60]), (40, 3, [14, 27, 40]), (2, 3, [1, 2]), (5, 1, [5]), (120, 6, [20, 40, 60, 80, 100, 120])],
)
def test_checkpoints_are_evenly_spaced_and_end_at_the_last_step(total: int, n: int, expected: list[int]) -> None:
    assert checkpoint_steps(total, n) == expected


def test_checkpoint_steps_refuse_a_zero_budget() -> None:
    with pytest.raises(ValueError, match="total=0, checkpoints=3; expected both >= 1"):
        checkpoint_steps(0, 3)


@pytest.mark.parametrize(
    ("scores", "chosen", "restored"),
    [
        ([0.5, 0.9, 0.7], 2, True),  # the best in the middle: its weights come back
        ([0.5, 0.7, 0.7], 3, False),  # a tie goes to the later checkpoint: the final model stays
        ([0.9, 0.5, 0.5], 1, True),
        ([0.6, 0.6, 0.6], 3, False),
    ],
)
def test_the_best_checkpoint_is_kept_and_its_weights_restored(scores: list[float], chosen: int, restored: bool) -> None:
    layer = nn.Linear(2, 1)
    seen: dict[int, torch.Tensor] = {}
    values = iter(scores)
    tracker = BestCheckpoint([1, 2, 3], lambda: next(values), {"layer": layer})
    for step in range(1, 4):
        with torch.no_grad():
            layer.weight.fill_(float(step))  # "training": the weights say which step they are from
        seen[step] = layer.weight.detach().clone()
        tracker(step)
    assert tracker.restore() is restored
    assert tracker.best_step == chosen and torch.equal(layer.weight, seen[chosen])
    assert tracker.record() == {
        "selected_step": chosen,
        "dev_checkpoints": [{"step": s, "dev_accuracy": a} for s, a in zip([1, 2, 3], scores, strict=True)],
    }


def _dataset(tmp_path: Path) -> tuple[Path, Path, Path]:
    rows = [(1, t, "") for t in POSITIVE] + [(0, t, "") for t in NEGATIVE]
    table, card = write_dataset(tmp_path, "toy", rows, ["negative", "positive"])
    split = write_split(tmp_path, card, [0, 8, 1, 9, 2, 10], [4, 5, 12, 13], seed=0, dev=[3, 11, 6, 14])
    return table, card, split


@pytest.mark.parametrize("loss", ["cce", "supcon", "setfit"])
def test_a_run_keeps_the_checkpoint_its_development_set_chooses(loss: str, tiny_bert_dir: Path, tmp_path: Path) -> None:
    """Every arm evaluates the same number of checkpoints; the run's stored development logits are those of
    the chosen one (its recorded accuracy), the run is deterministic, and with 1 checkpoint nothing is chosen."""
    table, card, split = _dataset(tmp_path)
    train = train_params(tiny_bert_dir, steps=6, lr=5e-3, head_lr=5e-2, dev_checkpoints=3)
    metrics = train_run(train, LOSSES[loss], table, card, split, tmp_path / "a")
    history = metrics["dev_checkpoints"]
    assert len(history) == 3 and history[-1]["step"] == metrics["steps"]
    best = max(h["dev_accuracy"] for h in history)
    assert metrics["selected_step"] == max(h["step"] for h in history if h["dev_accuracy"] == best)  # ties: the later
    with np.load(tmp_path / "a" / "dev.npz") as dev:
        assert float(np.mean(dev["logits"].argmax(1) == dev["labels"])) == pytest.approx(best)
    assert metrics["dev_accuracy"] == pytest.approx(best)
    assert json.loads((tmp_path / "a" / "metrics.json").read_text())["selected_step"] == metrics["selected_step"]
    again = train_run(train, LOSSES[loss], table, card, split, tmp_path / "b")
    assert again == metrics
    for part in ("eval.npz", "dev.npz", "train.npz"):
        assert (tmp_path / "a" / part).read_bytes() == (tmp_path / "b" / part).read_bytes(), part
    single = train_run(train_params(tiny_bert_dir, steps=6, dev_checkpoints=1), LOSSES[loss], table, card, split, tmp_path / "c")
    assert single["dev_checkpoints"] == [] and single["selected_step"] == single["steps"]


@pytest.mark.parametrize("loss", ["cce", "supcon", "setfit"])
def test_an_earlier_checkpoint_chosen_by_the_development_set_is_the_model_the_run_stores(
    loss: str, tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The development set is scripted to prefer the first checkpoint: the run's stored arrays are then those
    of that checkpoint's weights (SetFit: its body with a head refitted on it), not the final model's."""
    table, card, split = _dataset(tmp_path)
    train = train_params(tiny_bert_dir, steps=6, lr=5e-3, head_lr=5e-2, dev_checkpoints=3)
    final = train_run(train, LOSSES[loss], table, card, split, tmp_path / "final")  # a tie everywhere: the last step
    assert final["selected_step"] == final["steps"]
    init = BestCheckpoint.__init__

    def scripted(self: BestCheckpoint, steps: list[int], score: object, states: dict) -> None:
        values = iter([1.0, 0.0, 0.0])
        init(self, steps, lambda: next(values), states)

    monkeypatch.setattr(BestCheckpoint, "__init__", scripted)
    early = train_run(train, LOSSES[loss], table, card, split, tmp_path / "early")
    assert early["selected_step"] == early["dev_checkpoints"][0]["step"] < early["steps"] == final["steps"]
    with np.load(tmp_path / "final" / "eval.npz") as a, np.load(tmp_path / "early" / "eval.npz") as b:
        assert not np.array_equal(a["embeddings"], b["embeddings"])  # other weights
    assert (tmp_path / "final" / "curve.csv").read_bytes() == (tmp_path / "early" / "curve.csv").read_bytes()  # same training
