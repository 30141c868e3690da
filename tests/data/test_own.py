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
    path = write_csv(tmp_path / "d.csv", [("NA", "a"), ("null", "b"), ("  two  words ", "a"), ('say "hi"', "b"), ("007", "a")])
    loaded = read_own("d", own(path), tmp_path)
    assert [r[1] for r in loaded.rows] == ["NA", "null", "  two  words ", 'say "hi"', "007"]


def test_a_quoted_cell_holding_a_line_break_is_refused_not_merged(tmp_path: Path) -> None:
    # RFC 4180 allows it, but one stray quote makes several rows one cell: one example per line.
    path = write_csv(tmp_path / "d.csv", [("fine", "a"), ("line\nbreak", "b")])
    with pytest.raises(FetchError, match=r"d.csv: row 2 \(line 3\): a cell holds a line break \('line\\nbreak'"):
        read_own("d", own(path), tmp_path)


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
        (
            [("a", "x"), ("b", "")],
            {},
            r"d.csv: row 2: label '' in column 'label' is empty or has spaces around it; expected the class name exactly",
        ),
        ([("a", "x"), ("b", "x")], {}, r"d.csv: the label column 'label' has one class \['x'\]; expected at least 2"),
        ([("a", "x"), ("b", " y")], {}, r"d.csv: row 2: label ' y' in column 'label' is empty or has spaces around it"),
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
    with pytest.raises(FetchError, match=r"d.jsonl: line 2: not valid JSON: Expecting value: .*; expected one JSON object per line"):
        fetch("d", own(tmp_path / "d.jsonl"), tmp_path)


def test_a_missing_file_fails_in_check_and_an_edit_changes_only_its_record(tmp_path: Path) -> None:
    spec, other = own("data/mine.csv"), own("data/other.csv")
    with pytest.raises(FetchError, match=r"own_datasets.mine.source: no file at .*data/mine.csv"):
        verify_sources(NO_SENTEVAL, ("mine",), tmp_path, tmp_path / "sources", own={"mine": spec})
    assert not (tmp_path / "sources").exists()  # nothing partial
    (tmp_path / "data").mkdir()
    write_csv(tmp_path / "data/mine.csv", [("a", "x"), ("b", "y")])
    write_csv(tmp_path / "data/other.csv", [("a", "x"), ("b", "y")])
    # No SentEval copy is needed when the grid holds only datasets of your own.
    first = verify_sources(NO_SENTEVAL, ("mine", "other"), tmp_path, tmp_path / "sources", own={"mine": spec, "other": other})
    assert set(first) == {"mine", "other"} and set(first["mine"]) == {"source", "file", "sha256"}
    before = {p.name: p.read_bytes() for p in (tmp_path / "sources").iterdir()}
    write_csv(tmp_path / "data/mine.csv", [("a", "x"), ("c", "y")])
    verify_sources(NO_SENTEVAL, ("mine", "other"), tmp_path, tmp_path / "sources", own={"mine": spec, "other": other})
    after = {p.name: p.read_bytes() for p in (tmp_path / "sources").iterdir()}
    # Each fetch depends on its own record: editing mine.csv re-fetches `mine` only.
    assert after["mine.json"] != before["mine.json"] and after["other.json"] == before["other.json"]
    with pytest.raises(FetchError, match=r"fetch.local_dir='no-such-dir': no directory"):  # a built-in still needs it
        verify_sources(NO_SENTEVAL, ("mine", "mr"), tmp_path, tmp_path / "sources", own={"mine": spec})


def test_a_hub_dataset_is_loaded_at_the_commit_its_revision_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets
    import huggingface_hub.constants

    calls = []

    def load_dataset(path: str, **kwargs: Any) -> datasets.Dataset:
        calls.append((path, kwargs))
        return datasets.Dataset.from_dict({"q": ["a", "b", "c"], "y": ["no", "yes", "no"]})

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    refs = tmp_path / "hub" / "datasets--org--tickets" / "refs"
    refs.mkdir(parents=True)
    (refs / "v1").write_text("1" * 40)
    card = fetch("hubbed", own("org/tickets", text="q", label="y", revision="v1", split="validation"), tmp_path)
    assert calls == [("org/tickets", {"revision": "1" * 40, "split": "validation"})]
    assert (card["source"], card["location"], card["revision"], card["commit"]) == ("hub", "org/tickets", "v1", "1" * 40)
    record = {"hub": "org/tickets", "revision": "v1", "commit": "1" * 40, "split": "validation"}
    assert source_record("hubbed", own("org/tickets", revision="v1", split="validation"), tmp_path) == record
    (refs / "v1").write_text("2" * 40)  # the tag moved: the record (a dep of fetch) changes, so fetch reruns
    assert source_record("hubbed", own("org/tickets", revision="v1", split="validation"), tmp_path)["commit"] == "2" * 40
    with pytest.raises(
        FetchError, match=r"own_datasets.hubbed: the hub dataset 'org/tickets' at revision 'main': cannot resolve it to a commit"
    ):
        source_record("hubbed", own("org/tickets", revision="main", split="validation"), tmp_path)


