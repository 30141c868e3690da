"""Train: table + split -> data/runs/<dataset>-<size>-<seed>-<arm>/ (one fine-tuning run).

The run directory holds the evaluation logits and embeddings, the few-shot training embeddings,
the loss module's state (proxies), the training curve, metrics and the resolved params. The wall
time goes to --timing, outside the run directory (it would change the directory's hash).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # this checkout's package, not an installed one

from fewshot_dml.cli import run_stage  # noqa: E402
from fewshot_dml.params import ParamsError, load_params  # noqa: E402
from fewshot_dml.training import train_run  # noqa: E402

log = logging.getLogger("train")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--arm", required=True, help="`cce` or a DML loss with a section in params.yaml")
    ap.add_argument("--table", type=Path, required=True)
    ap.add_argument("--card", type=Path, required=True)
    ap.add_argument("--split", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--timing", type=Path, help="where to write the wall time (not a DVC output)")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = ap.parse_args(argv)
    params = load_params(args.params, sections=("train", f"losses.{args.arm}"))
    if args.arm not in params.losses:
        raise ParamsError(f"--arm {args.arm!r}: no losses.{args.arm} section in {args.params}")
    metrics = train_run(params.train, params.losses[args.arm], args.table, args.card, args.split, args.out,
                        args.timing)
    log.info("%s: accuracy %.4f, macro-F1 %.4f", args.out, metrics["accuracy"], metrics["macro_f1"])


if __name__ == "__main__":
    run_stage(main)
