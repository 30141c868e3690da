"""Attributions on the tiny model (completeness, determinism, both score kinds) and one run's analysis."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fewshot_dml.analysis.explain import choose_sentences, explain_run, first_words, word_groups
from fewshot_dml.analysis.explain_report import (
    agreement_summary,
    attribution_section,
    seed_agreement,
)
from fewshot_dml.analysis.geometry import analyze_run
from fewshot_dml.config.params import load_params
from fewshot_dml.config.sections import AnalyzeParams
from fewshot_dml.data.table import read_table
from test_training import run as train_toy
from test_training import toy  # noqa: F401 - the fixture

ROOT = Path(__file__).resolve().parents[1]
ANALYZE = AnalyzeParams(seed=0, perplexity=30.0, bins=4, distance_to="mean")


@pytest.fixture
def runs(tiny_bert_dir: Path, toy: tuple[Path, Path, Path], tmp_path: Path) -> dict[str, Path]:  # noqa: F811
    out = {}
    for loss in ("cce", "proxyanchor"):
        out[loss] = tmp_path / loss
        train_toy(tiny_bert_dir, toy, out[loss], loss=loss, steps=2, save_weights=True)
    return out


def test_attributions_sum_to_the_score_difference(runs: dict[str, Path], toy: tuple[Path, Path, Path]) -> None:  # noqa: F811
    table = read_table(toy[0])
    words, entries = explain_run(runs["proxyanchor"], table, [4, 12], steps=300)
    assert words == [(["the", "battery", "lasts", "long"], 4), (["shares", "fell"], 2)]
    assert [(e["target"], e["kind"]) for e in entries] == [("classifier", "classifier"), ("metric", "proxy")]
    for entry in entries:
        for attributions, score, base, delta in zip(
            entry["attributions"], entry["score"], entry["baseline_score"], entry["delta"], strict=True
        ):
            # Integrated Gradients' completeness: the special tokens, equal in input and baseline, get nothing.
            assert sum(attributions) == pytest.approx(score - base, abs=2e-3 + 0.02 * abs(score - base))
            assert abs(delta) <= 2e-3 + 0.02 * abs(score - base)


def test_attributions_are_deterministic_and_a_run_without_centres_uses_prototypes(
    runs: dict[str, Path],
    toy: tuple[Path, Path, Path],  # noqa: F811
) -> None:
    table = read_table(toy[0])
    first = explain_run(runs["cce"], table, [4], steps=8)
    assert first == explain_run(runs["cce"], table, [4], steps=8)
    assert [e["kind"] for e in first[1]] == ["classifier", "prototype"]
    assert all(np.isfinite(e["attributions"][0]).all() for e in first[1])


def test_sentences_are_drawn_class_by_class_and_follow_the_seed() -> None:
    labels = np.array([0, 0, 0, 0, 1, 1, 2])
    chosen = choose_sentences(labels, 4, seed=0)
    assert sorted(labels[chosen].tolist()) == [0, 0, 1, 2] and chosen == choose_sentences(labels, 4, seed=0)
    assert choose_sentences(labels, 100, seed=0) != chosen and len(choose_sentences(labels, 100, seed=0)) == 7


def test_a_sentence_pair_is_split_into_the_words_of_both(tiny_bert_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_bert_dir))
    enc = tokenizer("good film", "bad film")
    names, groups = word_groups(enc, "good film", "bad film")
    assert names == ["good", "film", "bad", "film"] and len(groups) == 4 and first_words(enc) == 2
    assert all(enc.sequence_ids()[p] is not None for g in groups for p in g)


def test_seed_agreement_and_the_report_section() -> None:
    item = {
        "dataset": "sst2",
        "size": 16,
        "seed": 0,
        "steps": 50,
        "sentences": [],
        "runs": [
            {
                "seed": s,
                "arm": "cce",
                "role": "cce",
                "target": "classifier",
                "kind": "classifier",
                "attributions": [[1.0, 2.0, 3.0, 0.5]],
                "delta": [0.0],
                "score": [1.0],
                "baseline_score": [0.0],
                "predicted": [1],
            }
            for s in (0, 1)
        ],
    }
    item["runs"][1]["attributions"] = [[3.0, 2.0, 1.0, 0.5]]
    assert seed_agreement(item) == {"cce classifier": pytest.approx(0.2)}  # ranks 2,3,4,1 vs 4,3,2,1
    assert agreement_summary([item])["sst2-16"]["seed_agreement"] == {"cce_classifier": 0.2}
    params = load_params(ROOT / "params.yaml")
    assert "No run of this experiment kept its weights" in attribution_section(params, [], [])
    assert "| sst2-16 | `cce` | classifier | 2 | +0.20 |" in attribution_section(params, [item], ["a.png"])


def test_one_run_analysis_with_and_without_centres(runs: dict[str, Path], toy: tuple[Path, Path, Path]) -> None:  # noqa: F811
    table = read_table(toy[0])
    with_centres = analyze_run(runs["proxyanchor"], table, ANALYZE, with_map=True)
    assert with_centres["map"].centres.shape == (2, 2) and with_centres["map"].points.shape == (8, 2)
    assert np.isfinite(list(with_centres["numbers"].values())).all()
    without = analyze_run(runs["cce"], table, ANALYZE, with_map=True)
    assert np.isnan(without["numbers"]["centre_distance"]) and without["map"].centres.shape == (0, 2)
    assert set(without["deciles"]) == {"distance", "length"}
    accuracy = json.loads((runs["cce"] / "metrics.json").read_text())["accuracy"]
    assert without["numbers"]["accuracy"] == pytest.approx(accuracy)
    assert without["deciles"]["length"][1].mean() == pytest.approx(accuracy)  # equal groups of 2


def test_without_saved_weights_nothing_is_explained_and_the_index_says_so(tmp_path: Path) -> None:
    from fewshot_dml.analysis.explain import run_explain

    params = load_params(ROOT / "params.yaml")
    assert run_explain(params, tmp_path / "runs", tmp_path / "raw", tmp_path / "explain") == []
    assert json.loads((tmp_path / "explain" / "index.json").read_text()) == {"explained": []}


def test_the_map_and_attribution_figures_are_byte_identical_across_two_draws(tmp_path: Path) -> None:
    from fewshot_dml.analysis.figures import draw_attributions, draw_map
    from fewshot_dml.analysis.geometry import RunMap
    from fewshot_dml.report.figures import pinned_rc

    rng = np.random.default_rng(0)
    run_map = RunMap(
        rng.normal(size=(30, 2)), rng.integers(0, 3, 30), rng.random(30) > 0.3, rng.normal(size=(3, 2)), np.arange(3), ("a", "b", "c")
    )
    item = {
        "dataset": "mrpc",
        "size": 16,
        "seed": 0,
        "sentences": [{"label": 1, "label_name": "paraphrase", "words": ["one", "two", "three", "four"], "first_words": 2}],
        "runs": [{"seed": 0, "arm": "cce", "role": "cce", "kind": "classifier", "attributions": [[0.1, -0.5, 0.3, 0.0]], "predicted": [1]}],
    }
    with pinned_rc():
        for name in ("a", "b"):
            draw_map({"cce": run_map, "dml": run_map}, {"cce": 0.5, "dml": 0.6}, "title", tmp_path / f"map-{name}.png")
            draw_attributions(item, tmp_path / f"attr-{name}.png")
    for kind in ("map", "attr"):
        assert (tmp_path / f"{kind}-a.png").read_bytes() == (tmp_path / f"{kind}-b.png").read_bytes()
