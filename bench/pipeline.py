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
        env = {
            **os.environ,
            "FEWSHOT_DML_TIMING": str(timing),
            "FEWSHOT_DML_LOG": "WARNING",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        dvc = [sys.executable, "-m", "dvc"]
        total = _run([*dvc, "repro", "--quiet"], repo, env)
        # The records of this repro only (the no-op repros below run the always-changed check again).
        records = [json.loads(line) for line in timing.read_text().splitlines() if line.strip()]
        noop = [_run([*dvc, "repro", "--quiet"], repo, env) for _ in range(3)]
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
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if keep:
            print(f"kept the clone: {repo}")
        else:
            shutil.rmtree(repo, ignore_errors=True)


def _machine() -> dict[str, Any]:
    import importlib.metadata as md

    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        **{name: md.version(name) for name in ("torch", "transformers", "pytorch-metric-learning", "dvc", "setfit")},
    }


TARGETS = {  # the performance issue's targets: (goal, lower is better)
    "study_s": (600.0, True),
    "overhead_share": (0.25, True),
    "infer_s_per_run": (0.5, True),
    "train_startup_s": (2.5, True),
    "noop_repro_s": (3.0, True),
    "step_speedup": (3.0, False),
    "share_of_peak": (0.40, False),
}


def targets(pipe: Mapping[str, Any], speed: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Each target with its measured value, whether it is met, and the gap's measured cause."""
    train, infer = pipe["stages"].get("train", {}), pipe["stages"].get("infer", {})
    runs = max(1, pipe.get("runs", 1))
    overall = pipe["overall_s"]
    compute = sum(overall[c] for c in COMPUTE)
    ref = (speed or {}).get("reference")
    startup = (train.get("imports", 0) + train.get("model load", 0)) / max(1, train.get("count", 1))
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
        (
            "train_startup_s",
            "`train` stage start-up: imports + model loads, per stage (s)",
            round(startup, 2),
            f"imports {train.get('imports', 0) / max(1, train.get('count', 1)):.1f} s (torch alone takes ~2.5 s) + "
            f"one model load per seed, {train.get('model load', 0) / max(1, train.get('count', 1)):.1f} s (the first "
            f"imports transformers' model code); per run: {startup * train.get('count', 1) / runs:.2f} s",
        ),
        (
            "noop_repro_s",
            "no-op `dvc repro` (s)",
            pipe["noop_repro_s"],
            "DVC itself: it re-parses params.yaml with a pure-Python YAML parser once per stage and rewrites "
            "dvc.lock after the always-run check (cProfile of `dvc repro`)",
        ),
    ]
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
            (
                "share_of_peak",
                "our step's FLOP/s, share of the measured matmul peak",
                ref["share_of_peak"],
                f"{ref['our_gflops_per_s']} of {ref['matmul_peak_gflops_per_s']} GFLOP/s; the rest goes to "
                "non-matmul work (attention softmax, GELU, layer norm, the optimiser) and 384-wide matrices",
            ),
        ]
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


def render_results(pipe: Mapping[str, Any], speed: Mapping[str, Any] | None) -> str:
    """bench/results.md from pipeline.json (this script) and results.json (bench/train_speed.py)."""
    m = pipe["machine"]
    lines = [
        "# Benchmarks",
        "",
        "Generated by `python bench/pipeline.py --out bench/pipeline.json` (the whole CPU default from an",
        "empty cache in a fresh clone) and `python bench/train_speed.py --out bench/results.json`; do not",
        "edit by hand. Absolute times on a shared machine are noisy; ratios are measured side by side.",
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
    for t in targets(pipe, speed):
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
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, help="measure, then write the JSON here")
    ap.add_argument("--render", type=Path, help="a pipeline JSON to render into --md")
    ap.add_argument("--speed", type=Path, default=ROOT / "bench/results.json", help="train_speed.py's JSON")
    ap.add_argument("--md", type=Path, default=ROOT / "bench/results.md")
    ap.add_argument("--keep", action="store_true", help="keep the clone (for inspection)")
    args = ap.parse_args(argv)
    if args.out:
        result = measure(args.keep)
        args.out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        print(json.dumps(result["overall_s"], indent=2), f"overhead share {result['overhead_share']}")
    source = args.render or args.out
    if source:
        speed = json.loads(args.speed.read_text()) if args.speed.is_file() else None
        args.md.write_text(render_results(json.loads(Path(source).read_text()), speed), encoding="utf-8")


if __name__ == "__main__":
    main()
