"""The tuning study (a sweep's report, e.g. ``reports/experiments/sweep.md``): every arm's configurations compared on the development
split only, then each arm's dev-selected recipe compared on the held-out evaluation set.

A *candidate* is an arm (``cce``, ``setfit`` or a DML loss), one of its parameter configurations (a
DVC experiment of the sweep) and one inference mode (classifier; proxy mixture at weight w; nearest
prototype; kNN). Every mode is computed here from the stored arrays of each run, on the development
and the evaluation rows alike, so the inference mode is tuned like any other setting at no training
cost. Per arm, the candidate with the highest mean development accuracy (mean over datasets of the
mean over seeds) is selected; ties go to the first candidate in sweep order (the experiment queued
first, then classifier, proxy, prototype, kNN). The evaluation numbers are read only after that.

The held-out comparisons pair the selected recipes by (dataset, size, seed) and use the blocked
design of :func:`fewshot_dml.report.stats.blocked_gain` (datasets as blocks, stratified sign-flip test),
Holm-corrected within each family: the two confirmatory tests of the issue's goals (the best DML arm
on dev against tuned CCE and against SetFit) form one family, every other comparison another.
"""

from __future__ import annotations

import io as _io
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fewshot_dml.catalog.arms import BASELINE, PEERS, SETFIT
from fewshot_dml.config.sections import AggregateParams
from fewshot_dml.core import layout, rundir
from fewshot_dml.infer.inference import (
    EVAL_KEYS,
    SCORES,
    TRAIN_KEYS,
    accuracy_f1,
    knn_predictions,
    mixture_predictions,
    prototype_predictions,
)
from fewshot_dml.losses import get_spec
from fewshot_dml.report.stats import PairedResult, blocked_gain, holm
from fewshot_dml.studies.experiments import Experiment, rev_label

log = logging.getLogger(__name__)

Cell = tuple[str, int, int]  # (dataset, size, seed)
GOAL_PP = 2.0  # the target margin (FastFit's reported margin over SetFit)
# What the setfit arm reads of `train` (fewshot_dml.train.setfit; a test keeps the two in step). The
# device and thread count change how fast it runs, not its result.
SETFIT_READS = ("train.dev_checkpoints", "train.eval_batch_size", "train.max_length", "train.model")


@dataclass(frozen=True)
class Candidate:
    """One arm x configuration x inference mode, with its accuracy per cell on dev and on eval."""

    arm: str
    config: str  # the params that set this arm apart from its other configurations ("defaults" if none)
    experiment: str
    mode: str
    dev: Mapping[Cell, float] = field(repr=False)
    eval: Mapping[Cell, float] = field(repr=False)
    key: tuple = field(default=(), repr=False)  # the arm's params (name, value) pairs: its configuration

    @property
    def mean_dev(self) -> float:
        return dataset_mean(self.dev)

    @property
    def mean_eval(self) -> float:
        return dataset_mean(self.eval)


def dataset_mean(values: Mapping[Cell, float]) -> float:
    """Mean over datasets (and sizes) of the mean over seeds: every dataset counts once, as in the studies."""
    cells: dict[tuple[str, int], list[float]] = {}
    for (d, size, _), v in values.items():
        cells.setdefault((d, size), []).append(v)
    return float(np.mean([np.mean(v) for v in cells.values()])) if cells else math.nan


