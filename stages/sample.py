"""Sample: data/raw/<dataset>.jsonl -> data/splits/<dataset>-<size>-<seed>.json (few-shot split).

The split (training and evaluation indices) is a pure function of the table, `sample.*`, size and seed.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # this checkout's package, not an installed one

from fewshot_dml.cli import run_stage  # noqa: E402
from fewshot_dml.params import load_params  # noqa: E402
from fewshot_dml.sampling import write_split  # noqa: E402

log = logging.getLogger("sample")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--size", type=int, required=True)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--table", type=Path, required=True)
    ap.add_argument("--card", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = ap.parse_args(argv)
    params = load_params(args.params, sections=("sample",))
    split = write_split(args.table, args.card, params.sample, args.dataset, args.size, args.seed, args.out)
    log.info("%s: %d training, %d evaluation examples", args.out, len(split["train"]), len(split["eval"]))


if __name__ == "__main__":
    run_stage(main)
