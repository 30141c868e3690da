"""Check: params.yaml + the local SentEval copy -> data/raw/sources.json (verified source checksums).

Runs on every `dvc repro` (always_changed): the whole params file is validated before any stage
reads it, and every file of the local copy is checked against the registry's pinned sha256, so a
changed source file stops the pipeline here; `fetch` depends on the output, so a restored file
re-fetches. The output does not depend on the grid, so editing `datasets` does not re-fetch.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()  # before the imports: the stage's timing record counts them

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # this checkout's package, not an installed one

from fewshot_dml.cli import run_stage  # noqa: E402
from fewshot_dml.data.fetch import verify_sources  # noqa: E402
from fewshot_dml.params import load_params  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = ap.parse_args(argv)
    params = load_params(args.params)
    verify_sources(params.fetch, params.datasets, args.params.parent, args.out)


if __name__ == "__main__":
    run_stage(main, started=STARTED)
