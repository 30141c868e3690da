"""Train: table + splits -> data/runs/<dataset>-<size>-<arm>/<seed>/ (every seed of one arm).

Each run directory holds the evaluation and development logits and embeddings (and, for a loss
with proxies, its class scores), the few-shot training embeddings, the loss module's state, the
training curve, metrics and the resolved params. One process trains every seed of params.yaml.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()  # before the imports: the stage's timing record counts them

import argparse  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # this checkout's package, not an installed one

from fewshot_dml.config.params import arm_section, load_params  # noqa: E402
from fewshot_dml.core.cli import run_stage  # noqa: E402
from fewshot_dml.core.timing import Phases  # noqa: E402
from fewshot_dml.train.run import train_group  # noqa: E402

log = logging.getLogger("train")


# The params sections this stage reads: exactly its `params:` in dvc.yaml (a contract test compares).
SECTIONS = ("seeds", "train", "losses.${item.arm}")


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--arm", required=True, help="`cce`, `setfit` or a DML loss with a section in params.yaml")
    ap.add_argument("--table", type=Path, required=True)
    ap.add_argument("--card", type=Path, required=True)
    ap.add_argument("--splits", type=Path, required=True, help="the sample stage's directory of <seed>.json")
    ap.add_argument("--out", type=Path, required=True, help="directory: one run directory per seed")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = ap.parse_args(argv)
    params = load_params(args.params, sections=[s.replace("${item.arm}", args.arm) for s in SECTIONS])
    phases = Phases()
    loss = arm_section(params, args.arm, args.params)
    runs = train_group(params.train, loss, args.table, args.card, args.splits, params.seeds, args.out, phases)
    for seed, metrics in runs.items():
        log.info("%s seed %d: accuracy %.4f, macro-F1 %.4f", args.out, seed, metrics["accuracy"], metrics["macro_f1"])
    return phases.seconds


if __name__ == "__main__":
    run_stage(main, started=STARTED)
