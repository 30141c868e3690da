"""``fewshot-dml``: one console command for the tools around the pipeline.

``fewshot-dml study``, ``fewshot-dml tuning-report``, ``fewshot-dml cluster``, ``fewshot-dml preset`` and ``fewshot-dml export``
run the tools the README describes (the same as ``python -m fewshot_dml.studies.study`` etc.), each with its own
``--help``. The pipeline itself is DVC's (``dvc repro``, ``dvc exp run``).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# subcommand -> (module with main(argv), what it does); imported only when chosen (each pulls in DVC).
COMMANDS: dict[str, tuple[str, str]] = {
    "study": ("fewshot_dml.studies.study", "the cross-loss study from DVC experiments "),
    "tuning-report": ("fewshot_dml.studies.tuning_report", "the tuning report from a sweep's DVC experiments"),
    "cluster": ("fewshot_dml.cluster.launch", "run the train stages on a Ray cluster through DVC's run-cache"),
    "preset": ("fewshot_dml.config.presets", "print the `dvc exp run -S ...` set of presets/<name>.yaml (params.yaml untouched)"),
    "export": ("fewshot_dml.api.export", "a pipeline run's kept weights (train.save_weights) as a stock SetFit model"),
}
PROG = "fewshot-dml"


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    ap.add_argument("command", choices=sorted(COMMANDS), help="; ".join(f"{k}: {v[1]}" for k, v in COMMANDS.items()))
    ap.add_argument("args", nargs=argparse.REMAINDER, help="the command's own arguments (`fewshot-dml <command> --help`)")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to the chosen tool's ``main``; its errors are one ``error:`` line, as under ``python -m``."""
    from dvc.exceptions import DvcException

    from fewshot_dml.core.cli import run_tool

    args = parser().parse_args(argv)
    module = importlib.import_module(COMMANDS[args.command][0])
    prog = f"{PROG} {args.command}"  # `usage: fewshot-dml study ...` in the tool's help and errors
    result = run_tool(lambda a: module.main(a, prog=prog), list(args.args), errors=(DvcException,))
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
