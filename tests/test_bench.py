"""bench/pipeline.py's attribution of wall time and its report (the measurement itself is the bench)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.pipeline import attribute, best_dml, render_results, targets  # noqa: E402
from bench.time_to_accuracy import _sound, summarise  # noqa: E402

RECORDS = [
    {"stage": "sample", "wall_s": 1.0, "imports_s": 0.6, "phases": {}},
    {"stage": "train", "wall_s": 100.0, "imports_s": 3.0, "phases": {"read": 0.5, "load": 5.0, "fit": 80.0, "embed": 10.0, "write": 0.5}},
    {"stage": "train", "wall_s": 50.0, "imports_s": 3.0, "phases": {"load": 2.0, "fit": 40.0, "embed": 4.0}},
    {"stage": "infer", "wall_s": 2.0, "imports_s": 0.5, "phases": {"read": 0.5, "infer": 0.8, "write": 0.1}},
]


def test_attribute_splits_every_second_into_one_category() -> None:
    result = attribute(RECORDS, total_s=170.0)
    overall = result["overall_s"]
    assert overall["training compute"] == 120.0 and overall["evaluation compute"] == pytest.approx(14.8)
    assert overall["imports"] == pytest.approx(7.1) and overall["model load"] == 7.0
    assert overall["DVC bookkeeping"] == pytest.approx(17.0)  # 170 - (1 + 100 + 50 + 2)
    assert sum(overall.values()) == pytest.approx(170.0, abs=0.2)  # nothing counted twice or lost
    assert result["stages"]["train"]["count"] == 2
    assert result["stages"]["train"]["other stage work"] == pytest.approx(2.0)  # (100 - 99) + (50 - 49)
    assert result["overhead_share"] == pytest.approx(1 - 134.8 / 170, abs=1e-3)


def pipe(total: float, noop: float) -> dict:
    result = attribute(RECORDS, total_s=total)
    result.update(
        noop_repro_s=noop,
        runs=10,
        changed_tracked_files=[],
        machine={
            "cpu_count": 2,
            "platform": "linux",
            "python": "3.11",
            "torch": "2",
            "transformers": "5",
            "pytorch-metric-learning": "2",
            "setfit": "1",
            "dvc": "3",
        },
    )
    return result


def test_targets_are_judged_and_a_miss_names_its_measured_cause() -> None:
    judged = {t["key"]: t for t in targets(pipe(900.0, 2.0), None)}
    assert not judged["study_s"]["met"] and "135 s for 10 runs" in judged["study_s"]["why"]
    assert judged["noop_repro_s"]["met"] and judged["noop_repro_s"]["why"] == ""
    assert judged["infer_s_per_run"]["value"] == 0.2 and judged["infer_s_per_run"]["met"]
    assert judged["train_startup_s"]["value"] == pytest.approx(6.5)  # (3 + 3 + 5 + 2) / 2 stages
    assert "step_speedup" not in judged  # no train_speed results: not claimed


def test_render_shows_every_target_and_the_identity_check() -> None:
    speed = {
        "batch_size": 16,
        "max_length": 64,
        "dataset": "mr",
        "mean_tokens_per_example": 30.0,
        "machine": "x",
        "train_step_speedup": 1.3,
        "eval_embed_speedup": 1.5,
        "adamw_speedup": 4.8,
        "adamw_step_s": {"fused": 0.01, "per_tensor": 0.05},
        "reference": {
            "step_s": {"ours": 0.5, "studies": 0.8},
            "examples_per_s": {"ours": 32, "studies": 20},
            "real_tokens_per_s": {"ours": 900, "studies": 560},
            "padded_tokens": {"ours": 640, "studies": 1024, "real": 450},
            "speedup": 1.6,
            "our_step_gflop": 30.0,
            "our_gflops_per_s": 60.0,
            "matmul_peak_gflops_per_s": 120.0,
            "share_of_peak": 0.5,
        },
    }
    text = render_results(pipe(170.0, 4.0), speed)
    assert text.count("| **no** |") == 4  # the 3 s no-op, the 3x step speed-up, the 60% of peak and the 3 s start-up
    speed["precision"] = {
        "step_s": {"fp32": 0.5, "bf16": 0.3},
        "step_speedup": 1.67,
        "eval_s": {"fp32": 1.0, "bf16": 0.6},
        "eval_speedup": 1.67,
        "step_gflop": 30.0,
        "gflops_per_s": {"fp32": 60.0, "bf16": 100.0},
        "matmul_peak_gflops_per_s": {"fp32": 120.0, "bf16": 150.0},
        "share_of_peak": {"fp32": 0.5, "bf16": 0.667},
    }
    speed["startup"] = {"imports_s": 1.3, "first_read_and_load_s": 2.4, "startup_s": 3.7, "per_extra_seed_s": 0.1}
    judged = {t["key"]: t for t in targets(pipe(170.0, 2.5), speed)}
    assert judged["train_startup_s"]["value"] == 3.7 and "imports 1.3 s + reading the inputs" in judged["train_startup_s"]["why"]
    assert judged["train_extra_seed_s"]["met"] and judged["bf16_share_of_peak"]["met"] and judged["noop_repro_s"]["met"]
    assert "| bf16 | 0.3 | 100.0 | 150.0 | 67% | 0.6 |" in render_results(pipe(170.0, 4.0), speed)
    assert "we save padding (1024 vs 640 tokens for 450 real ones" in text and "| yes |" in text
    assert "committed ones): **none, byte-identical**" in text
    changed = pipe(170.0, 4.0) | {"changed_tracked_files": ["reports/results.md"]}
    assert "committed ones): **`reports/results.md`**" in render_results(changed, None)


def cell(dataset: str, curves: dict[str, list[tuple[int, float, float]]], setfit: list[tuple[int, float, float, list]]) -> dict:
    """A time_to_accuracy cell: per arm (step, train_s, accuracy) points; SetFit (num_iterations, train_s, accuracy, degenerate)."""
    return {
        "dataset": dataset,
        "seed": 0,
        "n_eval": 100,
        "classifier": {
            key: {
                "points": [
                    {
                        "step": s,
                        "train_s": t,
                        "eval_s": 1.0,
                        "accuracy": a,
                        **({"bf16_eval_s": 0.5, "bf16_eval_changed": 1} if key.endswith("fp32") else {}),
                    }
                    for s, t, a in pts
                ]
            }
            for key, pts in curves.items()
        },
        "setfit": [
            {"num_iterations": n, "steps": 2 * n, "train_s": t, "accuracy": a, "majority_accuracy": 0.5, "degenerate": d}
            for n, t, a, d in setfit
        ],
    }


def test_time_to_accuracy_finds_the_first_checkpoint_at_setfits_accuracy() -> None:
    cells = [
        cell(
            "a",
            {
                "supcon/fp32": [(10, 5.0, 0.6), (20, 10.0, 0.8)],
                "supcon/bf16": [(10, 3.0, 0.7), (20, 6.0, 0.9)],
                "cce/fp32": [(10, 5.0, 0.5), (20, 10.0, 0.6)],
            },
            [(5, 10.0, 0.7, []), (20, 40.0, 0.8, [])],
        ),
        cell(
            "b",
            {
                "supcon/fp32": [(10, 7.0, 0.7), (20, 14.0, 0.8)],
                "supcon/bf16": [(10, 5.0, 0.7), (20, 10.0, 0.8)],
                "cce/fp32": [(10, 7.0, 0.5), (20, 14.0, 0.6)],
            },
            [(5, 10.0, 0.7, []), (20, 40.0, 0.8, [])],
        ),
        # SetFit's head collapsed here: its low accuracy must not become the target the DML arm "reaches".
        cell(
            "c",
            {
                "supcon/fp32": [(10, 7.0, 0.2), (20, 14.0, 0.3)],
                "supcon/bf16": [(10, 5.0, 0.2), (20, 10.0, 0.3)],
                "cce/fp32": [(10, 7.0, 0.2), (20, 14.0, 0.3)],
            },
            [(5, 10.0, 0.2, ["collapsed"]), (20, 40.0, 0.2, ["predictions collapsed"])],
        ),
    ]
    summary = summarise(cells, [10, 20], [5, 20])
    assert summary["setfit_published"]["unsound_cells"] == ["c seed 0"] and summary["setfit_published"]["accuracy"] == 0.6
    reach = summary["reach_setfit"]
    first = {"cells": 2, "setfit_accuracy": 0.8, "setfit_train_s": 40.0, "at_first_checkpoint": False, "cells_reached": 2}
    assert reach["supcon/fp32"] == first | {"step": 20, "train_s": 12.0, "setfit_over_arm": 3.33}  # mean 0.65 at step 10, 0.8 at 20
    assert reach["supcon/bf16"] == first | {"step": 20, "train_s": 8.0, "setfit_over_arm": 5.0}  # mean 0.7 at step 10 is short of 0.8
    assert reach["cce/fp32"] == first | {"step": None, "train_s": None, "setfit_over_arm": None, "cells_reached": 0}
    assert summary["bf16_eval"] == {
        "checkpoints": 12,  # 2 fp32 arms x 2 checkpoints x 3 cells
        "checkpoints_with_a_changed_prediction": 12,
        "changed_predictions": 12,
        "predictions": 1200,
        "speedup": 2.0,
    }
    # Not flagged degenerate but no better than the majority class (a head leaning on it): not a target either.
    assert not _sound({"degenerate": [], "accuracy": 0.615, "majority_accuracy": 0.62}) and _sound(
        {"degenerate": [], "accuracy": 0.7, "majority_accuracy": 0.5}
    )
    tta = {"dml_arm": "supcon", "summary": summary, "steps": [10, 20]}
    assert best_dml(tta)[0] == "supcon/bf16"


def test_eval_size_splits_the_gain_variance_into_evaluation_sampling_and_the_rest(tmp_path: Path) -> None:
    """Two arms on 4 examples: a seed's gain and McNemar's variance of the paired difference, var(d) / n."""
    import numpy as np
    from bench.eval_size import paired

    from fewshot_dml.core import layout

    labels = np.array([0, 1, 0, 1])
    correct = {"supcon": [1, 1, 1, 0], "cce": [1, 0, 0, 0]}  # d = 0, 1, 1, 0
    for arm, right in correct.items():
        run = tmp_path / layout.run_id("mr", 8, 0, arm)
        run.mkdir(parents=True)
        predicted = np.where(np.array(right) == 1, labels, 1 - labels)
        np.savez(run / "eval.npz", logits=np.eye(2)[predicted].astype(np.float32), labels=labels)
    gain, variance = paired(tmp_path, "mr", 8, 0, "supcon", "cce")
    assert gain == pytest.approx(0.5) and variance == pytest.approx(np.var([0, 1, 1, 0], ddof=1) / 4)
