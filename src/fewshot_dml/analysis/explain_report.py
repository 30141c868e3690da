"""Reading the explain stage's attributions and summarising them for the analysis report (no torch).

Seed agreement: for each (arm, target) and sentence, Spearman's rho between the word attributions of
two seeds, averaged over seed pairs and sentences. It is descriptive (how reproducible an explanation
is across seeds of the same recipe), not a test.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fewshot_dml.catalog.arms import DML
from fewshot_dml.config.params import Params
from fewshot_dml.core import io, layout
from fewshot_dml.core.markdown import table

INDEX = "index.json"  # data/explain/index.json: the (dataset, size) cells the explain stage explained, maybe none


def read_explained(params: Params, explain_dir: Path) -> list[dict[str, Any]]:
    """The attributions of the grid's (dataset, size) cells that have them, in grid order."""
    index = io.read_json(Path(explain_dir) / INDEX)
    present = set(index["explained"])
    out = []
    for dataset in params.datasets:
        for size in params.sample_sizes:
            name = f"{layout.split_group(dataset, size)}.json"
            if name in present:
                out.append(io.read_json(Path(explain_dir) / name))
    return out


def seed_agreement(item: Mapping[str, Any]) -> dict[str, float]:
    """``"<role> <target>"`` -> mean Spearman rho over seed pairs and sentences (NaN with one seed)."""
    from scipy.stats import spearmanr

    by_key: dict[str, dict[int, list[list[float]]]] = {}
    for run in item["runs"]:
        by_key.setdefault(f"{run['role']} {run['kind']}", {})[run["seed"]] = run["attributions"]
    out = {}
    for key, seeds in by_key.items():
        rhos = []
        for a, b in itertools.combinations(sorted(seeds), 2):
            for x, y in zip(seeds[a], seeds[b], strict=True):
                if len(x) > 2 and np.ptp(x) > 0 and np.ptp(y) > 0:
                    rhos.append(float(spearmanr(x, y).statistic))
        out[key] = float(np.mean(rhos)) if rhos else float("nan")
    return out


def max_relative_delta(item: Mapping[str, Any]) -> float:
    """The largest |convergence delta| / |F(x) − F(baseline)| of the cell: how far from complete the integral is."""
    worst = 0.0
    for run in item["runs"]:
        for delta, at_x, at_base in zip(run["delta"], run["score"], run["baseline_score"], strict=True):
            worst = max(worst, abs(delta) / max(abs(at_x - at_base), 1e-6))
    return worst


def agreement_summary(explained: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """For metrics.json: per cell, the seed agreement of each (role, target) and the worst relative delta."""
    out: dict[str, Any] = {}
    for item in explained:
        cell = layout.split_group(item["dataset"], item["size"])
        agreement = {k.replace(" ", "_"): round(v, 4) if np.isfinite(v) else None for k, v in seed_agreement(item).items()}
        out[cell] = {"seed_agreement": agreement, "max_relative_delta": round(max_relative_delta(item), 6)}
    return out


def attribution_section(params: Params, explained: Sequence[Mapping[str, Any]], figures: Sequence[str]) -> str:
    """The analysis report's attribution section: method, agreement table, completeness, figures."""
    e = params.explain
    head = "## Token attributions (Integrated Gradients)"
    if not explained:
        return (
            f"{head}\n\nNo run of this experiment kept its weights, so nothing is attributed. Set "
            "`train.save_weights` to a list of datasets (or `true`) and rerun to get them."
        )
    rows = []
    for item in explained:
        cell = layout.split_group(item["dataset"], item["size"])
        seeds = len({r["seed"] for r in item["runs"]})
        for key, rho in seed_agreement(item).items():
            role, kind = key.split(" ")
            arm = params.loss if role == DML else role  # the loss's name, as in results.md
            rows.append([cell, f"`{arm}`", kind, seeds, "–" if not np.isfinite(rho) else f"{rho:+.2f}"])
    worst = max(max_relative_delta(item) for item in explained)
    text = [
        head,
        f"Captum's `LayerIntegratedGradients` at the embedding layer, {e.steps} steps, from a baseline that keeps "
        "the special tokens and pads every other one; attributions summed over the hidden dimension and over each "
        f"word's sub-word tokens. {e.sentences} evaluation sentences per dataset, drawn class by class (seed "
        f"{e.seed}) from the first seed's evaluation set, the same for every arm and seed. What is explained is "
        "the true class's log-softmax of two scores: `classifier` (the head's logits, i.e. the log-probability) "
        "and `metric` (the loss's own class scores where it has centres: `proxy`; else the cosines to the class "
        "prototypes of the run's few-shot embeddings: `prototype`). SetFit's arm (a scikit-learn head) is not "
        "attributed.",
        f"Completeness: the largest |convergence delta| relative to |F(x) − F(baseline)| over every attribution is "
        f"{100 * worst:.2g}% (Integrated Gradients' attributions sum to that difference as the steps grow).",
        "Seed agreement (descriptive): Spearman's rho between two seeds' word attributions of one sentence, "
        "averaged over seed pairs and sentences; 1 = the seeds rank the words alike.",
        table(["cell", "arm", "score", "seeds", "mean rho"], rows),
        *(f"![{name}](figures/{name})" for name in figures),
    ]
    return "\n\n".join(text)
