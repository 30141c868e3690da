"""Aggregate: data/runs + data/infer -> reports/ (metrics.json, results.md, plots data, figures).

Reads exactly the runs that the grid params imply and fails naming any that is missing.
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
from fewshot_dml.report.aggregate import run_aggregate  # noqa: E402

log = logging.getLogger("aggregate")


# The params sections this stage reads: exactly its `params:` in dvc.yaml (a contract test compares).
SECTIONS = (
    "datasets",
    "sample_sizes",
    "seeds",
    "loss",
    "sample",
    "train",
    "losses.cce",
    "losses.setfit",
    "losses.${loss}",
    "infer",
    "aggregate",
)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=Path, required=True)
    ap.add_argument("--infer", type=Path, required=True)
    ap.add_argument("--reports", type=Path, required=True)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = ap.parse_args(argv)
    params = load_params(args.params, sections=SECTIONS)
    run_aggregate(params, args.runs, args.infer, args.reports)
    log.info("wrote %s", args.reports)


if __name__ == "__main__":
    run_stage(main, started=STARTED)
