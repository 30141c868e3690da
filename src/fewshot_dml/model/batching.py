"""Training batches: the ``random`` and class-``balanced`` samplers, tokenisation and collation.

Samplers return row positions into the few-shot training set (``0..n-1``), drawn from one
``torch.Generator`` so that a seed fixes every batch of a run, and both arms of a seed see the
same batches.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import BatchSampler, RandomSampler

from fewshot_dml.config.sections import SAMPLERS


def random_batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[list[int]]:
    """Endless shuffled epochs (torch's ``RandomSampler``), ``batch_size`` at a time, last batch kept."""
    sampler = BatchSampler(RandomSampler(range(n), generator=generator), min(batch_size, n), drop_last=False)
    while True:
        yield from sampler


class _Cycler:
    """Draw items of a finite set in rounds of seeded permutations, each item once per round.

    ``take(k)`` returns ``k`` items, all distinct when ``k <= len(items)``: items already taken for
    the current request are moved behind the rest of a fresh round (so no item is skipped).
    """

    def __init__(self, items: Sequence[int], generator: torch.Generator) -> None:
        self.items = list(items)
        self.generator = generator
        self.queue: list[int] = []

    def take(self, k: int) -> list[int]:
        out: list[int] = []
        while len(out) < k:
            if not self.queue:
                order = torch.randperm(len(self.items), generator=self.generator).tolist()
                fresh = [self.items[i] for i in order]
                taken = set(out)
                self.queue = [x for x in fresh if x not in taken] + [x for x in fresh if x in taken]
            out.append(self.queue.pop(0))
        return out


def balanced_batches(labels: Sequence[int], batch_size: int, generator: torch.Generator) -> Iterator[list[int]]:
    """Endless class-balanced batches: every class in a batch has at least 2 of its slots.

    Written by hand because PML's ``MPerClassSampler`` needs ``batch_size % m == 0`` and
    ``m * num_classes >= batch_size``, which few-shot sets break (6 TREC classes and batch 16; a
    class with a single example). Here a batch of ``B = max(2, min(batch_size, n))`` holds
    ``k = min(classes, B // 2)`` classes (cycled through in seeded rounds) with ``B // k`` or
    ``B // k + 1`` slots each; a class's slots cycle through its examples, repeating them only when
    it has fewer examples than slots (a single example appears twice: dropout makes the two
    encodings differ, as in SimCSE).
    """
    labels = np.asarray(labels, dtype=np.int64)
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError(f"balanced sampler: labels of shape {labels.shape}; expected a non-empty 1-d array")
    classes = np.unique(labels).tolist()
    members = {c: _Cycler(np.flatnonzero(labels == c).tolist(), generator) for c in classes}
    class_cycle = _Cycler(classes, generator)
    size = max(2, min(batch_size, labels.size))
    k = min(len(classes), size // 2)
    while True:
        chosen = class_cycle.take(k)
        base, extra = divmod(size, k)
        batch: list[int] = []
        for i, c in enumerate(chosen):
            batch += members[c].take(base + (1 if i < extra else 0))
        yield batch


def make_batches(sampler: str, labels: Sequence[int], batch_size: int, generator: torch.Generator) -> Iterator[list[int]]:
    """The endless batch stream of ``train.sampler``."""
    if sampler == "random":
        return random_batches(len(labels), batch_size, generator)
    if sampler == "balanced":
        return balanced_batches(labels, batch_size, generator)
    raise ValueError(f"train.sampler={sampler!r}; expected one of {list(SAMPLERS)}")


def is_pair_table(table: pd.DataFrame) -> bool:
    """A table with any non-empty ``text_pair`` (MRPC) is encoded as sentence pairs."""
    return bool((table["text_pair"] != "").any())


def tokenize(tokenizer: Any, table: pd.DataFrame, rows: Sequence[int], max_length: int, pair: bool) -> list[dict[str, list[int]]]:
    """Unpadded encodings of ``rows`` (sentence pairs when ``pair``), truncated to ``max_length``."""
    sub = table.iloc[list(rows)]
    texts = sub["text"].tolist()
    pairs = sub["text_pair"].tolist() if pair else None
    enc = tokenizer(texts, pairs, truncation=True, max_length=max_length)
    keys = list(enc.keys())
    return [{key: enc[key][i] for key in keys} for i in range(len(texts))]


def collate(tokenizer: Any, features: Sequence[dict[str, list[int]]], device: torch.device) -> dict[str, torch.Tensor]:
    """Pad ``features`` to their longest member and move the tensors to ``device``."""
    batch = tokenizer.pad(list(features), padding=True, return_tensors="pt")
    return {key: value.to(device) for key, value in batch.items()}
