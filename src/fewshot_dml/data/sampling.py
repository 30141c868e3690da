"""Few-shot splits as pure functions of (labels, protocol, size, seed, folds, eval_max, dev_ratio).

Two protocols:

* ``kfold`` -- the DML few-shot studies' protocol (TripleEntropy, ``train_cross_validation.py``):
  shuffle the rows, cut them into ``folds`` folds, hold one fold out for evaluation and draw ``size``
  training examples from the other folds. The studies ran every fold of one seed; here the seed
  picks the held-out fold (``seed % folds``) so that each (size, seed) cell is one run. The draw is
  uniform, NOT stratified, as in the studies: a small draw may miss a class.
* ``per_class`` -- SetFit's protocol (``setfit.sample_dataset``): ``size`` examples of every class
  from a shuffled pool; every remaining row is the evaluation set.

A development set (``dev_ratio`` x the training set, LM-BFF's choice of 1; Gao et al. 2021,
arXiv:2012.15723) is drawn from the rows that are neither training nor evaluation rows: ``kfold``
draws it uniformly from the training folds, ``per_class`` takes ``dev_ratio x size`` more rows of
every class. Tuning reads it; nothing reads the evaluation set before the final report.

Randomness comes only from ``numpy.random.SeedSequence(seed)``, spawned into independent streams
for the partition, the training draw, the evaluation cap and the development draw (the fourth
stream is new: adding it left the first three, and so every earlier split, unchanged). Consequences (tested): the ``kfold``
evaluation set does not depend on ``size``, and for one seed a smaller training set is a prefix
of a larger one, so results across sizes are paired.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fewshot_dml.config.sections import PROTOCOLS, SampleParams
from fewshot_dml.core import io, layout
from fewshot_dml.data.table import read_card_and_table

log = logging.getLogger(__name__)

SPLIT_KEYS = (
    "dataset",
    "size",
    "seed",
    "protocol",
    "folds",
    "eval_fold",
    "eval_max",
    "dev_ratio",
    "n_examples",
    "table_sha256",
    "train",
    "dev",
    "eval",
)


@dataclass(frozen=True)
class Split:
    """Row indices of the training set (draw order), the development and evaluation sets (ascending)."""

    train: tuple[int, ...]
    eval: tuple[int, ...]
    eval_fold: int | None
    dev: tuple[int, ...] = ()


def make_split(labels: np.ndarray, protocol: str, size: int, seed: int, folds: int, eval_max: int, dev_ratio: float = 0.0) -> Split:
    """Draw the split of one (size, seed) cell; see the module docstring for the protocols."""
    labels = _check_args(labels, protocol, size, seed, folds, eval_max)
    if isinstance(dev_ratio, bool) or not isinstance(dev_ratio, (int, float)) or not 0 <= dev_ratio <= 100:
        raise ValueError(f"dev_ratio={dev_ratio!r} is invalid; expected a number in [0, 100]")
    dev_n = int(round(dev_ratio * size))
    streams = np.random.SeedSequence(seed).spawn(4)
    partition_rng, train_rng, cap_rng, dev_rng = (np.random.default_rng(s) for s in streams)
    order = partition_rng.permutation(labels.size)
    if protocol == "kfold":
        if folds > labels.size:
            raise ValueError(f"folds={folds} exceeds the {labels.size} examples; expected folds <= n_examples")
        # np.array_split gives sklearn.KFold's fold sizes: the first n % folds folds get one extra row.
        parts = np.array_split(order, folds)
        eval_fold = int(seed % folds)
        held_out = parts[eval_fold]
        pool = np.concatenate([p for i, p in enumerate(parts) if i != eval_fold])
        if size > pool.size:
            raise ValueError(
                f"size={size} exceeds the {pool.size} examples outside the held-out fold "
                f"({labels.size} examples, folds={folds}); expected size <= {pool.size}"
            )
        # A prefix of a permutation is a uniform draw without replacement, nested across sizes.
        train = train_rng.permutation(pool)[:size]
        rest = np.setdiff1d(pool, train)
        if dev_n > rest.size:
            raise ValueError(
                f"dev_ratio={dev_ratio} asks for {dev_n} development rows but only {rest.size} "
                f"training-fold rows are left after size={size}; expected a smaller dev_ratio"
            )
        dev = dev_rng.permutation(rest)[:dev_n]
    else:
        eval_fold = None
        train = _per_class(labels, order, size + dev_n)
        # The first `size` of each class train; the next dev_n of each class are the development set.
        ranks = _rank_within_class(labels[train])
        train, dev = train[ranks < size], train[ranks >= size]
        held_out = np.setdiff1d(np.arange(labels.size), np.concatenate([train, dev]))
        if held_out.size == 0:
            raise ValueError(f"per_class size={size} (+ {dev_n} dev) uses all {labels.size} examples; nothing is left to evaluate on")
    evaluation = _cap_eval(held_out, labels, eval_max, cap_rng)
    return Split(
        train=tuple(int(i) for i in train),
        eval=tuple(int(i) for i in np.sort(evaluation)),
        eval_fold=eval_fold,
        dev=tuple(int(i) for i in np.sort(dev)),
    )


def _check_args(labels: Any, protocol: Any, size: Any, seed: Any, folds: Any, eval_max: Any) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels: got shape {labels.shape} dtype {labels.dtype}; expected a non-empty 1-D integer array")
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol={protocol!r} is unknown; expected one of {list(PROTOCOLS)}")
    for name, value, low in (("size", size, 1), ("seed", seed, 0), ("folds", folds, 2), ("eval_max", eval_max, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name}={value!r} is invalid; expected an integer >= {low}")
    return labels


def _per_class(labels: np.ndarray, order: np.ndarray, size: int) -> np.ndarray:
    """The first ``size`` rows of each class in ``order`` (SetFit: shuffle, then take per class)."""
    classes, counts = np.unique(labels, return_counts=True)
    short = counts < size
    if short.any():
        c, n = int(classes[short][0]), int(counts[short][0])
        raise ValueError(f"per_class: class {c} has {n} examples, fewer than size={size}; expected every class to have >= {size}")
    return order[_rank_within_class(labels[order]) < size]


def _rank_within_class(seq: np.ndarray) -> np.ndarray:
    """Position of each element among the earlier elements of the same value (0 for the first)."""
    by_class = np.argsort(seq, kind="stable")
    sorted_seq = seq[by_class]
    starts = np.flatnonzero(np.r_[True, sorted_seq[1:] != sorted_seq[:-1]])
    run_start = np.repeat(starts, np.diff(np.r_[starts, seq.size]))
    rank = np.empty(seq.size, dtype=np.int64)
    rank[by_class] = np.arange(seq.size) - run_start
    return rank


def _cap_eval(held_out: np.ndarray, labels: np.ndarray, eval_max: int, rng: np.random.Generator) -> np.ndarray:
    """At most ``eval_max`` rows of ``held_out``, stratified by class (0 = keep all)."""
    if eval_max == 0 or held_out.size <= eval_max:
        return held_out
    held_out = np.sort(held_out)  # the draw must not depend on the order the caller built it in
    shuffled = rng.permutation(held_out)
    classes, inverse = np.unique(labels[shuffled], return_inverse=True)
    quotas = stratified_quotas(np.bincount(inverse, minlength=classes.size), eval_max)
    return shuffled[_rank_within_class(inverse) < quotas[inverse]]


def stratified_quotas(counts: np.ndarray, total: int) -> np.ndarray:
    """Split ``total`` over classes in proportion to ``counts`` (largest-remainder rounding).

    Written by hand: numpy/scipy have no apportionment. Integer arithmetic keeps it exact. When
    ``total >= len(counts)`` every class gets at least one: classes whose exact share is below one
    get one and the rest is re-apportioned over the others; that minimum takes precedence over
    the otherwise guaranteed ``|quota - exact share| < 1``. Ties go to the lower class index.
    """
    counts = np.asarray(counts, dtype=np.int64)
    if total < 0 or total > counts.sum():
        raise ValueError(f"total={total} is out of range; expected 0 <= total <= {int(counts.sum())}")
    quotas = np.zeros(counts.size, dtype=np.int64)
    active = counts > 0
    budget = total
    if total >= np.count_nonzero(active):
        while True:
            small = active & (budget * counts < counts[active].sum())
            if not small.any():
                break
            quotas[small] = 1
            budget -= int(np.count_nonzero(small))
            active &= ~small
    if budget == 0:
        return quotas
    denom = int(counts[active].sum())
    share = np.where(active, budget * counts, 0)
    quotas[active] = share[active] // denom
    remainder = np.where(active, share % denom, -1)
    extra = budget - int(quotas[active].sum())
    quotas[np.argsort(-remainder, kind="stable")[:extra]] += 1
    return quotas


def write_splits(
    table_path: Path, card_path: Path, params: SampleParams, dataset: str, size: int, seeds: Sequence[int], out_dir: Path
) -> dict[int, dict]:
    """Draw the split of (dataset, size, seed) for every seed; write ``out_dir/<seed>.json`` atomically.

    One process for every seed of a (dataset, size): drawing a split takes milliseconds, so one
    stage per seed would cost more in start-up and DVC bookkeeping than in work (bench/results.md).
    """
    card, table = read_card_and_table(card_path, table_path, ("dataset", "n_examples"))
    labels = table["label"].to_numpy(np.int64)
    for key, expected in (("dataset", dataset), ("n_examples", labels.size)):
        if card[key] != expected:
            raise ValueError(f"{card_path}: {key}={card[key]!r} but expected {expected!r} (table {table_path})")
    check_class_sizes(labels, card.get("label_names"), params, size, f"{dataset} ({card.get('location', table_path)})")
    records = {}
    for seed in seeds:
        split = make_split(labels, params.protocol, size, seed, params.folds, params.eval_max, params.dev_ratio)
        records[int(seed)] = {
            "dataset": dataset,
            "size": int(size),
            "seed": int(seed),
            "protocol": params.protocol,
            "folds": params.folds,
            "eval_fold": split.eval_fold,
            "eval_max": params.eval_max,
            "dev_ratio": params.dev_ratio,
            "n_examples": int(labels.size),
            "table_sha256": card["table_sha256"],
            "train": list(split.train),
            "dev": list(split.dev),
            "eval": list(split.eval),
        }
        log.info(
            "%s size=%d seed=%d (%s): %d train, %d dev, %d eval of %d rows",
            dataset,
            size,
            seed,
            params.protocol,
            len(split.train),
            len(split.dev),
            len(split.eval),
            labels.size,
        )
    with io.atomic_dir(out_dir) as tmp:
        for seed, record in records.items():
            io.write_json(tmp / layout.split_file(seed), record)
    return records


def class_minimum(params: SampleParams, size: int) -> int:
    """The fewest examples a class needs: one to learn from and one to evaluate on (kfold); with
    per_class, ``size`` training and ``dev_ratio * size`` development examples, and one to evaluate on."""
    if params.protocol == "per_class":
        return size + int(round(params.dev_ratio * size)) + 1
    return 2


def check_class_sizes(labels: np.ndarray, names: Sequence[str] | None, params: SampleParams, size: int, where: str) -> None:
    """ValueError naming the first class of ``labels`` too small for ``params`` at ``size``."""
    need = class_minimum(params, size)
    counts = np.bincount(labels, minlength=len(names or ()))
    for c in np.flatnonzero(counts < need):
        name = names[c] if names is not None and c < len(names) else str(c)
        if counts[c] == 0 and names is None:
            continue  # an id no example uses: not a class of this table
        rule = (
            f"sample.protocol=per_class, size {size} and dev_ratio {params.dev_ratio} need {need} per class "
            "(training, development, and one to evaluate on)"
            if params.protocol == "per_class"
            else "every class needs 2 (one to learn from, one to evaluate on)"
        )
        raise ValueError(
            f"{where}: class {name!r} has {int(counts[c])} example(s); {rule}; expected a larger "
            "class, a smaller size, or the class merged or dropped"
        )


def check_split(split: dict, dataset: str, n_examples: int, table_sha256: str) -> None:
    """Raise ValueError unless ``split`` is a well-formed split of this dataset's table."""
    missing = [k for k in SPLIT_KEYS if k not in split]
    if missing:
        raise ValueError(f"split: missing keys {missing}; expected {list(SPLIT_KEYS)}")
    for key, expected in (("dataset", dataset), ("n_examples", n_examples), ("table_sha256", table_sha256)):
        if split[key] != expected:
            raise ValueError(f"split {key}={split[key]!r} does not match the table's {expected!r}; re-run the sample stage")
    sets = {}
    for part in ("train", "dev", "eval"):
        rows = split[part]
        if not isinstance(rows, list) or (not rows and part != "dev") or any(isinstance(i, bool) or not isinstance(i, int) for i in rows):
            raise ValueError(f"split {part}: expected a {'' if part == 'dev' else 'non-empty '}list of integer row indices")
        bad = [i for i in rows if not 0 <= i < n_examples]
        if bad:
            raise ValueError(f"split {part}: index {bad[0]} is out of range; expected 0 <= index < {n_examples}")
        if len(set(rows)) != len(rows):
            raise ValueError(f"split {part}: duplicate row indices; expected each row at most once")
        sets[part] = set(rows)
    for part in ("dev", "eval"):
        if split[part] != sorted(split[part]):
            raise ValueError(f"split {part}: indices are not sorted ascending")
    for a, b in (("train", "eval"), ("train", "dev"), ("dev", "eval")):
        overlap = sorted(sets[a] & sets[b])
        if overlap:
            raise ValueError(f"split: rows {overlap[:5]} are in both {a} and {b}; expected disjoint sets")
    size, n_train = split["size"], len(split["train"])
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"split size={size!r} is invalid; expected an integer >= 1")
    if (n_train != size) if split["protocol"] == "kfold" else (n_train % size != 0):
        raise ValueError(f"split train: {n_train} rows do not fit protocol={split['protocol']!r} size={size}")
