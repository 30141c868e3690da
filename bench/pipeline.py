"""Benchmark: where the wall time of `dvc repro` goes, per stage kind, from an empty cache.

Clones the repository next to itself (so `fetch.local_dir: ../shared/senteval` resolves), runs
`dvc repro` there with `FEWSHOT_DML_TIMING` set, so every stage process appends its timing record
(imports, model load, training compute, evaluation compute, artifact writing; see
fewshot_dml.core.timing), then times a no-op `dvc repro` and checks that the clone's `dvc.lock` and
reports are byte-identical to the committed ones. DVC's own bookkeeping is the total wall time
minus the stage processes' wall times.

Usage (from the repository root, after the README's set-up; takes as long as the study):
    python bench/pipeline.py --out bench/pipeline.json
    python bench/pipeline.py --render bench/pipeline.json --speed bench/results.json --md bench/results.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Phase names recorded by the stages (fewshot_dml.core.timing) -> the categories of the report.
CATEGORY = {
    "load": "model load",
    "fit": "training compute",
    "embed": "evaluation compute",
    "infer": "evaluation compute",
    "write": "artifact writing",
    "read": "input reading",
}
COMPUTE = ("training compute", "evaluation compute")
ORDER = (
    "imports",
    "model load",
    "input reading",
    "training compute",
    "evaluation compute",
    "artifact writing",
    "other stage work",
    "DVC bookkeeping",
)


def attribute(records: Iterable[Mapping[str, Any]], total_s: float) -> dict[str, Any]:
    """Seconds per (stage kind, category) and overall, from the stages' timing records.

    A stage's time that no phase covers is "other stage work" (argument parsing, params, the
    work of stages that name no phases); the total minus every stage's wall time is DVC's.
    """
    kinds: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    count: dict[str, int] = defaultdict(int)
    for rec in records:
        kind, cats = rec["stage"], kinds[rec["stage"]]
        count[kind] += 1
        cats["wall"] += rec["wall_s"]
        cats["imports"] += rec["imports_s"]
        covered = rec["imports_s"]
        for phase, seconds in rec["phases"].items():
            cats[CATEGORY.get(phase, "other stage work")] += seconds
            covered += seconds
        cats["other stage work"] += max(0.0, rec["wall_s"] - covered)
    stages_s = sum(c["wall"] for c in kinds.values())
    overall = {cat: sum(c.get(cat, 0.0) for c in kinds.values()) for cat in ORDER[:-1]}
    overall["DVC bookkeeping"] = max(0.0, total_s - stages_s)
    compute = sum(overall[c] for c in COMPUTE)
    return {
        "total_s": round(total_s, 1),
        "stages": {k: {"count": count[k], **{c: round(v, 2) for c, v in kinds[k].items()}} for k in sorted(kinds)},
        "overall_s": {c: round(overall[c], 1) for c in ORDER},
        "overhead_share": round(1 - compute / total_s, 3) if total_s > 0 else None,
    }


def _run(cmd: list[str], cwd: Path, env: Mapping[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=dict(env), check=True)
    return time.perf_counter() - start


def measure(keep: bool = False) -> dict[str, Any]:
    """Clone, `dvc repro` from an empty cache with timing records, a no-op repro, the identity check."""
    # A sibling of this checkout, so that relative paths such as ../shared/senteval resolve the same.
    repo = Path(tempfile.mkdtemp(prefix=".fewshot-bench-", dir=ROOT.parent))
    scratch = Path(tempfile.mkdtemp(prefix="fewshot-bench-timing-"))
    try:
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(repo)], check=True)
        timing = scratch / "timing.jsonl"
        total = _run([sys.executable, "-m", "dvc", "repro", "--quiet"], repo, _env(timing))
        return collect(repo, timing, total)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if keep:
            print(f"kept the clone: {repo}")
        else:
            shutil.rmtree(repo, ignore_errors=True)


def _env(timing: Path) -> dict[str, str]:
    return {
        **os.environ,
        "FEWSHOT_DML_TIMING": str(timing),
        "FEWSHOT_DML_LOG": "WARNING",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def collect(repo: Path, timing: Path, total: float) -> dict[str, Any]:
    """The report of a `dvc repro` from an empty cache in the fresh clone ``repo`` that took ``total``
    seconds and wrote ``timing``: the attribution, three no-op repros, the files it changed."""
    # The records of that repro only (the no-op repros below run the always-changed check again).
    records = [json.loads(line) for line in timing.read_text().splitlines() if line.strip()]
    noop = [_run([sys.executable, "-m", "dvc", "repro", "--quiet"], repo, _env(timing.with_suffix(".noop"))) for _ in range(3)]
    changed = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.split("\n")
    result = attribute(records, total)
    result["records"] = records
    result["noop_repro_s"] = round(statistics.median(noop), 2)
    result["runs"] = sum(1 for _ in (repo / "data/infer").rglob("*.json"))
    result["changed_tracked_files"] = sorted(line[3:] for line in changed if line.strip())
    result["machine"] = _machine()
    return result


def _machine() -> dict[str, Any]:
    import importlib.metadata as md

    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        **{name: md.version(name) for name in ("torch", "transformers", "pytorch-metric-learning", "dvc", "setfit")},
    }


TARGETS = {  # the performance issues' targets: (goal, lower is better)
    "study_s": (600.0, True),
    "overhead_share": (0.25, True),
    "infer_s_per_run": (0.5, True),
    "train_startup_s": (3.0, True),
    "train_extra_seed_s": (0.5, True),
    "noop_repro_s": (3.0, True),
    "step_speedup": (3.0, False),
    "share_of_peak": (0.60, False),
    "bf16_share_of_peak": (0.60, False),
    "setfit_over_dml": (3.0, False),
}


def targets(pipe: Mapping[str, Any], speed: Mapping[str, Any] | None, tta: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Each target with its measured value, whether it is met, and the gap's measured cause."""
    train, infer = pipe["stages"].get("train", {}), pipe["stages"].get("infer", {})
    runs = max(1, pipe.get("runs", 1))
    overall = pipe["overall_s"]
    compute = sum(overall[c] for c in COMPUTE)
    ref = (speed or {}).get("reference")
    stages = max(1, train.get("count", 1))
    rows = [
        (
            "study_s",
            "CPU default from an empty cache (s)",
            pipe["total_s"],
            f"training + evaluation compute alone is {compute:.0f} s for {runs} runs ({compute / runs:.1f} s per run)",
        ),
        (
            "overhead_share",
            "overhead (not training/evaluation compute), share of wall",
            pipe["overhead_share"],
            f"DVC bookkeeping {overall['DVC bookkeeping']:.0f} s, imports {overall['imports']:.0f} s, "
            f"model load {overall['model load']:.0f} s",
        ),
        ("infer_s_per_run", "`infer` stage wall per run (s)", round(infer.get("wall", 0) / runs, 3), ""),
    ]
    startup = (speed or {}).get("startup")
    if startup:
        rows += [
            (
                "train_startup_s",
                "`train` stage start-up: imports + inputs + the first model load (s)",
                startup["startup_s"],
                f"imports {startup['imports_s']:.1f} s + reading the inputs and the first model load "
                f"{startup['first_read_and_load_s']:.1f} s, most of it the first import of transformers' model code, "
                "which imports torch._dynamo and torch.distributed (`python -X importtime`)",
            ),
            ("train_extra_seed_s", "`train` stage, each extra seed's read + load (s)", startup["per_extra_seed_s"], ""),
        ]
    else:  # the pipeline's own records: every seed's load summed per stage
        rows.append(
            (
                "train_startup_s",
                "`train` stage start-up: imports + model loads, per stage (s)",
                round((train.get("imports", 0) + train.get("model load", 0)) / stages, 2),
                f"imports {train.get('imports', 0) / stages:.1f} s + model loads {train.get('model load', 0) / stages:.1f} s",
            )
        )
    rows.append(
        (
            "noop_repro_s",
            "no-op `dvc repro` (s)",
            pipe["noop_repro_s"],
            "DVC itself: it parses params.yaml once per stage and the lock files (cProfile of `dvc repro`)",
        )
    )
    if ref:
        pad = ref["padded_tokens"]
        rows += [
            (
                "step_speedup",
                "our training step vs the studies-style step (x)",
                ref["speedup"],
                f"both run the same encoder on the same sentences; we save padding ({pad['studies']} vs "
                f"{pad['ours']} tokens for {pad['real']} real ones in this batch) and the optimiser loop",
            ),
        ]
    prec = (speed or {}).get("precision")
    if ref and not prec:
        rows.append(
            (
                "share_of_peak",
                "our fp32 step's FLOP/s, share of the measured fp32 matmul peak",
                ref["share_of_peak"],
                f"{ref['our_gflops_per_s']} of {ref['matmul_peak_gflops_per_s']} GFLOP/s; the rest goes to "
                "non-matmul work (attention softmax, GELU, layer norm, the optimiser) and 384-wide matrices",
            )
        )
    if prec:
        rows.append(
            (
                "share_of_peak",
                "our fp32 step's FLOP/s, share of the measured fp32 matmul peak (the DML arm's step)",
                prec["share_of_peak"]["fp32"],
                f"{prec['gflops_per_s']['fp32']} of {prec['matmul_peak_gflops_per_s']['fp32']} GFLOP/s; the rest goes to "
                "non-matmul work (attention softmax, GELU, layer norm, the optimiser) and 384-wide matrices",
            )
        )
        rows.append(
            (
                "bf16_share_of_peak",
                "our bf16 step's FLOP/s, share of the measured bf16 matmul peak",
                prec["share_of_peak"]["bf16"],
                f"{prec['gflops_per_s']['bf16']} of {prec['matmul_peak_gflops_per_s']['bf16']} GFLOP/s: bf16 speeds up "
                "the matmuls only; the non-matmul work (softmax, GELU, layer norm, the fp32 loss and optimiser) stays",
            )
        )
    if tta:
        best = best_dml(tta)
        if best:
            key, reach = best
            why = (
                f"{key} never reaches SetFit's mean accuracy {reach['setfit_accuracy']:.3f} in {max(tta['steps'])} steps"
                if reach["setfit_over_arm"] is None
                else f"{key} reaches SetFit's mean accuracy {reach['setfit_accuracy']:.3f} at step {reach['step']} "
                f"({reach['train_s']:.1f} s) vs SetFit's {reach['setfit_train_s']:.1f} s"
            )
            label = "SetFit's training time over the best DML arm's to SetFit's accuracy (x; cells where SetFit is sound)"
            rows.append(("setfit_over_dml", label, reach["setfit_over_arm"] or 0.0, why))
    out = []
    for key, label, value, why in rows:
        goal, lower = TARGETS[key]
        met = value <= goal if lower else value >= goal
        out.append(
            {
                "key": key,
                "label": label,
                "goal": f"{'<=' if lower else '>='} {goal:g}",
                "value": value,
                "met": met,
                "why": "" if met else why,
            }
        )
    return out