def test_a_source_in_the_workspace_is_never_read_as_a_hub_dataset(tmp_path: Path) -> None:
    (tmp_path / "hubish").mkdir()
    write_csv(tmp_path / "hubish" / "train.csv", [("a", "x"), ("b", "y")])
    with pytest.raises(
        FetchError,
        match=r"own_datasets.d.source: 'hubish' is a location in the workspace \(.*hubish: a folder; name the data file in it, e.g. hubish/train.csv\)",
    ):
        source_record("d", own("hubish", revision="v1"), tmp_path)
    with pytest.raises(FetchError, match=r"'hubish/more' is a location in the workspace \(.*: no such file\)"):
        fetch("d", own("hubish/more", revision="v1"), tmp_path)


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


def test_quotes_in_a_tsv_are_text_and_no_row_is_merged(tmp_path: Path) -> None:
    # The file: 40 rows, one opening with a quoted title, one opening a quote a later row closes.
    texts = [f"sentence number {i}" for i in range(40)]
    texts[3] = '"Quoted title" is a film I liked'
    texts[10] = 'He said "wait for it'
    texts[14] = 'and then it ended" said she'
    path = tmp_path / "d.tsv"
    path.write_text("text\tlabel\n" + "".join(f"{t}\t{'pos' if i % 2 else 'neg'}\n" for i, t in enumerate(texts)), encoding="utf-8")
    loaded = read_own("d", own(path), tmp_path)
    assert [text for _, text, _ in loaded.rows] == texts and len(loaded.rows) == 40


def test_a_tsv_row_with_a_tab_in_its_text_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "d.tsv"
    path.write_text("text\tlabel\ngood\tpos\nbad\tvery bad\tneg\n", encoding="utf-8")
    with pytest.raises(
        FetchError, match=r"d.tsv: row 2 \(line 3\): 3 cells, expected 2 as in the header \['text', 'label'\] \(a tab inside a text\?\)"
    ):
        read_own("d", own(path), tmp_path)


def test_a_csv_quote_that_does_not_close_its_cell_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text('text,label\ngood,pos\n"Quoted title" is a film,neg\n', encoding="utf-8")
    with pytest.raises(FetchError, match=r"d.csv: line 3: ',' expected after '\"'; expected RFC 4180 CSV quoting"):
        read_own("d", own(path), tmp_path)
    path.write_text('text,label\n"He said, wait,pos\nand then,neg\nthe end",pos\nfine,neg\n', encoding="utf-8")
    with pytest.raises(FetchError, match=r"d.csv: row 1 \(line 2\): a cell holds a line break"):
        read_own("d", own(path), tmp_path)


def test_labels_and_texts_are_compared_as_written_never_type_guessed(tmp_path: Path) -> None:
    loaded = read_own("d", own(write_csv(tmp_path / "a.csv", [("x", "01"), ("y", "1"), ("z", "2"), ("w", "1")])), tmp_path)
    assert loaded.label_names == ("01", "1", "2") and [r[0] for r in loaded.rows] == [0, 1, 2, 1]
    for labels in (["1.0", "1"], ["TRUE", "FALSE"]):
        loaded = read_own("d", own(write_csv(tmp_path / "b.csv", [("x", labels[0]), ("y", labels[1])])), tmp_path)
        assert loaded.label_names == tuple(sorted(labels))
    loaded = read_own("d", own(write_csv(tmp_path / "c.csv", [("1000", "a"), ("0.5", "b")])), tmp_path)
    assert [r[1] for r in loaded.rows] == ["1000", "0.5"]


def test_a_nan_label_in_json_lines_is_named_at_its_line(tmp_path: Path) -> None:
    lines = [json.dumps({"text": f"t{i}", "label": i % 2}) for i in range(40)] + ['{"text": "t40", "label": NaN}']
    (tmp_path / "d.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(FetchError, match=r"d.jsonl: line 41: not valid JSON: NaN is not a number JSON allows"):
        read_own("d", own(tmp_path / "d.jsonl"), tmp_path)
    (tmp_path / "d.jsonl").write_text("\n".join(lines[:40] + ['{"text": "t40", "label": 1.0}']) + "\n", encoding="utf-8")
    with pytest.raises(FetchError, match=r"d.jsonl: row 41: label 1.0 in column 'label'; expected a string or an integer"):
        read_own("d", own(tmp_path / "d.jsonl"), tmp_path)


def test_duplicates_are_kept_once_and_reported_and_a_text_with_two_labels_is_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rows = [("good", "pos"), ("bad", "neg"), ("good", "pos"), ("fine", "pos"), ("good", "pos")]
    card = fetch("d", own(write_csv(tmp_path / "d.csv", rows)), tmp_path)
    assert card["n_examples"] == 3 and card["duplicates_dropped"] == 2 and card["inputs"][0]["rows"] == 5
    assert (
        "dropped 2 duplicate row(s), each the same text and label as an earlier row (row 3 repeats row 1, row 5 repeats row 1)"
        in caplog.text
    )
    with pytest.raises(FetchError, match=r"d.csv: rows 1 and 3 hold the same text 'good' with the labels 'pos' and 'neg'"):
        read_own("d", own(write_csv(tmp_path / "d.csv", [("good", "pos"), ("bad", "neg"), ("good", "neg")])), tmp_path)