def mode_accuracies(
    part: Mapping[str, np.ndarray], train: Mapping[str, np.ndarray], num_classes: int, has_proxies: bool, knn_k: int, curve_points: int
) -> dict[str, float]:
    """Accuracy of every inference mode on one part (dev or eval) of one run."""
    labels, logits = part["labels"], part["logits"].astype(np.float32)
    emb = part["embeddings"].astype(np.float32)
    train_emb, train_labels = train["embeddings"].astype(np.float32), train["labels"]

    def acc(pred: np.ndarray) -> float:
        return accuracy_f1(labels, pred, num_classes)["accuracy"]

    out = {"classifier": acc(logits.argmax(axis=1))}
    if has_proxies:  # w = 1 is the classifier itself
        for i in range(curve_points - 1):
            w = i / (curve_points - 1)
            out[f"proxy w={w:.2g}"] = acc(mixture_predictions(logits, part[SCORES].astype(np.float32), w))
    out["prototype"] = acc(prototype_predictions(train_emb, train_labels, emb, num_classes))
    out["knn"] = acc(knn_predictions(train_emb, train_labels, emb, num_classes, min(knn_k, len(train_labels))))
    return out


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested params as ``dvc exp show`` names and writes them: dotted keys, floats as ``:g`` text."""
    out: dict[str, str] = {}
    for key, value in params.items():
        if isinstance(value, Mapping):
            out |= flatten(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = f"{value:g}" if isinstance(value, float) else str(value)
    return out


def arm_configs(experiments: Sequence[Experiment], defaults: Mapping[str, str] | None = None) -> list[tuple[str, str, Experiment, tuple]]:
    """``(arm, config label, experiment, key)`` for every distinct configuration of every arm.

    An arm's configuration is the params it reads (``train.*`` and ``losses.<arm>.*``; SetFit follows
    its own recipe and reads only :data:`SETFIT_READS` of ``train``); experiments that agree on them
    share the arm's runs, so each is listed once. The label names the params that differ from
    ``defaults`` (the committed params the sweep was queued from, flattened; "defaults" when none
    does). Per arm, the order (which is also the tie-break of :func:`select`) is: fewest differences
    first, then the experiment's name.
    """
    seen: set[tuple[str, tuple]] = set()
    rows: list[tuple[str, tuple, Experiment]] = []
    for e in experiments:
        params = e.params or {}
        for arm in (*PEERS, e.loss):
            reads = (*SETFIT_READS, f"losses.{arm}.") if arm == SETFIT else ("train.", f"losses.{arm}.")
            key = tuple(sorted((k, v) for k, v in params.items() if k.startswith(reads)))
            if (arm, key) not in seen:
                seen.add((arm, key))
                rows.append((arm, key, e))
    reference = defaults or {}
    labelled = []
    for arm, key, e in rows:
        differs = [f"{k}={v}" for k, v in key if k in reference and reference[k] != v]
        labelled.append((arm, ", ".join(differs) or "defaults", e, key, len(differs)))
    order = list(dict.fromkeys(arm for arm, *_ in labelled))
    labelled.sort(key=lambda r: (order.index(r[0]), r[4], r[2].name))
    return [r[:4] for r in labelled]


Reader = Callable[[Experiment, str], bytes]  # (experiment, repo-relative path) -> the file's bytes


def collect(experiments: Sequence[Experiment], read: Reader, runs_dir: str, defaults: Mapping[str, str] | None = None) -> list[Candidate]:
    """Every candidate of every arm configuration (see :func:`arm_configs`), its accuracies read from
    the experiments' runs.

    The kNN k and the proxy-mixture weights are the experiment's own ``infer`` params.
    """
    out = []
    for arm, config, e, key in arm_configs(experiments, defaults):
        if not e.grid:
            raise ValueError(f"experiment {e.name!r} has no grid (datasets, sample_sizes, seeds) in its params")
        knn_k, curve_points = (int((e.params or {})[f"infer.{k}"]) for k in ("knn_k", "curve_points"))
        has_proxies = get_spec((e.params or {}).get(f"losses.{arm}.variant_of") or arm).has_proxies
        dev: dict[str, dict[Cell, float]] = {}
        ev: dict[str, dict[Cell, float]] = {}
        for cell in e.grid:
            base = f"{runs_dir}/{layout.run_id(*cell, arm)}"
            parts = {name: _npz(read(e, f"{base}/{name}"), f"{base}/{name}", e) for name in (rundir.EVAL, rundir.DEV, rundir.TRAIN)}
            if not len(parts[rundir.DEV]["labels"]):
                raise ValueError(
                    f"{base}/{rundir.DEV} of experiment {e.name!r} is empty: tuning selects on the "
                    "development split; expected sample.dev_ratio > 0"
                )
            c = int(parts[rundir.EVAL]["logits"].shape[1])
            for part, target in ((rundir.DEV, dev), (rundir.EVAL, ev)):
                for mode, acc in mode_accuracies(parts[part], parts[rundir.TRAIN], c, has_proxies, knn_k, curve_points).items():
                    target.setdefault(mode, {})[cell] = acc
        out += [Candidate(arm, config, e.name, mode, dev[mode], ev[mode], key) for mode in dev]
    return out


def _npz(data: bytes, path: str, e: Experiment) -> dict[str, np.ndarray]:
    """The arrays of run file ``path`` of experiment ``e``; ValueError naming both if it cannot be read."""
    where = f"{path} of experiment {e.name!r} (rev {rev_label(e)})"
    try:
        with np.load(_io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files if k in (*EVAL_KEYS, *TRAIN_KEYS, SCORES)}
    except rundir.NPZ_ERRORS as err:
        raise rundir.unreadable_npz(where, err, _REFETCH) from err
    needed = TRAIN_KEYS if path.endswith(rundir.TRAIN) else EVAL_KEYS
    missing = [k for k in needed if k not in arrays]
    if missing:
        raise ValueError(f"{where}: missing arrays {missing}; expected keys {list(needed)}")
    return arrays


_REFETCH = "expected the train stage's output: fetch the experiment's outputs again (`dvc exp pull` or `dvc pull`) or run it again"


def select(candidates: Sequence[Candidate]) -> dict[str, Candidate]:
    """Per arm, the candidate with the highest mean development accuracy (first in sweep order on ties)."""
    best: dict[str, Candidate] = {}
    for c in candidates:
        if c.arm not in best or c.mean_dev > best[c.arm].mean_dev + 1e-12:
            best[c.arm] = c
    return best


def replicate(selected: Mapping[str, Candidate], candidates: Sequence[Candidate]) -> dict[str, Candidate]:
    """Per selected arm, its recipe (same configuration and inference mode) among ``candidates``, e.g. the
    same recipes run again on another protocol; arms whose recipe was not run there are left out."""
    out = {}
    for arm, chosen in selected.items():
        match = next((c for c in candidates if c.arm == arm and c.key == chosen.key and c.mode == chosen.mode), None)
        if match is not None:
            out[arm] = match
    return out


def compare(treated: Candidate, baseline: Candidate, agg: AggregateParams) -> PairedResult:
    """Blocked paired gain of ``treated`` over ``baseline`` on the evaluation set, by dataset x size (its
    interval at ``aggregate.confidence``, Monte Carlo sign flips from ``aggregate.seed``)."""
    cells: dict[tuple[str, int], list[float]] = {}
    shared = sorted(set(treated.eval) & set(baseline.eval))
    if len(shared) != len(treated.eval) or len(shared) != len(baseline.eval):
        raise ValueError(f"{treated.arm} and {baseline.arm} were run on different grids; expected the same cells")
    for cell in shared:
        cells.setdefault(cell[:2], []).append(treated.eval[cell] - baseline.eval[cell])
    return blocked_gain([np.round(np.asarray(v), 12) for v in cells.values()], confidence=agg.confidence, seed=agg.seed)


def comparisons(selected: Mapping[str, Candidate], agg: AggregateParams, best: str | None = None) -> tuple[str | None, list[dict]]:
    """The best DML arm on dev (unless given), and every held-out comparison with its Holm-adjusted p
    (two families: the best DML arm against the peers, and the rest)."""
    dml = [arm for arm in selected if arm not in PEERS]
    if best is None:
        best = max(dml, key=lambda a: selected[a].mean_dev, default=None)  # first listed on ties
    rows = []
    for arm in dml:
        for base in PEERS:
            if base in selected:
                r = compare(selected[arm], selected[base], agg)
                rows.append({"treated": arm, "baseline": base, "result": r, "primary": arm == best})
    if SETFIT in selected and BASELINE in selected:
        rows.append(
            {"treated": BASELINE, "baseline": SETFIT, "result": compare(selected[BASELINE], selected[SETFIT], agg), "primary": False}
        )
    for primary in (True, False):
        family = [r for r in rows if r["primary"] is primary]
        for r, p in zip(family, holm([r["result"].p_value for r in family]), strict=True):
            r["p_holm"] = p
    return best, rows
