"""Sample: data/raw/<dataset>.jsonl -> data/splits/<dataset>-<size>/<seed>.json (one file per seed).

A split (training, development and evaluation indices) is a pure function of the table, `sample.*`,
size and seed. One process draws every seed of a (dataset, size).
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
from fewshot_dml.data.sampling import write_splits  # noqa: E402

log = logging.getLogger("sample")


# The params sections this stage reads: exactly its `params:` in dvc.yaml (a contract test compares).
SECTIONS = ("seeds", "sample")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--size", type=int, required=True)
    ap.add_argument("--table", type=Path, required=True)
    ap.add_argument("--card", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True, help="directory: one <seed>.json per seed of params.yaml")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = ap.parse_args(argv)
    params = load_params(args.params, sections=SECTIONS)
    splits = write_splits(args.table, args.card, params.sample, args.dataset, args.size, params.seeds, args.out)
    log.info("%s: %d splits (seeds %s)", args.out, len(splits), list(splits))


if __name__ == "__main__":
    run_stage(main, started=STARTED)
