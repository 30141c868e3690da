"""Benchmark: the trainer's speed choices, each measured side by side with its alternative.

1. Training steps on batches padded to their longest member (what `collate` does) vs padded to
   `train.max_length` (what a fixed-shape pipeline would do).
2. Embedding the evaluation set in length-sorted batches (what `embed` does) vs in input order.
3. The AdamW step: the fused kernel (what `build_optimizer` uses) vs PyTorch's per-tensor loop.

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

from fewshot_dml.batching import collate, is_pair_table, tokenize
from fewshot_dml.data.table import read_table
from fewshot_dml.device import cpu_threads
from fewshot_dml.io import write_json
from fewshot_dml.models import load_classifier
from fewshot_dml.params import load_params
from fewshot_dml.training import embed


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
                model(collate(tokenizer, features[i:i + batch_size], torch.device("cpu")))
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
    evals = tokenize(tokenizer, table, rows[train.batch_size: train.batch_size + args.eval_size], train.max_length, pair)
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
        "model": train.model, "dataset": args.dataset, "batch_size": train.batch_size, "max_length": train.max_length,
        "mean_tokens_per_example": round(float(np.mean([len(f["input_ids"]) for f in few + evals])), 1),
        "train_step_s": {"dynamic_padding": round(med(dynamic), 4), "pad_to_max_length": round(med(fixed), 4)},
        "train_step_speedup": round(med(fixed) / med(dynamic), 2),
        "eval_embed_s": {"length_sorted": round(med(sorted_eval), 4), "input_order": round(med(plain_eval), 4)},
        "eval_embed_speedup": round(med(plain_eval) / med(sorted_eval), 2),
        "adamw_step_s": {"fused": round(med(fused), 4), "per_tensor": round(med(looped), 4)},
        "adamw_speedup": round(med(looped) / med(fused), 2),
    }
    write_json(args.out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
