"""What the loss did to the embedding space, from each run's saved arrays (no forward pass).

Per run: geometry numbers of the evaluation embeddings (silhouette, intra- and inter-class cosine
distance, the learned centres' distance to their class mean, retrieval Precision@1 and MAP@R from
pytorch-metric-learning's ``AccuracyCalculator``) and, per example, the distance to the mean
embedding (as the studies' notebooks did) or to the class centroid, and the sentence length, whose
equal-count groups give accuracy-by-decile curves. For each dataset's first seed: a 2-D t-SNE map
(scikit-learn, exact method, seeded) of the embeddings with the learned centres mapped beside them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fewshot_dml.config.params import Params
from fewshot_dml.config.sections import AnalyzeParams
from fewshot_dml.core import io, layout, rundir
from fewshot_dml.data.table import read_table
from fewshot_dml.infer.inference import load_run
from fewshot_dml.report.summary import roles
from fewshot_dml.train.loss_state import load_loss_module

# Every geometry number of a run, in report order; `centre_distance` is NaN for a loss without centres.
GEOMETRY = ("silhouette", "intra", "inter", "ratio", "precision_at_1", "map_at_r", "centre_distance")
HIGHER_IS_BETTER = {
    "silhouette": True,
    "intra": False,
    "inter": True,
    "ratio": False,
    "precision_at_1": True,
    "map_at_r": True,
    "centre_distance": False,
}
DECILE_AXES = ("distance", "length")


def normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def class_distances(embeddings: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Mean cosine distance over pairs of distinct examples of one class, and over pairs of two classes."""
    z = normalise(embeddings)
    dist = 1.0 - z @ z.T
    same = labels[:, None] == labels[None, :]
    distinct = ~np.eye(len(labels), dtype=bool)
    intra, inter = dist[same & distinct], dist[~same]
    return (float(intra.mean()) if intra.size else np.nan), (float(inter.mean()) if inter.size else np.nan)


def silhouette(embeddings: np.ndarray, labels: np.ndarray) -> float:
    """scikit-learn's mean silhouette with cosine distance; NaN where it is undefined (< 2 classes or no spare point)."""
    from sklearn.metrics import silhouette_score

    if not 2 <= len(np.unique(labels)) <= len(labels) - 1:
        return np.nan
    return float(silhouette_score(normalise(embeddings), labels, metric="cosine"))


