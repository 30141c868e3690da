"""Fetch: a dataset -> data/raw/<dataset>.jsonl (normalised table) + <dataset>.card.json.

A SentEval dataset: reads the local copy at `fetch.local_dir`; downloads the official files from
`fetch.urls` only when the copy is absent and `fetch.download` is true. A dataset of your own: its
`own_datasets` section (a local file or a pinned hub dataset, read with Hugging Face `datasets`).
Reads the `fetch` and `own_datasets` sections only.
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
from fewshot_dml.data.fetch import fetch_dataset  # noqa: E402

log = logging.getLogger("fetch")


# The params sections this stage reads: exactly its `params:` in dvc.yaml (a contract test compares).
SECTIONS = ("fetch", "own_datasets")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--table", type=Path, required=True)
    ap.add_argument("--card", type=Path, required=True)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = ap.parse_args(argv)
    params = load_params(args.params, sections=SECTIONS)
    card = fetch_dataset(
        args.dataset, params.fetch, args.table, args.card, root=args.params.parent, own=params.own_datasets.get(args.dataset)
    )
    log.info("%s: %d examples from %s source", args.dataset, card["n_examples"], card["source"])


if __name__ == "__main__":
    run_stage(main, started=STARTED)
