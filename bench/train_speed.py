"""Benchmark: the trainer's speed choices, each measured side by side with its alternative.

1. Training steps on batches padded to their longest member (what `collate` does) vs padded to
   `train.max_length` (what a fixed-shape pipeline would do).
2. Embedding the evaluation set in length-sorted batches (what `embed` does) vs in input order.
3. The AdamW step: the fused kernel (what `build_optimizer` uses) vs PyTorch's per-tensor loop.
4. Our whole training step (CCE + ProxyAnchor on the pooled embedding, dynamic padding, fused
   AdamW) vs a step written the studies' way on the same model, batch and loss (padded to
   `max_length`, the DML loss over every real token, PyTorch's default AdamW, as under HF Trainer):
   examples/s and real tokens/s; and our step's achieved FLOP/s (counted by
   torch.utils.flop_counter) against this machine's measured matmul peak, in the same run.
5. ``train.precision``: our whole step and the evaluation pass in fp32 vs under bf16 autocast,
   interleaved on one model, each against the matmul peak of its own dtype.
6. A `train` stage's fixed costs from its own timing records: start-up (imports, inputs, the first
   model load) and the cost of each extra seed (stages/train.py with 1 and with 5 seeds, 1 step each).

Usage (after `dvc repro fetch`, from the repository root):
    python bench/train_speed.py --dataset mr --out bench/results.json
Both variants run in the same process, interleaved, on the same sentences; the ratios are what
to read (absolute times on a shared machine are noisy).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from fewshot_dml.config.params import load_params
from fewshot_dml.core.io import write_json
from fewshot_dml.data.table import read_table
from fewshot_dml.model.batching import collate, is_pair_table, make_batches, tokenize
from fewshot_dml.model.classifier import load_classifier
from fewshot_dml.model.device import FP32, Precision, cpu_threads
from fewshot_dml.train.loop import build_optimizer, embed
from fewshot_dml.train.objective import build_objective


def train_step_seconds(model, tokenizer, features, pad_to: int | None, repeats: int) -> list[float]:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    times = []
    for _ in range(repeats):
        if pad_to is None:
            batch = collate(tokenizer, features, torch.device("cpu"))
        else:
            batch = dict(tokenizer.pad(list(features), padding="max_length", max_length=pad_to, return_tensors="pt"))
        start = time.perf_counter()
        logits, _ = model(batch)
        logits.sum().backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - start)
    return times


def embed_seconds(model, tokenizer, features, batch_size: int, sort: bool) -> float:
    """Seconds to embed ``features``: via ``embed`` (length-sorted) or in their (random) input order."""
    start = time.perf_counter()
    if sort:
        embed(model, tokenizer, features, batch_size, torch.device("cpu"))
    else:
        model.eval()
        with torch.no_grad():
            for i in range(0, len(features), batch_size):
                model(collate(tokenizer, features[i : i + batch_size], torch.device("cpu")))
    return time.perf_counter() - start


def adamw_step_seconds(model, fused: bool, repeats: int) -> list[float]:
    """Seconds per AdamW step over every parameter of ``model`` (random gradients)."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=fused, foreach=False if not fused else None)
    for param in model.parameters():
        param.grad = torch.randn_like(param)
    opt.step()  # allocate the state outside the timing
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        opt.step()
        times.append(time.perf_counter() - start)
    for param in model.parameters():
        param.grad = None
    return times


def matmul_peak_flops(repeats: int = 10, dtype: torch.dtype = torch.float32) -> float:
    """The best FLOP/s of a ``dtype`` matmul over a few shapes (square and the encoder's own)."""
    best = 0.0
    for m, k, n in ((2048, 2048, 2048), (1024, 384, 1536), (1024, 1536, 384)):
        a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
        a @ b
        for _ in range(repeats):
            start = time.perf_counter()
            a @ b
            best = max(best, 2 * m * k * n / (time.perf_counter() - start))
    return best


def full_step(model, objective, optimizer, batch, labels, max_grad_norm: float, precision: Precision = FP32) -> None:
    """One optimisation step as train.loop.fit takes it (forward under autocast, objective, backward, clip, step)."""
    with precision.autocast(torch.device("cpu")):
        logits, pooled, states = model.forward_features(batch, objective.hidden_layer)
        out = objective(logits.float(), pooled.float(), labels, states, model.encode_from)
    optimizer.zero_grad(set_to_none=True)
    out.total.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()