def retrieval(embeddings: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Precision@1 and MAP@R of every example against all others (cosine similarity), from PML."""
    import torch
    from pytorch_metric_learning.distances import CosineSimilarity
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
    from pytorch_metric_learning.utils.inference import CustomKNN

    calculator = AccuracyCalculator(
        include=("precision_at_1", "mean_average_precision_at_r"),
        k="max_bin_count",
        knn_func=CustomKNN(CosineSimilarity()),
        device=torch.device("cpu"),
    )
    scores = calculator.get_accuracy(
        torch.from_numpy(normalise(embeddings).astype(np.float32)), torch.from_numpy(np.asarray(labels, np.int64))
    )
    return {"precision_at_1": float(scores["precision_at_1"]), "map_at_r": float(scores["mean_average_precision_at_r"])}


def class_means(embeddings: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, D): each class's normalised mean of its normalised embeddings; NaN rows for absent classes."""
    z = normalise(embeddings)
    means = np.full((num_classes, z.shape[1]), np.nan)
    for c in np.unique(labels):
        mean = z[labels == c].mean(axis=0)
        means[c] = mean / max(float(np.linalg.norm(mean)), 1e-12)
    return means


def centre_distance(centres: np.ndarray, centre_classes: np.ndarray, embeddings: np.ndarray, labels: np.ndarray, num_classes: int) -> float:
    """Mean cosine distance of each learned centre to its class's mean evaluation embedding."""
    means = class_means(embeddings, labels, num_classes)[centre_classes]
    dist = 1.0 - np.sum(normalise(centres) * means, axis=1)
    return float(np.nanmean(dist)) if np.isfinite(dist).any() else np.nan


def example_distances(embeddings: np.ndarray, labels: np.ndarray, to: str, num_classes: int) -> np.ndarray:
    """Each example's cosine distance to the mean embedding (``mean``) or to its class's mean (``centroid``)."""
    z = normalise(embeddings)
    if to == "mean":
        target = normalise(z.mean(axis=0, keepdims=True))
        return 1.0 - z @ target[0]
    if to == "centroid":
        return 1.0 - np.sum(z * class_means(embeddings, labels, num_classes)[labels], axis=1)
    raise ValueError(f"analyze.distance_to={to!r}; expected 'mean' or 'centroid'")


def sentence_lengths(table: pd.DataFrame, indices: np.ndarray) -> np.ndarray:
    """Whitespace words of each example (both sentences of a pair): independent of any tokenizer."""
    rows = table.iloc[np.asarray(indices, np.int64)]
    words = rows["text"].str.split().str.len() + rows["text_pair"].str.split().str.len().fillna(0)
    return words.to_numpy(np.float64)


def binned_accuracy(values: np.ndarray, correct: np.ndarray, bins: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``bins`` equal-count groups by ``values``: each group's mean value and accuracy.

    Ties are broken at random (seeded), not in index order: evaluation rows are sorted by table row,
    and some tables are sorted by class (MPQA's one-word phrases), so an index-order tie break would
    fill a group of equal lengths with one class and draw an accuracy dip that is only that artefact.
    """
    if len(values) < bins:
        raise ValueError(f"{len(values)} examples cannot fill analyze.bins={bins} groups; expected at least {bins}")
    tie_break = np.random.default_rng(seed).random(len(values))
    groups = np.array_split(np.lexsort((tie_break, values)), bins)
    return (np.array([values[g].mean() for g in groups]), np.array([np.asarray(correct, np.float64)[g].mean() for g in groups]))


def tsne_map(points: np.ndarray, params: AnalyzeParams) -> np.ndarray:
    """2-D exact t-SNE of the normalised points (cosine metric, PCA start, ``params.seed``): deterministic."""
    from sklearn.manifold import TSNE

    z = normalise(points)
    perplexity = min(params.perplexity, (len(z) - 1) / 3)  # sklearn needs perplexity < n
    return TSNE(n_components=2, perplexity=perplexity, metric="cosine", init="pca", method="exact", random_state=params.seed).fit_transform(
        z
    )


@dataclass(frozen=True)
class RunMap:
    """A run's map: its examples and centres in one t-SNE plane."""

    points: np.ndarray  # (N, 2)
    labels: np.ndarray  # (N,)
    correct: np.ndarray  # (N,) bool: the classifier's prediction is right
    centres: np.ndarray  # (P, 2); zero rows without centres
    centre_classes: np.ndarray  # (P,)
    label_names: tuple[str, ...]


def read_centres(run_dir: Path, run: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The loss module's learned centres (P, D) and their classes, rebuilt from ``loss_state.pt``; empty if none."""
    from fewshot_dml.losses import get_spec

    module = load_loss_module(run_dir, run)
    if module is None:
        return np.zeros((0, int(run["embedding_size"]))), np.zeros(0, np.int64)
    centres, classes = get_spec(run["loss"]["base"]).centres(module)
    return centres.float().numpy().astype(np.float64), classes.numpy().astype(np.int64)


def analyze_run(run_dir: Path, table: pd.DataFrame, params: AnalyzeParams, *, with_map: bool) -> dict:
    """The geometry numbers, per-decile curves and (``with_map``) the t-SNE map of one run."""
    art, run = load_run(run_dir), io.read_json(rundir.require(run_dir / rundir.RUN))
    emb, labels, c = art.eval_embeddings, art.eval_labels, art.num_classes
    correct = art.eval_logits.argmax(axis=1) == labels
    centres, centre_classes = read_centres(run_dir, run)
    intra, inter = class_distances(emb, labels)
    numbers = {
        "accuracy": float(correct.mean()),
        "silhouette": silhouette(emb, labels),
        "intra": intra,
        "inter": inter,
        "ratio": intra / inter,
        **retrieval(emb, labels),
        "centre_distance": centre_distance(centres, centre_classes, emb, labels, c) if len(centres) else np.nan,
    }
    indices = rundir.read_npz(run_dir / rundir.EVAL, ("indices",))["indices"]
    axes = {"distance": example_distances(emb, labels, params.distance_to, c), "length": sentence_lengths(table, indices)}
    deciles = {axis: binned_accuracy(values, correct, params.bins, params.seed) for axis, values in axes.items()}
    run_map = None
    if with_map:
        coords = tsne_map(np.concatenate([emb, centres]), params)
        run_map = RunMap(coords[: len(emb)], labels, correct, coords[len(emb) :], centre_classes, tuple(run["label_names"]))
    return {"numbers": numbers, "deciles": deciles, "map": run_map}


@dataclass(frozen=True)
class Analysis:
    """Every run's numbers (``geometry``, ``deciles``: one row per run / per run and group) and the maps."""

    geometry: pd.DataFrame  # dataset, size, seed, arm, role, accuracy, *GEOMETRY
    deciles: pd.DataFrame  # dataset, size, seed, arm, role, axis, bin (1..bins), value, accuracy
    maps: Mapping[tuple[str, int, str], RunMap]  # (dataset, size, arm) of the first seed
    dml_arm: str


def analyze_grid(params: Params, runs_dir: Path, raw_dir: Path) -> Analysis:
    """Analyse every run the grid params imply (never a glob: stale runs of other losses stay out)."""
    from tqdm import tqdm

    role = roles(params.loss)
    tables = {d: read_table(Path(raw_dir) / f"{d}{layout.TABLE_SUFFIX}") for d in params.datasets}
    geometry, deciles, maps = [], [], {}
    grid = layout.grid(params.datasets, params.sample_sizes, params.seeds, params.arms)
    for dataset, size, seed, arm in tqdm(grid, desc="analyze", unit="run"):
        first = seed == params.seeds[0]
        result = analyze_run(Path(runs_dir) / layout.run_id(dataset, size, seed, arm), tables[dataset], params.analyze, with_map=first)
        key = {"dataset": dataset, "size": size, "seed": seed, "arm": arm, "role": role[arm]}
        geometry.append({**key, **result["numbers"]})
        for axis, (values, accuracy) in result["deciles"].items():
            deciles += [
                {**key, "axis": axis, "bin": b + 1, "value": v, "accuracy": a}
                for b, (v, a) in enumerate(zip(values, accuracy, strict=True))
            ]
        if first:
            maps[(dataset, size, arm)] = result["map"]
    return Analysis(pd.DataFrame(geometry), pd.DataFrame(deciles), maps, params.loss)
