"""Benchmark: accuracy as a function of training time, each arm beside SetFit at its published recipe.

On the pipeline's own splits (``data/splits/<dataset>-16/<seed>.json``, after ``dvc repro``) and through
the train stage's own code (:func:`fewshot_dml.train.run.train_run`), in one process, arm after arm:

- ``cce`` and the DML arm of ``params.yaml`` (``loss``), each trained for ``max(--steps)`` steps in
  ``fp32`` and, where the CPU has native bf16, in ``bf16``; at each of ``--steps`` the training clock
  stops and the evaluation set is classified (an anytime curve of one run: the cosine schedule is that
  of the longest run, so step 20 here is not the default's 20-step run). At each fp32 checkpoint the
  evaluation set is also classified under bf16 autocast, counting the predictions that change.
- SetFit at the paper's few-shot recipe (Tunstall et al. 2022: ``num_iterations=20``, one epoch, batch
  16, body lr 2e-5, logistic head) and with fewer pairs (``--setfit-iterations``), each a whole run.

Training seconds exclude the checkpoint evaluations; every run also reports its final embedding pass
(evaluation, development and training sets) apart. Both arms use the same threads, so wall-time
ratios are CPU-time ratios. The headline: the seconds SetFit's published recipe trains, over the
seconds the best DML arm needs to reach SetFit's mean accuracy (the first checkpoint whose mean
accuracy over the cells is at least SetFit's).

Usage (from the repository root, after `dvc repro`):
    python bench/time_to_accuracy.py --datasets mr cr trec --seeds 0 1 --steps 10 20 40 80 \
        --out bench/time_to_accuracy.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import platform
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fewshot_dml.config.params import load_params
from fewshot_dml.core import layout
from fewshot_dml.core.io import write_json
from fewshot_dml.core.timing import Phases
from fewshot_dml.model.batching import is_pair_table, tokenize
from fewshot_dml.model.device import Precision, native_bf16
from fewshot_dml.model.ref import resolve
from fewshot_dml.train import finetune, loop
from fewshot_dml.train import run as run_module

log = logging.getLogger("time_to_accuracy")
BF16 = Precision(torch.bfloat16)


def classifier_curve(
    params: Any, arm: str, precision: str, shared: run_module.Shared, card: Path, split: Path, steps: Sequence[int]
) -> dict:
    """One run of ``arm`` for ``max(steps)`` steps, classifying the evaluation set at each of ``steps``."""
    total = max(steps)
    # One run of `total` steps read at several step counts: the final model, no development checkpoint choice.
    train = dataclasses.replace(params.train, steps=total, warmup_steps=max(1, round(0.1 * total)), precision=precision, dev_checkpoints=1)
    split_rows = json.loads(split.read_text())["eval"]
    labels = shared.table["label"].to_numpy(np.int64)[split_rows]
    points: list[dict[str, Any]] = []
    paused = [0.0]
    started = [0.0]

    def fit(model, objective, tokenizer, features, y, train_, loss, device, generator, on_step=None):  # the stage's fit, with checkpoints
        evals = tokenize(tokenizer, shared.table, split_rows, train_.max_length, is_pair_table(shared.table))

        def on_step(step: int) -> None:
            if step not in steps:
                return
            clock = time.perf_counter()
            logits, _ = loop.embed(model, tokenizer, evals, train_.eval_batch_size, device, model.num_labels)
            eval_s = time.perf_counter() - clock
            point = {
                "step": step,
                "train_s": round(clock - started[0] - paused[0], 3),
                "eval_s": round(eval_s, 3),
                "accuracy": float(np.mean(logits.argmax(axis=1) == labels)),
            }
            if precision == "fp32":  # would bf16 evaluation change any prediction of this model?
                low = time.perf_counter()
                bf16_logits, _ = loop.embed(model, tokenizer, evals, train_.eval_batch_size, device, model.num_labels, BF16)
                point["bf16_eval_s"] = round(time.perf_counter() - low, 3)
                point["bf16_eval_changed"] = int(np.sum(bf16_logits.argmax(axis=1) != logits.argmax(axis=1)))
            points.append(point)
            paused[0] += time.perf_counter() - clock

        started[0] = time.perf_counter()
        return loop.fit(model, objective, tokenizer, features, y, train_, loss, device, generator, on_step=on_step)

    phases = Phases()
    original = finetune.fit
    finetune.fit = fit
    try:
        with tempfile.TemporaryDirectory() as out:
            metrics = run_module.train_run(
                train, params.losses[arm], shared.table_path, card, split, Path(out) / "run", phases, shared=shared
            )
    finally:
        finetune.fit = original
    return {
        "points": points,
        "load_s": round(phases.seconds.get("load", 0.0), 3),
        "final_embed_s": round(phases.seconds["embed"], 3),
        "degenerate": metrics["degenerate"],  # of the model after the last step
    }


def setfit_run(params: Any, iterations: int, shared: run_module.Shared, card: Path, split: Path) -> dict:
    """One SetFit run with ``num_iterations`` pairs per example (the train stage's code)."""
    loss = params.losses["setfit"]
    loss = dataclasses.replace(loss, hparams={**loss.hparams, "num_iterations": iterations})
    phases = Phases()
    with tempfile.TemporaryDirectory() as out:
        metrics = run_module.train_run(
            dataclasses.replace(params.train, dev_checkpoints=1),
            loss,
            shared.table_path,
            card,
            split,
            Path(out) / "run",
            phases,
            shared=shared,
        )
    return {
        "num_iterations": iterations,
        "steps": metrics["steps"],
        "train_s": round(phases.seconds["fit"], 3),  # pair fine-tuning and the logistic head
        "final_embed_s": round(phases.seconds["embed"], 3),
        "load_s": round(phases.seconds.get("load", 0.0), 3),
        "accuracy": metrics["accuracy"],
        "majority_accuracy": metrics["majority_accuracy"],
        "degenerate": metrics["degenerate"],  # e.g. the logistic head predicting one class for every example
    }


def summarise(cells: list[dict], steps: Sequence[int], iterations: Sequence[int]) -> dict:
    """Means over the cells; per arm the seconds to reach SetFit's mean accuracy at its published recipe."""
    mean = statistics.fmean
    arms: dict[str, list[dict]] = {}
    for key in sorted({k for cell in cells for k in cell["classifier"]}):
        arms[key] = [
            {
                "step": s,
                "train_s": round(mean(p["train_s"] for c in cells for p in c["classifier"][key]["points"] if p["step"] == s), 2),
                "accuracy": round(mean(p["accuracy"] for c in cells for p in c["classifier"][key]["points"] if p["step"] == s), 4),
            }
            for s in steps
        ]
    setfit = [
        {
            "num_iterations": n,
            "steps": round(mean(r["steps"] for c in cells for r in c["setfit"] if r["num_iterations"] == n), 1),
            "train_s": round(mean(r["train_s"] for c in cells for r in c["setfit"] if r["num_iterations"] == n), 2),
            "accuracy": round(mean(r["accuracy"] for c in cells for r in c["setfit"] if r["num_iterations"] == n), 4),
        }
        for n in iterations
    ]
    published = next(r for r in setfit if r["num_iterations"] == max(iterations))
    # The headline must not rest on SetFit's collapse: compare on the cells where its published run is sound,
    # i.e. not degenerate (train.health) and better than always predicting the majority class.
    runs = {id(c): next(r for r in c["setfit"] if r["num_iterations"] == max(iterations)) for c in cells}
    clean = [c for c in cells if _sound(runs[id(c)])]
    published["unsound_cells"] = [f"{c['dataset']} seed {c['seed']}" for c in cells if not _sound(runs[id(c)])]
    reach = {key: reach_setfit(clean, key, max(iterations)) for key in arms} if clean else {}
    checked = [(p, c["n_eval"]) for c in cells for v in c["classifier"].values() for p in v["points"] if "bf16_eval_changed" in p]
    changed = [p["bf16_eval_changed"] for p, _ in checked]
    fp32_eval = [p["eval_s"] for c in cells for v in c["classifier"].values() for p in v["points"] if "bf16_eval_s" in p]
    bf16_eval = [p["bf16_eval_s"] for c in cells for v in c["classifier"].values() for p in v["points"] if "bf16_eval_s" in p]
    return {
        "curves": arms,
        "setfit": setfit,
        "setfit_published": published,
        "reach_setfit": reach,
        "bf16_eval": {
            "checkpoints": len(changed),
            "checkpoints_with_a_changed_prediction": sum(1 for n in changed if n),
            "changed_predictions": sum(changed),
            "predictions": sum(n for _, n in checked),
            "speedup": round(statistics.median(fp32_eval) / statistics.median(bf16_eval), 2) if bf16_eval else None,
        },
    }


def _sound(run: dict) -> bool:
    return not run["degenerate"] and run["accuracy"] > run.get("majority_accuracy", 0.0)


def reach_setfit(cells: list[dict], key: str, iterations: int) -> dict[str, Any]:
    """``key``'s mean curve over ``cells`` against SetFit's mean accuracy there: the first checkpoint at or above
    it, its seconds, SetFit's seconds over them; and per cell, whether the arm reached that cell's SetFit accuracy."""
    mean = statistics.fmean
    runs = [next(r for r in c["setfit"] if r["num_iterations"] == iterations) for c in cells]
    target, target_s = mean(r["accuracy"] for r in runs), mean(r["train_s"] for r in runs)
    steps = [p["step"] for p in cells[0]["classifier"][key]["points"]]
    curve = [
        (
            s,
            mean(p["train_s"] for c in cells for p in c["classifier"][key]["points"] if p["step"] == s),
            mean(p["accuracy"] for c in cells for p in c["classifier"][key]["points"] if p["step"] == s),
        )
        for s in steps
    ]
    hit = next(((s, t) for s, t, a in curve if a >= target), None)
    reached = sum(
        1 for c, r in zip(cells, runs, strict=True) if any(p["accuracy"] >= r["accuracy"] for p in c["classifier"][key]["points"])
    )
    return {
        "cells": len(cells),
        "setfit_accuracy": round(target, 4),
        "setfit_train_s": round(target_s, 2),
        "step": None if hit is None else hit[0],
        "train_s": None if hit is None else round(hit[1], 2),
        "setfit_over_arm": None if hit is None else round(target_s / hit[1], 2),
        "at_first_checkpoint": hit is not None and hit[0] == steps[0],  # then the ratio is a lower bound
        "cells_reached": reached,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=["mr", "cr", "trec"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--steps", nargs="+", type=int, default=[10, 20, 40, 80], help="checkpoints of the classifier arms")
    ap.add_argument("--setfit-iterations", nargs="+", type=int, default=[5, 10, 20], help="the last is the published recipe")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--out", type=Path, default=Path("bench/time_to_accuracy.json"))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    params = load_params(args.params)
    size = params.sample_sizes[0]
    device = torch.device("cpu")
    precisions = ["fp32", "bf16"] if native_bf16(device) else ["fp32"]
    model = resolve(params.train.model)
    cells = []
    warm = True  # the first runs of a process import the training code (seconds): one throwaway run of each kind first
    for dataset in args.datasets:
        card = Path(f"data/raw/{dataset}{layout.CARD_SUFFIX}")
        shared = run_module.Shared(model, Path(f"data/raw/{dataset}{layout.TABLE_SUFFIX}"), card)
        for seed in args.seeds:
            split = Path("data/splits") / layout.split_group(dataset, size) / layout.split_file(seed)
            if warm:
                classifier_curve(params, "cce", "fp32", shared, card, split, [1])
                setfit_run(params, 1, shared, card, split)
                warm = False
            cell: dict[str, Any] = {"dataset": dataset, "seed": seed, "n_eval": len(json.loads(split.read_text())["eval"])}
            cell["classifier"] = {
                f"{arm}/{precision}": classifier_curve(params, arm, precision, shared, card, split, sorted(args.steps))
                for arm in ("cce", params.loss)
                for precision in precisions
            }
            cell["setfit"] = [setfit_run(params, n, shared, card, split) for n in sorted(args.setfit_iterations)]
            log.info("%s seed %d: %s", dataset, seed, json.dumps({k: v["points"][-1]["accuracy"] for k, v in cell["classifier"].items()}))
            cells.append(cell)
    result = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}",
        "model": params.train.model,
        "dml_arm": params.loss,
        "size": size,
        "datasets": args.datasets,
        "seeds": args.seeds,
        "steps": sorted(args.steps),
        "precisions": precisions,
        "summary": summarise(cells, sorted(args.steps), sorted(args.setfit_iterations)),
        "cells": cells,
    }
    write_json(args.out, result)
    print(json.dumps(result["summary"], indent=2))


if __name__ == "__main__":
    main()