def reference_comparison(train, loss, num_classes: int, few, labels, repeats: int) -> dict:
    """Our step vs the studies-style step (see the module docstring), interleaved; FLOP/s vs peak."""
    from dataclasses import replace

    from torch.utils.flop_counter import FlopCounterMode

    arms = {}
    for name, dml_on in (("ours", "pooled"), ("studies", "tokens")):
        torch.manual_seed(0)
        model, tokenizer = load_classifier(train, num_classes)
        objective = build_objective(replace(loss, dml_on=dml_on), num_classes, model.embedding_size)
        model.train()
        if name == "ours":
            optimizer = build_optimizer(model, objective, train, loss)
            batch = collate(tokenizer, few, torch.device("cpu"))
        else:  # PyTorch's default AdamW (a per-tensor loop on CPU), padding to max_length
            params = list(model.parameters()) + objective.proxy_parameters()
            optimizer = torch.optim.AdamW(params, lr=train.lr, eps=train.adam_eps)
            batch = dict(tokenizer.pad(list(few), padding="max_length", max_length=train.max_length, return_tensors="pt"))
        arms[name] = (model, objective, optimizer, batch)
    y = torch.as_tensor(labels, dtype=torch.int64)
    times: dict[str, list[float]] = {"ours": [], "studies": []}
    for _name, (model, objective, optimizer, batch) in arms.items():  # warm-up
        full_step(model, objective, optimizer, batch, y, train.max_grad_norm)
    for _ in range(repeats):
        for name, (model, objective, optimizer, batch) in arms.items():
            start = time.perf_counter()
            full_step(model, objective, optimizer, batch, y, train.max_grad_norm)
            times[name].append(time.perf_counter() - start)
    model, objective, optimizer, batch = arms["ours"]
    with FlopCounterMode(display=False) as counter:
        full_step(model, objective, optimizer, batch, y, train.max_grad_norm)
    peak = matmul_peak_flops()
    med = {k: statistics.median(v) for k, v in times.items()}
    real_tokens = int(sum(len(f["input_ids"]) for f in few))
    flops = counter.get_total_flops()
    return {
        "step_s": {k: round(v, 4) for k, v in med.items()},
        "examples_per_s": {k: round(len(few) / v, 1) for k, v in med.items()},
        "real_tokens_per_s": {k: round(real_tokens / v, 1) for k, v in med.items()},
        "padded_tokens": {
            "ours": int(arms["ours"][3]["input_ids"].numel()),
            "studies": int(arms["studies"][3]["input_ids"].numel()),
            "real": real_tokens,
        },
        "speedup": round(med["studies"] / med["ours"], 2),
        "our_step_gflop": round(flops / 1e9, 2),
        "our_gflops_per_s": round(flops / med["ours"] / 1e9, 1),
        "matmul_peak_gflops_per_s": round(peak / 1e9, 1),
        "share_of_peak": round(flops / med["ours"] / peak, 3),
    }


def precision_comparison(train, loss, num_classes: int, few, labels, evals, repeats: int) -> dict:
    """fp32 vs bf16 autocast (``train.precision``): our whole step and the evaluation pass, interleaved on
    one model; each step's FLOP/s against the measured matmul peak of its own dtype."""
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    model, tokenizer = load_classifier(train, num_classes)
    objective = build_objective(loss, num_classes, model.embedding_size)
    optimizer = build_optimizer(model, objective, train, loss)
    batch = collate(tokenizer, few, torch.device("cpu"))
    y = torch.as_tensor(labels, dtype=torch.int64)
    modes = {"fp32": FP32, "bf16": Precision(torch.bfloat16)}
    steps: dict[str, list[float]] = {k: [] for k in modes}
    evals_s: dict[str, list[float]] = {k: [] for k in modes}
    for mode in modes.values():  # warm-up
        model.train()
        full_step(model, objective, optimizer, batch, y, train.max_grad_norm, mode)
    for _ in range(3):  # interleaved, so drift on the machine hits both alike
        for name, mode in modes.items():
            model.train()
            for _ in range(repeats):
                start = time.perf_counter()
                full_step(model, objective, optimizer, batch, y, train.max_grad_norm, mode)
                steps[name].append(time.perf_counter() - start)
            start = time.perf_counter()
            embed(model, tokenizer, evals, train.eval_batch_size, torch.device("cpu"), precision=mode)
            evals_s[name].append(time.perf_counter() - start)
    model.train()
    with FlopCounterMode(display=False) as counter:
        full_step(model, objective, optimizer, batch, y, train.max_grad_norm)
    flops = counter.get_total_flops()
    med = {k: statistics.median(v) for k, v in steps.items()}
    peak = {"fp32": matmul_peak_flops(), "bf16": matmul_peak_flops(dtype=torch.bfloat16)}
    return {
        "step_s": {k: round(v, 4) for k, v in med.items()},
        "step_speedup": round(med["fp32"] / med["bf16"], 2),
        "eval_s": {k: round(statistics.median(v), 4) for k, v in evals_s.items()},
        "eval_speedup": round(statistics.median(evals_s["fp32"]) / statistics.median(evals_s["bf16"]), 2),
        "step_gflop": round(flops / 1e9, 2),
        "gflops_per_s": {k: round(flops / v / 1e9, 1) for k, v in med.items()},
        "matmul_peak_gflops_per_s": {k: round(v / 1e9, 1) for k, v in peak.items()},
        "share_of_peak": {k: round(flops / med[k] / peak[k], 3) for k in modes},
    }


