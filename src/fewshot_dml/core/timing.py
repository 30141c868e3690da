"""Where a stage's wall time goes: named phases, and one timing record per stage process.

Timings never go into a DVC output (they would change its hash and rerun everything downstream).
A stage appends its record to the JSON-lines file named by ``FEWSHOT_DML_TIMING`` when that is set
(``bench/pipeline.py`` sets it); otherwise nothing is written.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

TIMING_ENV = "FEWSHOT_DML_TIMING"


class Phases:
    """Seconds per named phase, summed over every ``with phases("name"):`` block."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


def record_stage(started: float, main_started: float, phases: Mapping[str, float] | None) -> None:
    """Append this stage process's timing to ``$FEWSHOT_DML_TIMING`` (if set).

    ``started`` is taken before the stage script's imports, ``main_started`` after them.
    """
    target = os.environ.get(TIMING_ENV, "")
    if not target:
        return
    now = time.perf_counter()
    entry = {
        "stage": Path(sys.argv[0]).stem,
        "argv": sys.argv[1:],
        "wall_s": round(now - started, 4),
        "imports_s": round(main_started - started, 4),
        "phases": {k: round(v, 4) for k, v in (phases or {}).items()},
    }
    with open(target, "a", encoding="utf-8") as handle:  # one short line per process: appends do not interleave
        handle.write(json.dumps(entry, sort_keys=True) + "\n")
