"""Datasets of your own: every format `datasets` reads, the stable label numbering, and each kind of
bad data as one error naming the file and the problem, with nothing written."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fewshot_dml.config.sections import FetchParams, FetchUrls, OwnDatasetParams, SampleParams
from fewshot_dml.core.errors import FetchError
from fewshot_dml.data.fetch import fetch_dataset, verify_sources
from fewshot_dml.data.own import label_ids, read_own, source_record
from fewshot_dml.data.sampling import write_splits
from fewshot_dml.data.table import read_card_and_table

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "tests" / "data" / "own"
NO_SENTEVAL = FetchParams(local_dir="no-such-dir", download=False, urls=FetchUrls(*["http://127.0.0.1:9/x"] * 5), timeout_s=1.0, retries=0)


def own(
    source: str | Path,
    text: str = "text",
    label: str = "label",
    text_pair: str | None = None,
    revision: str | None = None,
    split: str = "train",
) -> OwnDatasetParams:
    return OwnDatasetParams(source=str(source), revision=revision, split=split, text=text, text_pair=text_pair, label=label)


def write_csv(path: Path, rows: list[tuple[Any, ...]], header: tuple[str, ...] = ("text", "label")) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def fetch(name: str, spec: OwnDatasetParams, tmp_path: Path) -> dict:
    return fetch_dataset(
        name, NO_SENTEVAL, tmp_path / "out" / f"{name}.jsonl", tmp_path / "out" / f"{name}.card.json", root=tmp_path, own=spec
    )


def test_the_shipped_csv_and_jsonl_become_tables_with_cards(tmp_path: Path) -> None:
    card = fetch("intents", own(SHIPPED / "intents.csv", label="intent"), tmp_path)
    assert card["label_names"] == ["account", "billing", "shipping"] and card["label_order"] == "lexicographic"
    assert card["n_examples"] == 120 and card["pair"] is False and card["format"] == "csv"
    assert card["inputs"][0]["sha256"] == source_record("intents", own(SHIPPED / "intents.csv"), tmp_path)["sha256"]
    card, table = read_card_and_table(tmp_path / "out/intents.card.json", tmp_path / "out/intents.jsonl", ())
    assert table.loc[0, "text"] == "the phone was delivered to the wrong address" and table.loc[0, "label"] == 2
    card = fetch("answers", own(SHIPPED / "answers.jsonl", text="question", text_pair="answer"), tmp_path)
    assert card["pair"] is True and card["label_names"] == ["answers", "off_topic"] and card["format"] == "json"
    _, table = read_card_and_table(tmp_path / "out/answers.card.json", tmp_path / "out/answers.jsonl", ())
    assert (table["text_pair"] != "").all()


def test_a_csv_cell_is_text_as_written(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", [("NA", "a"), ("null", "b"), ("  two  words ", "a"), ("line\nbreak", "b")])
    loaded = read_own("d", own(path), tmp_path)
    assert [r[1] for r in loaded.rows] == ["NA", "null", "  two  words ", "line\nbreak"]


@pytest.mark.parametrize("suffix", [".tsv", ".parquet", ".json"])
def test_tsv_parquet_and_json_arrays_read_too(tmp_path: Path, suffix: str) -> None:
    import pandas as pd

    frame = pd.DataFrame({"sentence": ["good", "bad", "fine"], "y": [1, 0, 1]})
    path = tmp_path / f"d{suffix}"
    if suffix == ".tsv":
        frame.to_csv(path, sep="\t", index=False)
    elif suffix == ".parquet":
        frame.to_parquet(path)
    else:
        path.write_text(json.dumps(frame.to_dict(orient="records")))
    loaded = read_own("d", own(path, text="sentence", label="y"), tmp_path)
    assert loaded.rows == [(1, "good", ""), (0, "bad", ""), (1, "fine", "")] and loaded.label_names == ("0", "1")


def test_labels_are_numbered_by_value_not_by_row_order() -> None:
    values = ["shipping", "billing", "account", "billing"]
    ids, names, order = label_ids(values, "f", "label")
    assert names == ("account", "billing", "shipping") and ids == [2, 1, 0, 1] and order == "lexicographic"
    # Integers (and strings of integers) sort numerically: 2 before 10.
    assert label_ids([10, 2, 2, 10], "f", "label")[1:] == (("2", "10"), "numeric")
    assert label_ids(["10", "2", "-1"], "f", "label")[:2] == ([2, 1, 0], ("-1", "2", "10"))
    # A ClassLabel column keeps its own names and ids, whatever the rows.
    assert label_ids([1, 0], "f", "label", ["neg", "pos"]) == ([1, 0], ("neg", "pos"), "class_label")


def test_the_mapping_is_stable_when_rows_are_shuffled_or_added(tmp_path: Path) -> None:
    rows = [(f"sentence {i}", ["refund", "delivery", "login"][i % 3]) for i in range(30)]
    first = read_own("d", own(write_csv(tmp_path / "a.csv", rows)), tmp_path)
    shuffled = rows[:]
    random.Random(0).shuffle(shuffled)
    more = shuffled + [("one more", "delivery")]
    for path in (write_csv(tmp_path / "b.csv", shuffled), write_csv(tmp_path / "c.csv", more)):
        loaded = read_own("d", own(path), tmp_path)
        assert loaded.label_names == first.label_names == ("delivery", "login", "refund")
        by_text = {text: label for label, text, _ in loaded.rows}
        assert all(by_text[text] == label for label, text, _ in first.rows)


def test_a_class_label_column_keeps_its_names_and_an_unused_class_is_an_error(tmp_path: Path) -> None:
    import datasets

    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "neutral", "pos"])})
    data = datasets.Dataset.from_dict({"text": ["a", "b", "c"], "label": [2, 0, 1]}, features=features)
    data.to_parquet(tmp_path / "three.parquet")
    assert fetch("three", own(tmp_path / "three.parquet"), tmp_path)["label_order"] == "class_label"
    datasets.Dataset.from_dict({"text": ["a", "b"], "label": [2, 0]}, features=features).to_parquet(tmp_path / "two.parquet")
    with pytest.raises(FetchError, match=r"two: no example of class\(es\) \['neutral'\]"):
        fetch("two", own(tmp_path / "two.parquet"), tmp_path)


@pytest.mark.parametrize(
    ("rows", "spec", "match"),
    [
        (
            [("a", "x"), ("b", "y")],
            {"label": "intent"},
            r"d.csv: no column 'intent' \(own_datasets.d.label\); the columns are \['text', 'label'\]",
        ),
        ([("a", "x"), ("b", "y")], {"text_pair": "reply"}, r"d.csv: no column 'reply' \(own_datasets.d.text_pair\)"),
        ([("a", "x"), ("", "y")], {}, r"d.csv: row 2: empty text in column 'text'"),
        ([("a", "x"), ("   ", "y")], {}, r"d.csv: row 2: empty text in column 'text'"),
        ([("a", "x"), ("b", "")], {}, r"d.csv: row 2: label '' in column 'label'; expected a non-empty string or an integer"),
        ([("a", "x"), ("b", "x")], {}, r"d.csv: the label column 'label' has one class \['x'\]; expected at least 2"),
        ([("1", "x"), ("2", "y")], {}, r"d.csv: row 1: column 'text' holds int 1, not text"),
    ],
)
def test_bad_csv_data_is_one_error_naming_the_file_and_nothing_is_written(tmp_path: Path, rows: list, spec: dict, match: str) -> None:
    path = write_csv(tmp_path / "d.csv", rows)
    with pytest.raises(FetchError, match=match):
        fetch("d", own(path, **spec), tmp_path)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize(
    ("rows", "match"),
    [
        ([{"text": "a", "label": "x"}, {"text": None, "label": "y"}], r"d.jsonl: row 2: empty text in column 'text'"),
        ([{"text": "a", "label": "x"}, {"text": "b", "label": None}], r"d.jsonl: row 2: label None in column 'label'"),
        ([{"text": "a", "label": 1.5}, {"text": "b", "label": 2.5}], r"d.jsonl: row 1: label 1.5 in column 'label'"),
        ([{"text": "a", "label": True}, {"text": "b", "label": False}], r"d.jsonl: row 1: label True in column 'label'"),
    ],
)
def test_bad_jsonl_data_is_one_error_naming_the_file(tmp_path: Path, rows: list, match: str) -> None:
    with pytest.raises(FetchError, match=match):
        fetch("d", own(write_jsonl(tmp_path / "d.jsonl", rows)), tmp_path)


def test_an_unreadable_file_names_the_reader(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": \n')
    with pytest.raises(FetchError, match=r"d.jsonl: `datasets` cannot read it as json"):
        fetch("d", own(tmp_path / "d.jsonl"), tmp_path)


def test_a_missing_file_fails_in_check_and_an_edit_changes_the_record(tmp_path: Path) -> None:
    spec = own("data/mine.csv")
    with pytest.raises(FetchError, match=r"own_datasets.mine.source: no file at .*data/mine.csv"):
        verify_sources(NO_SENTEVAL, ("mine",), tmp_path, tmp_path / "sources.json", own={"mine": spec})
    (tmp_path / "data").mkdir()
    write_csv(tmp_path / "data/mine.csv", [("a", "x"), ("b", "y")])
    # No SentEval copy is needed when the grid holds only datasets of your own.
    first = verify_sources(NO_SENTEVAL, ("mine",), tmp_path, tmp_path / "sources.json", own={"mine": spec})
    assert first["source"] is None and set(first["own"]["mine"]) == {"file", "sha256"}
    write_csv(tmp_path / "data/mine.csv", [("a", "x"), ("c", "y")])
    second = verify_sources(NO_SENTEVAL, ("mine",), tmp_path, tmp_path / "sources.json", own={"mine": spec})
    assert second["own"]["mine"]["sha256"] != first["own"]["mine"]["sha256"]
    with pytest.raises(FetchError, match=r"fetch.local_dir='no-such-dir': no directory"):  # a built-in still needs it
        verify_sources(NO_SENTEVAL, ("mine", "mr"), tmp_path, tmp_path / "sources.json", own={"mine": spec})


def test_a_hub_dataset_is_loaded_at_its_pinned_revision_and_split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    calls = []

    def load_dataset(path: str, **kwargs: Any) -> datasets.Dataset:
        calls.append((path, kwargs))
        return datasets.Dataset.from_dict({"q": ["a", "b", "c"], "y": ["no", "yes", "no"]})

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    card = fetch("hubbed", own("org/tickets", text="q", label="y", revision="abc123", split="validation"), tmp_path)
    assert calls == [("org/tickets", {"revision": "abc123", "split": "validation"})]
    assert (card["source"], card["location"], card["revision"], card["split"]) == ("hub", "org/tickets", "abc123", "validation")
    assert source_record("hubbed", own("org/tickets", revision="abc123", split="validation"), tmp_path) == {
        "hub": "org/tickets",
        "revision": "abc123",
        "split": "validation",
    }


def sample(params: SampleParams, labels: list[int], names: list[str], tmp_path: Path, size: int) -> dict:
    rows = [(f"s{i}", names[label]) for i, label in enumerate(labels)]
    card = fetch("d", own(write_csv(tmp_path / "d.csv", rows)), tmp_path)
    assert card["label_names"] == sorted(names)
    return write_splits(tmp_path / "out/d.jsonl", tmp_path / "out/d.card.json", params, "d", size, [0], tmp_path / "s")


def test_a_class_too_small_for_the_sample_is_named_with_its_file(tmp_path: Path) -> None:
    kfold = SampleParams(protocol="kfold", folds=4, eval_max=0, dev_ratio=0.0)
    with pytest.raises(ValueError, match=r"d \(.*d.csv\): class 'rare' has 1 example\(s\); every class needs 2"):
        sample(kfold, [0] * 30 + [1], ["common", "rare"], tmp_path, 8)
    per_class = SampleParams(protocol="per_class", folds=4, eval_max=0, dev_ratio=1.0)
    with pytest.raises(
        ValueError,
        match=r"class 'rare' has 8 example\(s\); sample.protocol=per_class, size 4 and "
        r"dev_ratio 1.0 need 9 per class",
    ):
        sample(per_class, [0] * 30 + [1] * 8, ["common", "rare"], tmp_path, 4)
    assert not (tmp_path / "s").exists()
    split = sample(per_class, [0] * 30 + [1] * 9, ["common", "rare"], tmp_path, 4)[0]
    assert np.bincount(np.asarray([0] * 30 + [1] * 9)[split["eval"]]).tolist() == [22, 1]
