"""Progress a log can show: a line every few seconds of a loop whether or not stdout is a terminal
(the stages' use of it: tests/test_training.py, test_a_group_logs_its_seeds_and_steps...)."""

from __future__ import annotations

import logging

import pytest

from fewshot_dml.core.logs import Progress


def test_progress_logs_every_interval_and_at_the_end(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([0.0, 1.0, 12.0, 13.0, 30.0])  # start, then the time at each update
    monkeypatch.setattr("fewshot_dml.core.logs.time.perf_counter", lambda: next(clock))
    log = logging.getLogger("progress-test")
    with caplog.at_level(logging.INFO, logger="progress-test"):
        progress = Progress(log, "train x", 4, every_s=10.0)
        for step in range(1, 5):
            progress.update(step, loss=0.5)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["train x: step 2/4, loss 0.5000, 12 s, ETA 12 s", "train x: step 4/4, loss 0.5000, 30 s, ETA 0 s"]