def stage_startup(dataset: str, params_path: Path, seeds: int = 5) -> dict:
    """A `train` stage's fixed costs, from its own timing records: one process with one seed and one with
    ``seeds`` seeds, 1 step each (stages/train.py on the pipeline's table and splits, after `dvc repro`).

    Start-up = imports + reading the inputs + the first model load; per extra seed = the growth of
    reading + loading (a deep copy of the loaded model, its head, the loss module) per added seed."""
    import os
    import subprocess
    import sys
    import tempfile

    import yaml

    raw = yaml.safe_load(params_path.read_text())
    records = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in (1, seeds):
            raw.update(seeds=list(range(n)))
            raw["train"].update(steps=1, warmup_steps=0, save_weights=False)
            params, timing = Path(tmp) / f"params-{n}.yaml", Path(tmp) / f"timing-{n}.jsonl"
            params.write_text(yaml.safe_dump(raw))
            cmd = [sys.executable, "stages/train.py", "--arm", "cce", "--table", f"data/raw/{dataset}.jsonl"]
            cmd += ["--card", f"data/raw/{dataset}.card.json", "--splits", f"data/splits/{dataset}-16", "--out", f"{tmp}/runs-{n}"]
            env = dict(os.environ, FEWSHOT_DML_TIMING=str(timing), FEWSHOT_DML_LOG="WARNING")
            subprocess.run([*cmd, "--params", str(params)], check=True, env=env)
            records[n] = json.loads(timing.read_text())
    fixed = {n: r["phases"].get("read", 0.0) + r["phases"].get("load", 0.0) for n, r in records.items()}
    return {
        "imports_s": records[1]["imports_s"],
        "first_read_and_load_s": round(fixed[1], 3),
        "startup_s": round(records[1]["imports_s"] + fixed[1], 3),
        "per_extra_seed_s": round((fixed[seeds] - fixed[1]) / (seeds - 1), 3),
        "records": records,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="mr")
    ap.add_argument("--table", type=Path, default=None)
    ap.add_argument("--repeats", type=int, default=8)
    ap.add_argument("--eval-size", type=int, default=200)
    ap.add_argument("--out", type=Path, default=Path("bench/results.json"))
    args = ap.parse_args(argv)
    params = load_params("params.yaml")
    train = params.train
    torch.manual_seed(0)
    torch.set_num_threads(cpu_threads(train.threads))
    table = read_table(args.table or Path(f"data/raw/{args.dataset}.jsonl"))
    rows = np.random.default_rng(0).permutation(len(table))
    model, tokenizer = load_classifier(train, int(table["label"].max()) + 1)
    pair = is_pair_table(table)
    few = tokenize(tokenizer, table, rows[: train.batch_size], train.max_length, pair)
    evals = tokenize(tokenizer, table, rows[train.batch_size : train.batch_size + args.eval_size], train.max_length, pair)
    model.train()
    train_step_seconds(model, tokenizer, few, None, 2)  # warm-up
    dynamic, fixed, sorted_eval, plain_eval, fused, looped = [], [], [], [], [], []
    for _ in range(3):  # interleave the variants so drift on the machine hits both alike
        model.train()
        dynamic += train_step_seconds(model, tokenizer, few, None, args.repeats)
        fixed += train_step_seconds(model, tokenizer, few, train.max_length, args.repeats)
        sorted_eval.append(embed_seconds(model, tokenizer, evals, train.eval_batch_size, sort=True))
        plain_eval.append(embed_seconds(model, tokenizer, evals, train.eval_batch_size, sort=False))
        fused += adamw_step_seconds(model, True, args.repeats)
        looped += adamw_step_seconds(model, False, args.repeats)
    med = statistics.median
    result = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}",
        "model": train.model,
        "dataset": args.dataset,
        "batch_size": train.batch_size,
        "max_length": train.max_length,
        "mean_tokens_per_example": round(float(np.mean([len(f["input_ids"]) for f in few + evals])), 1),
        "train_step_s": {"dynamic_padding": round(med(dynamic), 4), "pad_to_max_length": round(med(fixed), 4)},
        "train_step_speedup": round(med(fixed) / med(dynamic), 2),
        "eval_embed_s": {"length_sorted": round(med(sorted_eval), 4), "input_order": round(med(plain_eval), 4)},
        "eval_embed_speedup": round(med(plain_eval) / med(sorted_eval), 2),
        "adamw_step_s": {"fused": round(med(fused), 4), "per_tensor": round(med(looped), 4)},
        "adamw_speedup": round(med(looped) / med(fused), 2),
    }
    labels = table["label"].to_numpy(np.int64)
    batch_rows = next(make_batches(train.sampler, labels[rows[:64]].tolist(), train.batch_size, torch.Generator().manual_seed(0)))
    chosen = [int(rows[i]) for i in batch_rows]
    result["reference"] = reference_comparison(
        train,
        params.losses["proxyanchor"],
        int(labels.max()) + 1,
        tokenize(tokenizer, table, chosen, train.max_length, pair),
        labels[chosen],
        args.repeats,
    )
    result["precision"] = precision_comparison(
        train,
        params.losses[params.loss],
        int(labels.max()) + 1,
        tokenize(tokenizer, table, chosen, train.max_length, pair),
        labels[chosen],
        evals,
        args.repeats,
    )
    result["startup"] = stage_startup(args.dataset, Path("params.yaml"))
    write_json(args.out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