def best_dml(tta: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The DML arm (any precision) that reaches SetFit's accuracy in the least training time, or the
    fp32 one when none reaches it."""
    dml = {k: v for k, v in tta["summary"]["reach_setfit"].items() if k.split("/")[0] == tta["dml_arm"]}
    reached = {k: v for k, v in dml.items() if v["train_s"] is not None}
    if reached:
        return min(reached.items(), key=lambda kv: kv[1]["train_s"])
    key = f"{tta['dml_arm']}/fp32"
    return (key, dml[key]) if key in dml else None


def render_results(pipe: Mapping[str, Any], speed: Mapping[str, Any] | None, tta: Mapping[str, Any] | None = None) -> str:
    """bench/results.md from pipeline.json (this script), results.json (bench/train_speed.py) and
    time_to_accuracy.json (bench/time_to_accuracy.py)."""
    m = pipe["machine"]
    lines = [
        "# Benchmarks",
        "",
        "Generated by `python bench/pipeline.py --out bench/pipeline.json` (the whole CPU default from an",
        "empty cache in a fresh clone), `python bench/train_speed.py --out bench/results.json` and",
        "`python bench/time_to_accuracy.py --out bench/time_to_accuracy.json`; do not edit by hand.",
        "Absolute times on a shared machine are noisy; ratios are measured side by side.",
        "",
        f"Machine: {m['cpu_count']} CPUs, {m['platform']}, Python {m['python']}; torch {m['torch']}, "
        f"transformers {m['transformers']}, pytorch-metric-learning {m['pytorch-metric-learning']}, "
        f"setfit {m['setfit']}, dvc {m['dvc']}. GPU: not measured (none was lent).",
        "",
        "## Targets",
        "",
        "| target | goal | measured | met | the gap's measured cause |",
        "| --- | --- | --- | --- | --- |",
    ]
    for t in targets(pipe, speed, tta):
        lines.append(f"| {t['label']} | {t['goal']} | {t['value']:g} | {'yes' if t['met'] else '**no**'} | {t['why']} |")
    changed = pipe["changed_tracked_files"]
    lines += [
        "",
        "Tracked files the fresh `dvc repro` changed (its `dvc.lock`, metrics and reports against the "
        f"committed ones): **{', '.join(f'`{f}`' for f in changed) if changed else 'none, byte-identical'}**.",
        "",
        "## Where the wall time goes",
        "",
        f"`dvc repro` of the CPU default, {pipe.get('runs', '?')} runs: **{pipe['total_s']:.0f} s**; overhead "
        f"share {pipe['overhead_share']:.1%}. Seconds per stage kind (each stage process records its phases; "
        "DVC bookkeeping = the total minus every stage process's wall time):",
        "",
        "| stage | n | wall | " + " | ".join(ORDER[:-1]) + " |",
        "| --- | --- | --- | " + " | ".join("---" for _ in ORDER[:-1]) + " |",
    ]
    for kind, cats in pipe["stages"].items():
        lines.append(
            f"| {kind} | {cats['count']} | {cats['wall']:.1f} | " + " | ".join(f"{cats.get(c, 0.0):.1f}" for c in ORDER[:-1]) + " |"
        )
    lines.append(
        "| **all** | | "
        + f"{pipe['total_s']:.0f} | "
        + " | ".join(f"{pipe['overall_s'][c]:.1f}" for c in ORDER[:-1])
        + f" |\n\nDVC bookkeeping: {pipe['overall_s']['DVC bookkeeping']:.1f} s. No-op `dvc repro`: "
        f"{pipe['noop_repro_s']} s (median of 3)."
    )
    if pipe.get("correction"):
        lines += ["", f"Correction: {pipe['correction']}"]
    if pipe.get("notes"):
        lines += ["", "Notes:", ""] + [f"- {note}" for note in pipe["notes"]]
    if speed:
        lines += [
            "",
            "## Training-step choices (`bench/train_speed.py`)",
            "",
            f"MiniLM, batch {speed['batch_size']}, max length {speed['max_length']}, {speed['dataset']} "
            f"sentences ({speed['mean_tokens_per_example']} tokens on average); {speed['machine']}.",
            "",
            "| choice in the trainer | alternative | speed-up |",
            "| --- | --- | --- |",
            f"| batches padded to their longest member (`batching.collate`) | padded to `max_length` | "
            f"{speed['train_step_speedup']}x per forward + backward |",
            f"| evaluation embedded in length-sorted batches (`train.loop.embed`) | input order | {speed['eval_embed_speedup']}x |",
            f"| fused AdamW (`train.loop.build_optimizer`) | PyTorch's per-tensor loop | {speed['adamw_speedup']}x "
            f"per optimiser step ({speed['adamw_step_s']['fused']} s vs {speed['adamw_step_s']['per_tensor']} s) |",
        ]
        ref = speed.get("reference")
        if ref:
            lines += [
                "",
                "Whole training step, ours vs the studies' way (same model, batch and ProxyAnchor loss; "
                "studies: padded to max length, DML over every real token, PyTorch's default AdamW):",
                "",
                "| step | s/step | examples/s | real tokens/s | tokens per batch |",
                "| --- | --- | --- | --- | --- |",
            ]
            for k in ("ours", "studies"):
                lines.append(
                    f"| {k} | {ref['step_s'][k]} | {ref['examples_per_s'][k]} | {ref['real_tokens_per_s'][k]} | {ref['padded_tokens'][k]} |"
                )
            lines += [
                "",
                f"Our step: {ref['our_step_gflop']} GFLOP (torch.utils.flop_counter), "
                f"{ref['our_gflops_per_s']} GFLOP/s = {ref['share_of_peak']:.0%} of the measured float32 "
                f"matmul peak ({ref['matmul_peak_gflops_per_s']} GFLOP/s, same run).",
            ]
        lines += render_precision(speed)
    if tta:
        lines += render_time_to_accuracy(tta)
    return "\n".join(lines) + "\n"


def render_precision(speed: Mapping[str, Any]) -> list[str]:
    """``train.precision``: fp32 vs bf16 autocast, step and evaluation, and the stage's fixed costs."""
    lines = []
    prec = speed.get("precision")
    if prec:
        lines += [
            "",
            "## Precision (`train.precision`)",
            "",
            "Our whole training step (the DML arm's loss) and the evaluation pass, fp32 vs bf16 autocast, interleaved on one "
            "model in one run; FLOP/s against the measured matmul peak of each dtype:",
            "",
            "| precision | s/step | GFLOP/s | matmul peak GFLOP/s | share of peak | evaluation pass (s) |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for k in ("fp32", "bf16"):
            lines.append(
                f"| {k} | {prec['step_s'][k]} | {prec['gflops_per_s'][k]} | {prec['matmul_peak_gflops_per_s'][k]} | "
                f"{prec['share_of_peak'][k]:.0%} | {prec['eval_s'][k]} |"
            )
        lines += ["", f"bf16: {prec['step_speedup']}x per training step, {prec['eval_speedup']}x per evaluation pass."]
    startup = speed.get("startup")
    if startup:
        lines += [
            "",
            f"`train` stage fixed costs (stages/train.py, 1 step, its timing records): imports {startup['imports_s']} s, "
            f"inputs + first model load {startup['first_read_and_load_s']} s, each extra seed {startup['per_extra_seed_s']} s "
            "(the table is read and the model loaded once per stage; each seed trains a deep copy).",
        ]
    return lines


def render_time_to_accuracy(tta: Mapping[str, Any]) -> list[str]:
    """Accuracy against training seconds, every arm beside SetFit (bench/time_to_accuracy.py)."""
    summary = tta["summary"]
    cells = f"{', '.join(tta['datasets'])} x seeds {', '.join(map(str, tta['seeds']))}"
    lines = [
        "",
        "## Time to accuracy (`bench/time_to_accuracy.py`)",
        "",
        f"{tta['model']}, {tta['size']} examples, the pipeline's splits ({cells}); {tta['machine']}. Mean over the "
        f"{len(tta['cells'])} cells of the accuracy on the evaluation set and of the training seconds (checkpoint "
        "evaluations excluded). The classifier arms are one run each of "
        f"{max(tta['steps'])} steps (cosine schedule), classified at each checkpoint; each SetFit row is a whole run "
        "with that many pairs per example (`num_iterations`; 20 is the paper's few-shot recipe).",
        "",
        "| arm | " + " | ".join(f"step {s}" for s in tta["steps"]) + " |",
        "| --- | " + " | ".join("---" for _ in tta["steps"]) + " |",
    ]
    for key, curve in summary["curves"].items():
        lines.append(f"| {key} | " + " | ".join(f"{p['accuracy']:.3f} ({p['train_s']:.1f} s)" for p in curve) + " |")
    lines += ["", "| SetFit num_iterations | steps | training (s) | accuracy |", "| --- | --- | --- | --- |"]
    for row in summary["setfit"]:
        lines.append(f"| {row['num_iterations']} | {row['steps']:g} | {row['train_s']:.1f} | {row['accuracy']:.3f} |")
    sf = summary["setfit_published"]
    bad = sf.get("unsound_cells", [])
    lines += [
        "",
        f"SetFit at its published recipe: mean accuracy {sf['accuracy']:.3f} in {sf['train_s']:.1f} s over all cells; degenerate "
        f"(its head predicting one class) or no better than the majority class in {len(bad)} of {len(tta['cells'])}: "
        f"{', '.join(bad) or 'none'}. The comparison below leaves those cells out, so that no ratio rests on SetFit's collapse.",
        "",
    ]
    for key, reach in summary["reach_setfit"].items():
        where = f"SetFit's mean accuracy on the {reach['cells']} sound cells "
        where += f"({reach['setfit_accuracy']:.3f} in {reach['setfit_train_s']:.1f} s)"
        lines.append(
            f"- {key}: "
            + (
                f"never reaches {where} in {max(tta['steps'])} steps"
                if reach["train_s"] is None
                else f"reaches {where} at step {reach['step']}, {reach['train_s']:.1f} s: SetFit takes "
                f"{'at least ' if reach['at_first_checkpoint'] else ''}{reach['setfit_over_arm']}x as long"
            )
            + f"; cell by cell it reaches SetFit's accuracy in {reach['cells_reached']} of {reach['cells']}"
        )
    ev = summary["bf16_eval"]
    lines += [
        "",
        f"Evaluation in bf16 (every fp32 checkpoint classified again under bf16 autocast): {ev['changed_predictions']} of "
        f"{ev['predictions']} predictions changed ({ev['checkpoints_with_a_changed_prediction']} of {ev['checkpoints']} checkpoints), "
        f"{ev['speedup']}x faster. "
        + (
            "Evaluation stays in fp32 (`train.loop.embed`)."
            if ev["changed_predictions"]
            else "No prediction changed; evaluation still runs in fp32 (`train.loop.embed`)."
        ),
    ]
    if tta.get("notes"):
        lines += ["", "Notes:", ""] + [f"- {note}" for note in tta["notes"]]
    return lines


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, help="measure, then write the JSON here")
    ap.add_argument("--render", type=Path, help="a pipeline JSON to render into --md")
    ap.add_argument("--speed", type=Path, default=ROOT / "bench/results.json", help="train_speed.py's JSON")
    ap.add_argument("--md", type=Path, default=ROOT / "bench/results.md")
    ap.add_argument("--keep", action="store_true", help="keep the clone (for inspection)")
    ap.add_argument("--tta", type=Path, default=ROOT / "bench/time_to_accuracy.json", help="time_to_accuracy.py's JSON")
    ap.add_argument(
        "--collect",
        nargs=3,
        metavar=("CLONE", "TIMING", "TOTAL_S"),
        help="instead of measuring: the report of a `dvc repro` already run from an empty cache in the fresh clone CLONE "
        "with FEWSHOT_DML_TIMING=TIMING, which took TOTAL_S seconds",
    )
    args = ap.parse_args(argv)
    if args.out:
        result = collect(Path(args.collect[0]), Path(args.collect[1]), float(args.collect[2])) if args.collect else measure(args.keep)
        args.out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        print(json.dumps(result["overall_s"], indent=2), f"overhead share {result['overhead_share']}")
    source = args.render or args.out
    if source:
        speed = json.loads(args.speed.read_text()) if args.speed.is_file() else None
        tta = json.loads(args.tta.read_text()) if args.tta.is_file() else None
        args.md.write_text(render_results(json.loads(Path(source).read_text()), speed, tta), encoding="utf-8")


if __name__ == "__main__":
    main()
