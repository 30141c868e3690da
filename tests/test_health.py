"""Degenerate-run detection: each symptom on toy arrays, with its evidence; healthy runs pass."""

from __future__ import annotations

import numpy as np
import pytest

from fewshot_dml.train.health import diagnose

RNG = np.random.default_rng(0)
LABELS = np.array([0, 1, 0, 1, 2, 2])
HEALTHY = dict(losses=[1.1, 0.9, 0.7, 0.6], logits=np.eye(3)[LABELS] + 0.1, embeddings=RNG.normal(size=(6, 4)), labels=LABELS)


def test_a_healthy_run_has_no_symptom() -> None:
    assert diagnose(**HEALTHY) == []


def test_a_weak_but_varied_run_is_not_flagged() -> None:
    wrong = np.eye(3)[[1, 0, 2, 2, 1, 0]]  # every prediction wrong, but not one class
    assert diagnose(**{**HEALTHY, "logits": wrong, "losses": [1.1, 1.2, 1.5, 2.1]}) == []


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"losses": [1.0, 1.5, 3.0, 40.0]}, r"training loss rose from 1 at step 1 to 40 \(mean of the last 1 steps\), more than 2x"),
        (
            {"logits": np.tile([0.0, 5.0, 1.0], (6, 1))},
            r"predictions collapsed: all 6 evaluation examples are predicted as class 1 \(3 classes present\)",
        ),
        ({"embeddings": np.tile([3.0, -1.0, 0.5, 2.0], (6, 1))}, r"embeddings have no variance: total variance 0 against"),
        ({"embeddings": np.zeros((6, 4))}, r"embeddings have no variance"),
    ],
)
def test_each_symptom_is_named_with_its_evidence(change: dict, match: str) -> None:
    flags = diagnose(**{**HEALTHY, **change})
    assert len(flags) == 1
    assert __import__("re").search(match, flags[0]), flags[0]


def test_one_class_in_the_evaluation_set_is_no_collapse() -> None:
    labels = np.zeros(6, np.int64)
    assert diagnose(**{**HEALTHY, "labels": labels, "logits": np.tile([1.0, 0.0, 0.0], (6, 1))}) == []
