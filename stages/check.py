"""Check: params.yaml + the sources -> data/raw/sources/, data/raw/model.json, data/raw/arms/ (checksums).

Runs on every `dvc repro` (always_changed): the whole params file is validated before any stage
reads it, and every file of the local copy is checked against the registry's pinned sha256, so a
changed source file stops the pipeline here; each `fetch` depends on its dataset's record
(sources/<dataset>.json), so a restored file re-fetches. The sha256 of each own dataset's local file
(a hub dataset: the commit its revision names) is recorded there too, so editing the file re-fetches
that dataset alone. The output does not depend on the grid, so editing `datasets` does not re-fetch.
`train.model` is resolved without loading it (a missing local path fails here, at once) and recorded
in model.json, a dependency of `train`: a local model directory's file checksums, so editing one retrains.
Each arm's loss file (a variant's base) is recorded in arms/<arm>.json, its train stage's dependency:
editing one loss file retrains only the arms that use it.
It warns when the installed library versions differ from requirements.lock (the committed runs' environment).
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()  # before the imports: the stage's timing record counts them

import argparse  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # this checkout's package, not an installed one

from fewshot_dml.config.arm_records import write_arm_records  # noqa: E402
from fewshot_dml.config.params import load_params  # noqa: E402
from fewshot_dml.core import io  # noqa: E402
from fewshot_dml.core.cli import run_stage  # noqa: E402
from fewshot_dml.core.envlock import drift_message  # noqa: E402
from fewshot_dml.data.fetch import verify_sources  # noqa: E402
from fewshot_dml.model.ref import check_record, parse_model  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, required=True, help="one record per dataset: its sources' checksums")
    ap.add_argument("--model-out", type=Path, required=True, help="train.model's record (model.json)")
    ap.add_argument("--arms-out", type=Path, required=True, help="one record per arm: its loss file's sha256")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = ap.parse_args(argv)
    params = load_params(args.params)
    root = args.params.parent
    drifted = drift_message(root)
    if drifted:
        logging.getLogger("check").warning(drifted)
    model = check_record(parse_model(params.train.model, root))
    verify_sources(params.fetch, params.datasets, root, args.out, own=params.own_datasets)
    io.write_json(args.model_out, model)
    write_arm_records(params, args.arms_out)


if __name__ == "__main__":
    run_stage(main, started=STARTED)
