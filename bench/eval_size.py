"""Is the evaluation set (``sample.eval_max``) large enough for the paired tests? From the runs of a `dvc repro`.

The gain of a seed is the difference of two accuracies on the same evaluation examples. Its variance
has two parts: the evaluation sampling of those examples (from the discordant predictions of the two
arms, McNemar's variance of a paired proportion difference) and everything else that changes with the
seed (the few-shot draw, the initialisation). Only the first shrinks with a larger evaluation set. This
reports, per dataset and overall, the share of the seed-to-seed variance of the gain that evaluation
sampling explains, and how much narrower the blocked interval would get with ``factor`` times as many
evaluation examples (the other part unchanged).

Usage (after `dvc repro`, from the repository root):
    python bench/eval_size.py --out bench/eval_size.json
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from fewshot_dml.config.params import load_params
from fewshot_dml.core import layout

ROOT = Path(__file__).resolve().parents[1]


def paired(runs: Path, dataset: str, size: int, seed: int, treated: str, baseline: str) -> tuple[float, float]:
    """(gain, its evaluation-sampling variance) of one seed, from the two runs' stored evaluation logits."""
    preds = {}
    for arm in (treated, baseline):
        with np.load(runs / layout.run_id(dataset, size, seed, arm) / "eval.npz") as npz:
            preds[arm] = npz["logits"].argmax(axis=1) == npz["labels"]
    t, b = preds[treated], preds[baseline]
    n = t.size
    d = t.astype(float) - b.astype(float)
    return float(d.mean()), float(d.var(ddof=1) / n)  # the variance of a mean of n paired differences


def measure(root: Path, factor: float) -> dict:
    params = load_params(root / "params.yaml")
    runs = root / "data" / "runs"
    out: dict = {"eval_max": params.sample.eval_max, "factor": factor, "comparisons": {}}
    for treated, baseline in ((params.loss, "cce"), (params.loss, "setfit")):
        per_dataset, within_all, between_all = {}, [], []
        for dataset in params.datasets:
            for size in params.sample_sizes:
                pairs = [paired(runs, dataset, size, seed, treated, baseline) for seed in params.seeds]
                gains = np.array([g for g, _ in pairs])
                within = float(np.mean([v for _, v in pairs]))  # evaluation sampling, per seed
                total = float(gains.var(ddof=1))  # seed to seed, everything
                per_dataset[f"{dataset}-{size}"] = {
                    "sd_gain_pp": round(100 * math.sqrt(total), 2),
                    "sd_eval_sampling_pp": round(100 * math.sqrt(within), 2),
                    "eval_share": round(min(1.0, within / total), 3) if total > 0 else None,
                }
                within_all.append(within)
                between_all.append(total)
        within, total = float(np.mean(within_all)), float(np.mean(between_all))
        other = max(total - within, 0.0)
        narrower = 1 - math.sqrt(other + within / factor) / math.sqrt(total) if total > 0 else 0.0
        out["comparisons"][f"{treated}-{baseline}"] = {
            "per_dataset": per_dataset,
            "eval_share": round(min(1.0, within / total), 3) if total > 0 else None,
            f"interval_narrower_with_{factor:g}x_eval": round(narrower, 3),
        }
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=ROOT, help="a workspace whose runs are in data/runs")
    ap.add_argument("--factor", type=float, default=5.0, help="how many times more evaluation examples to project")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    result = measure(args.root, args.factor)
    args.out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "per_dataset"} for k, v in result["comparisons"].items()}, indent=2))


if __name__ == "__main__":
    main()
