"""Infer: data/runs/<run>/ -> data/infer/<run>.json (classifier, proxy, prototype and kNN inference).

Works from the saved logits and embeddings; the encoder is not run again.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # this checkout's package, not an installed one

from fewshot_dml.cli import run_stage  # noqa: E402
from fewshot_dml.inference import run_inference  # noqa: E402
from fewshot_dml.params import load_params  # noqa: E402

log = logging.getLogger("infer")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = ap.parse_args(argv)
    params = load_params(args.params, sections=("infer",))
    result = run_inference(args.run, params.infer, args.out)
    log.info("%s: classifier %.4f, prototype %.4f", args.out, result["classifier"]["accuracy"], result["prototype"]["accuracy"])


if __name__ == "__main__":
    run_stage(main)
