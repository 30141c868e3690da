"""Infer: data/runs/ -> data/infer/<dataset>-<size>-<arm>/<seed>.json for every run of the grid.

Classifier, proxy-mixture, prototype and kNN inference from the saved arrays: numpy only, the
encoder and the loss are not run again, so one process serves the whole grid.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()  # before the imports: the stage's timing record counts them

import argparse  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # this checkout's package, not an installed one

from fewshot_dml.config.params import load_params  # noqa: E402
from fewshot_dml.core.cli import run_stage  # noqa: E402
from fewshot_dml.core.timing import Phases  # noqa: E402
from fewshot_dml.infer.inference import infer_grid  # noqa: E402

log = logging.getLogger("infer")


# The params sections this stage reads: exactly its `params:` in dvc.yaml (a contract test compares).
SECTIONS = ("datasets", "sample_sizes", "seeds", "loss", "infer")


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = ap.parse_args(argv)
    params = load_params(args.params, sections=SECTIONS)
    phases = Phases()
    n = infer_grid(params, args.runs, args.out, phases)
    log.info("%s: %d runs", args.out, n)
    return phases.seconds


if __name__ == "__main__":
    run_stage(main, started=STARTED)
