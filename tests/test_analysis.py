"""The analyze stage's numbers against hand-computed values, its tests, determinism, and its figures."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from fewshot_dml.analysis.geometry import (
    GEOMETRY,
    binned_accuracy,
    centre_distance,
    class_distances,
    example_distances,
    retrieval,
    sentence_lengths,
    silhouette,
    tsne_map,
)
from fewshot_dml.analysis.report import compare, within_cell_spearman
from fewshot_dml.config.sections import AnalyzeParams
from fewshot_dml.data.table import make_table


def on_circle(degrees: list[float]) -> np.ndarray:
    rad = np.deg2rad(degrees)
    return np.stack([np.cos(rad), np.sin(rad)], axis=1)


# Four unit vectors: class 0 = (1, 0), (0, 1); class 1 = (-1, 0), (0, -1).
SQUARE, SQUARE_LABELS = on_circle([0, 90, 180, 270]), np.array([0, 0, 1, 1])


def test_intra_and_inter_class_distances_by_hand() -> None:
    # within a class: 1 - cos 90° = 1; across: 1 - cos 180° = 2 twice and 1 - cos 90° = 1 twice per point
    intra, inter = class_distances(SQUARE * [[1], [2], [3], [4]], SQUARE_LABELS)  # scale does not matter
    assert intra == pytest.approx(1.0) and inter == pytest.approx(1.5)


def test_silhouette_by_hand() -> None:
    # every point: a = 1 (its class mate), b = (2 + 1) / 2 = 1.5, s = (b - a) / b = 1/3
    assert silhouette(SQUARE, SQUARE_LABELS) == pytest.approx(1 / 3)
    assert math.isnan(silhouette(SQUARE, np.zeros(4, np.int64)))  # one class: undefined, not 0


def test_precision_at_1_and_map_at_r_by_hand() -> None:
    # class 0 at 0°, 12°, 30°; class 1 at 5° (an intruder) and 180°. Neighbours by angle:
    # 0°: 5°(x) 12°(✓) -> P@1 0, AP@R (R=2) = (0 + 1/2) / 2; 12°: 5°(x) 0°(✓) -> 0, 1/4; 30°: 12°(✓) 5°(x) -> 1, 1/2;
    # 5°: 0°(x) -> 0, 0; 180°: 30°(x) -> 0, 0.
    emb = on_circle([0, 12, 30, 5, 180])
    scores = retrieval(emb, np.array([0, 0, 0, 1, 1]))
    assert scores["precision_at_1"] == pytest.approx(1 / 5) and scores["map_at_r"] == pytest.approx(1 / 5)


def test_centre_distance_is_zero_at_the_class_means_and_one_when_orthogonal() -> None:
    emb, labels = on_circle([-10, 10, 170, 190]), np.array([0, 0, 1, 1])  # class means at 0° and 180°
    assert centre_distance(on_circle([0, 180]), np.array([0, 1]), emb, labels, 2) == pytest.approx(0.0, abs=1e-12)
    assert centre_distance(on_circle([90, 90]), np.array([0, 1]), emb, labels, 2) == pytest.approx(1.0)
    # a centre of a class absent from the evaluation set is left out, not counted as 0
    assert centre_distance(on_circle([0, 90]), np.array([0, 2]), emb, labels, 3) == pytest.approx(0.0, abs=1e-12)


def test_example_distances_to_the_mean_and_to_the_class_centroid() -> None:
    emb, labels = on_circle([0, 90, 180, 200]), np.array([0, 0, 1, 1])
    to_centroid = example_distances(emb, labels, "centroid", 2)
    assert to_centroid == pytest.approx(1 - np.cos(np.deg2rad([45, 45, 10, 10])))
    mean_dir = np.rad2deg(np.arctan2(*emb.mean(axis=0)[::-1]))
    assert example_distances(emb, labels, "mean", 2) == pytest.approx(1 - np.cos(np.deg2rad([0, 90, 180, 200]) - np.deg2rad(mean_dir)))
    with pytest.raises(ValueError, match="analyze.distance_to='median'; expected 'mean' or 'centroid'"):
        example_distances(emb, labels, "median", 2)


def test_sentence_length_counts_both_sentences_of_a_pair() -> None:
    table = make_table([0, 1, 0], ["one two three", "a  b", "x"], ["", "c d e", ""])
    assert sentence_lengths(table, np.array([2, 0, 1])).tolist() == [1, 3, 5]


def test_binned_accuracy_uses_equal_count_groups() -> None:
    values = np.array([5, 1, 1, 3, 2, 9.0])
    correct = np.array([1, 1, 0, 0, 1, 1])
    means, accuracy = binned_accuracy(values, correct, 3, seed=0)
    # sorted: idx 1, 2 (1) | 4 (2), 3 (3) | 0 (5), 5 (9)
    assert means.tolist() == [1, 2.5, 7] and accuracy.tolist() == [0.5, 0.5, 1.0]
    with pytest.raises(ValueError, match="5 examples cannot fill analyze.bins=6 groups"):
        binned_accuracy(values[:5], correct[:5], 6, seed=0)


def test_ties_are_broken_at_random_not_by_the_class_sorted_row_order() -> None:
    # 100 equally long phrases, the first 50 right and the rest wrong (rows sorted by class, as MPQA's):
    # breaking the tie by row order would report 100% then 0%, an artefact of the order.
    values, correct = np.ones(100), np.r_[np.ones(50), np.zeros(50)]
    _, accuracy = binned_accuracy(values, correct, 2, seed=0)
    assert 0.3 < accuracy[0] < 0.7 and accuracy.mean() == 0.5
    assert np.array_equal(accuracy, binned_accuracy(values, correct, 2, seed=0)[1])


def test_the_tsne_map_is_deterministic() -> None:
    # PCA start and the exact gradient: nothing is drawn, so even another random state gives the same map.
    import dataclasses

    points = np.random.default_rng(0).normal(size=(40, 8))
    params = AnalyzeParams(seed=0, perplexity=30.0, bins=10, distance_to="mean")
    first = tsne_map(points, params)
    assert first.shape == (40, 2) and np.isfinite(first).all()
    assert np.array_equal(first, tsne_map(points, params))
    assert np.array_equal(first, tsne_map(points, dataclasses.replace(params, seed=1)))
    assert tsne_map(points[:7], params).shape == (7, 2)  # perplexity capped below the number of points


def test_within_cell_spearman_matches_scipy_and_permutes_only_inside_cells() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=20)
    y = x + rng.normal(scale=0.3, size=20)
    cells = np.repeat(["a", "b"], 10)
    rho, p = within_cell_spearman(x, y, cells, seed=0, permutations=2000)
    assert rho == pytest.approx(spearmanr(x, y).statistic) and p < 0.01
    assert (rho, p) == within_cell_spearman(x, y, cells, seed=0, permutations=2000)
    # Between-cell association only: y is the cell's level, so any within-cell permutation keeps rho.
    x2 = np.r_[np.zeros(10), np.ones(10)] + rng.normal(scale=0.01, size=20)
    y2 = np.r_[np.zeros(10), np.ones(10)]
    rho2, p2 = within_cell_spearman(x2, y2, cells, seed=0, permutations=2000)
    assert rho2 > 0.8 and p2 == 1.0


def paired_frame(diffs: dict[str, list[float]]) -> pd.DataFrame:
    n = len(next(iter(diffs.values())))
    frame = pd.DataFrame({"dataset": ["mr"] * (n // 2) + ["cr"] * (n - n // 2), "size": 16, "seed": range(n)})
    for metric in ["accuracy", *GEOMETRY]:
        frame[f"d_{metric}"] = diffs.get(metric, [np.nan] * n)
    return frame


def test_compare_names_direction_and_leaves_out_undefined_numbers() -> None:
    up = [0.1, 0.2, 0.15, 0.3, 0.1, 0.2, 0.25, 0.1, 0.2, 0.3]
    frame = paired_frame(
        {
            "accuracy": up,
            "silhouette": up,
            "intra": up,
            "inter": [-u for u in up],
            "ratio": [0.01, -0.01] * 5,
            "precision_at_1": up,
            "map_at_r": up[:9] + [np.nan],
        }
    )
    out = compare(frame, confidence=0.95, alpha=0.05, seed=0).set_index("metric")
    assert "centre_distance" not in out.index  # the CCE arm has no centres: nothing to compare
    assert out.loc["silhouette", "verdict"] == "better" and out.loc["intra", "verdict"] == "worse"
    assert out.loc["inter", "verdict"] == "worse" and out.loc["ratio", "verdict"] == "not shown"
    assert out.loc["map_at_r", "n"] == 9 and out.loc["map_at_r", "left_out"] == 1
    assert out.loc["silhouette", "diff"] == pytest.approx(np.mean([np.mean(up[:5]), np.mean(up[5:])]))
    assert (out["p_holm"] >= out["p"]).all()


def test_geometry_names_are_the_report_labels() -> None:
    from fewshot_dml.analysis.geometry import HIGHER_IS_BETTER
    from fewshot_dml.analysis.report import LABELS

    assert set(GEOMETRY) == set(LABELS) == set(HIGHER_IS_BETTER)


def test_the_decile_and_geometry_figures_are_byte_identical_across_two_draws(tmp_path: Path) -> None:
    from fewshot_dml.analysis.figures import draw_deciles, draw_geometry_vs_accuracy
    from fewshot_dml.analysis.report import LABELS
    from fewshot_dml.report.figures import pinned_rc

    rows = [
        {
            "dataset": d,
            "size": 16,
            "seed": s,
            "arm": r,
            "role": r,
            "axis": "length",
            "bin": b,
            "value": b,
            "accuracy": 0.5 + 0.01 * b + 0.02 * s,
        }
        for d in ("mr", "cr")
        for s in range(3)
        for r in ("cce", "setfit", "dml")
        for b in range(1, 11)
    ]
    paired = paired_frame({m: list(np.linspace(-0.1, 0.2, 10)) for m in ("accuracy", "silhouette", "map_at_r")})
    with pinned_rc():
        for name in ("a", "b"):
            draw_deciles(pd.DataFrame(rows), "length", "sentence length", tmp_path / f"deciles-{name}.png")
            draw_geometry_vs_accuracy(paired, ("silhouette", "map_at_r"), LABELS, tmp_path / f"geometry-{name}.png")
    for kind in ("deciles", "geometry"):
        assert (tmp_path / f"{kind}-a.png").read_bytes() == (tmp_path / f"{kind}-b.png").read_bytes()


def test_one_seed_gives_no_test_and_no_association_rather_than_an_error() -> None:
    from fewshot_dml.analysis.report import associate

    frame = paired_frame({"accuracy": [0.1], "silhouette": [0.2]}).assign(dataset="trec")
    out = compare(frame, confidence=0.95, alpha=0.05, seed=0)
    assert out["metric"].tolist() == ["silhouette"] and out["p"].tolist() == [None]
    assert out["verdict"].tolist() == ["not shown"]
    assert associate(frame, alpha=0.05, seed=0).empty


def test_the_summary_is_read_off_the_corrected_tests_only() -> None:
    from fewshot_dml.analysis.report import _summary

    tests = pd.DataFrame({"metric": ["silhouette", "inter", "precision_at_1"], "verdict": ["better", "worse", "not shown"]})
    assoc = pd.DataFrame({"metric": ["silhouette", "inter"], "rho": [0.1, -0.52], "shown": [False, True]})
    text = _summary("supcon", tests, assoc, 0.05)
    assert "a better structure by silhouette; a worse one by inter-class distance; no difference shown in Precision@1" in text
    assert "goes with its change in inter-class distance (rho -0.52)." in text
    assert "No geometry change" in _summary("supcon", tests, assoc.assign(shown=False), 0.05)


def test_the_map_legend_shows_a_learned_centre_only_where_one_is_drawn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fewshot_dml.analysis import figures
    from fewshot_dml.analysis.geometry import RunMap

    rng = np.random.default_rng(0)

    def run_map(centres: int) -> RunMap:
        points, labels = rng.normal(size=(20, 2)), np.arange(20) % 2
        return RunMap(points, labels, labels == 0, rng.normal(size=(centres, 2)), np.arange(centres) % 2, ("neg", "pos"))

    drawn = []
    monkeypatch.setattr(figures, "save_png", lambda fig, path: drawn.append(fig))
    legend = lambda fig: [t.get_text() for t in fig.legends[0].get_texts()]  # noqa: E731
    figures.draw_map({"cce": run_map(0), "supcon": run_map(0)}, {"cce": 0.5, "supcon": 0.6}, "supcon", tmp_path / "a.png")
    figures.draw_map({"cce": run_map(0), "proxyanchor": run_map(2)}, {"cce": 0.5, "proxyanchor": 0.6}, "pa", tmp_path / "b.png")
    assert legend(drawn[0]) == ["neg", "pos", "misclassified"]  # SupCon learns no centre
    assert legend(drawn[1]) == ["neg", "pos", "misclassified", "learned centre"]
    assert figures.map_title("mr", 16, 0, {"supcon": run_map(0)}) == "mr (size 16, seed 0): t-SNE of the evaluation embeddings"
    assert figures.map_title("mr", 16, 0, {"pa": run_map(2)}).endswith("embeddings and the learned centres")


def test_the_figures_name_the_dml_arm_by_its_loss_as_every_report_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """#26: the arm was `dml` in the decile legend and the attribution labels, `supcon` everywhere else."""
    from fewshot_dml.analysis import figures
    from fewshot_dml.report import plotting

    drawn: list = []
    monkeypatch.setattr(plotting, "save_png", lambda fig, path: drawn.append(fig))
    monkeypatch.setattr(figures, "save_png", lambda fig, path: drawn.append(fig), raising=False)
    rows = [
        {"dataset": "mr", "size": 8, "seed": s, "arm": r, "role": r, "axis": "length", "bin": b, "value": b, "accuracy": 0.5}
        for s in range(2)
        for r in ("cce", "setfit", "dml")
        for b in range(1, 4)
    ]
    figures.draw_deciles(pd.DataFrame(rows), "length", "sentence length", tmp_path / "d.png", {"dml": "supcon"})
    assert [t.get_text() for t in drawn[-1].legends[0].get_texts()] == ["cce", "setfit", "supcon"]
    item = {
        "dataset": "mr",
        "size": 8,
        "seed": 0,
        "sentences": [{"label": 1, "label_name": "positive", "words": ["a", "fine", "film"]}],
        "runs": [{"seed": 0, "arm": "supcon", "role": "dml", "kind": "prototype", "attributions": [[0.1, 0.5, 0.2]], "predicted": [1]}],
    }
    figures.draw_attributions(item, tmp_path / "a.png")
    texts = [t.get_text() for ax in drawn[-1].axes for t in ax.texts] + [t.get_text() for t in drawn[-1].texts]
    assert "supcon · prototype (right)" in texts and not any(t.startswith("dml") for t in texts)
