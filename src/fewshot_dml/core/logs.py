"""Logging set-up for the stage scripts (called from ``main()``, never at import), and progress lines."""

from __future__ import annotations

import logging
import os
import time

# Libraries whose INFO lines restate what the stage logs itself (a model path, "No `loss` passed, using
# CoSENTLoss": SetFit passes its own loss after that message) or flood a log: warnings still show.
QUIET_LOGGERS = ("sentence_transformers", "setfit", "transformers", "datasets", "httpx", "filelock")


def setup_logging() -> None:
    level = os.environ.get("FEWSHOT_DML_LOG", "INFO").upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))


class Progress:
    """A log line every ``every_s`` seconds of a loop and at its end, whether or not stdout is a terminal
    (a log file, CI, a queued `dvc exp run`): ``what: step k/n, <values>, <elapsed> s, ETA <s> s``."""

    def __init__(self, logger: logging.Logger, what: str, total: int, every_s: float = 10.0) -> None:
        self.logger, self.what, self.total, self.every_s = logger, what, total, every_s
        self.started = self.last = time.perf_counter()

    def update(self, done: int, **values: float | None) -> None:
        now = time.perf_counter()
        if now - self.last < self.every_s and done < self.total:
            return
        self.last = now
        elapsed = now - self.started
        shown = "".join(f", {k} {v:.4f}" for k, v in values.items() if v is not None)
        eta = elapsed / done * (self.total - done) if done else float("nan")
        self.logger.info("%s: step %d/%d%s, %.0f s, ETA %.0f s", self.what, done, self.total, shown, elapsed, eta)
