"""Fetching from the shared local SentEval copy: exact counts, label maps, strict parsing, determinism."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

import pytest

from fewshot_dml.catalog.datasets import REGISTRY
from fewshot_dml.core import io
from fewshot_dml.core.errors import FetchError
from fewshot_dml.core.layout import workspace_root
from fewshot_dml.data.fetch import fetch_dataset, verify_sources
from fewshot_dml.data.table import read_table

EXPECTED = {
    "mr": ({"negative": 5331, "positive": 5331}, ["negative", "positive"]),
    "cr": ({"negative": 1366, "positive": 2405}, ["negative", "positive"]),
    "subj": ({"objective": 5000, "subjective": 5000}, ["objective", "subjective"]),
    "mpqa": ({"negative": 7292, "positive": 3311}, ["negative", "positive"]),
    "trec": (
        {"DESC": 1162, "ENTY": 1250, "ABBR": 86, "HUM": 1223, "NUM": 896, "LOC": 835},
        ["DESC", "ENTY", "ABBR", "HUM", "NUM", "LOC"],
    ),
    "mrpc": ({"not_paraphrase": 1194, "paraphrase": 2474}, ["not_paraphrase", "paraphrase"]),
}
TOTALS = {"mr": 10662, "cr": 3771, "subj": 10000, "mpqa": 10603, "trec": 5452, "mrpc": 3668}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_local_counts_and_card(kit: Any, name: str, senteval: Path, out: Any) -> None:
    card = fetch_dataset(name, kit.params(), out.table, out.card, root=kit.repo)
    counts, label_names = EXPECTED[name]
    df = read_table(out.table)
    assert len(df) == card["n_examples"] == TOTALS[name]
    assert card["class_counts"] == counts and card["label_names"] == label_names
    assert {label_names[k]: v for k, v in df["label"].value_counts().items()} == counts
    assert card["source"] == "local" and card["location"] == "../shared/senteval" and card["encoding"] == "utf-8"
    assert card["pair"] is (name == "mrpc") and ((df["text_pair"] != "").all() if name == "mrpc" else (df["text_pair"] == "").all())
    assert card["table_sha256"] == hashlib.sha256(out.table.read_bytes()).hexdigest()
    assert io.read_json(out.card) == card and out.card.read_text() == io.dumps_json(card)
    for entry in card["inputs"]:  # per file: its checksum and the examples it gave
        assert entry["sha256"] == hashlib.sha256((senteval / entry["name"]).read_bytes()).hexdigest()
    assert sum(entry["rows"] for entry in card["inputs"]) == TOTALS[name]
    # Blank lines are not examples; no text keeps trailing whitespace.
    assert not df["text"].str.strip().eq("").any() and not df["text"].str.match(r".*\s$").any()


def test_sst2_counts(kit: Any, sst2_local: tuple[Path, dict]) -> None:
    table, card = sst2_local
    assert card["n_examples"] == 67349 and card["class_counts"] == {"negative": 29780, "positive": 37569}
    assert card["inputs"][0]["name"] == "SST-2/train.tsv" and card["inputs"][0]["rows"] == 67349
    first = read_table(table).iloc[0]
    # GLUE ends every sentence with a space before the tab: stripped like any trailing whitespace.
    assert (first["text"], first["label"]) == ("hide new secretions from the parental units", 0)


def test_label_maps_follow_the_files(kit: Any, senteval: Path, out: Any) -> None:
    fetch_dataset("subj", kit.params(), out.table, out.card, root=kit.repo)
    df = read_table(out.table)
    objective = (senteval / "SUBJ/subj.objective").read_text().split("\n")[0].rstrip()
    subjective = (senteval / "SUBJ/subj.subjective").read_text().split("\n")[0].rstrip()
    assert df.loc[df["text"] == objective, "label"].tolist() == [0]
    assert df.loc[df["text"] == subjective, "label"].tolist() == [1]
    assert df["label"].tolist()[:5000] == [0] * 5000  # source order: the objective file first
    fetch_dataset("trec", kit.params(), out.table, out.card, root=kit.repo)
    trec = read_table(out.table)
    assert trec.iloc[0].tolist() == ["How did serfdom develop in and then leave Russia ?", "", 0]  # DESC
    assert trec.iloc[1].tolist() == ["What films featured the character Popeye Doyle ?", "", 1]  # ENTY


def test_mrpc_strings_with_quotes_are_kept_intact(kit: Any, senteval: Path, out: Any) -> None:
    fetch_dataset("mrpc", kit.params(), out.table, out.card, root=kit.repo)
    df = read_table(out.table)
    rows = [line.split("\t") for line in (senteval / "MRPC/train.tsv").read_text("utf-8-sig").split("\n")[1:-1]]
    assert len(rows) == len(df) == 3668
    assert df["text"].tolist() == [r[3] for r in rows] and df["text_pair"].tolist() == [r[4] for r in rows]
    assert df["label"].tolist() == [int(r[0]) for r in rows]
    quoted = df["text"].str.contains('"')
    assert quoted.sum() > 100
    assert df.loc[0, "text"] == 'Amrozi accused his brother , whom he called " the witness " , of deliberately distorting his evidence .'


def test_fetch_is_byte_identical_across_runs(kit: Any, senteval: Path, tmp_path: Path) -> None:
    for name in ("mrpc", "cr"):
        a, b = tmp_path / "a", tmp_path / "b"
        fetch_dataset(name, kit.params(), a / "t.jsonl", a / "c.json", root=kit.repo)
        fetch_dataset(name, kit.params(), b / "t.jsonl", b / "c.json", root=kit.repo)
        assert (a / "t.jsonl").read_bytes() == (b / "t.jsonl").read_bytes()
        assert (a / "c.json").read_bytes() == (b / "c.json").read_bytes()


def _layout(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (root / "copy" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "copy" / name).write_bytes(data)


def test_small_layout_blank_lines_and_local_dir_relative_to_root(kit: Any, tmp_path: Path, out: Any) -> None:
    _layout(tmp_path, {"MR/rt-polarity.neg": b"bad one . \n\n   \nworse\r\n", "MR/rt-polarity.pos": b"\n good \t\n"})
    registry = kit.with_local("mr", n_examples=3)
    card = fetch_dataset("mr", kit.params("copy"), out.table, out.card, root=tmp_path, registry=registry)
    df = read_table(out.table)
    assert df["text"].tolist() == ["bad one .", "worse", " good"] and df["label"].tolist() == [0, 0, 1]
    assert card["location"] == "copy" and [i["rows"] for i in card["inputs"]] == [2, 1]


def test_latin1_local_copy_is_decoded_and_recorded(kit: Any, tmp_path: Path, out: Any) -> None:
    _layout(tmp_path, {"MR/rt-polarity.neg": "caf\xe9 \x85 na\xefve\n".encode("latin-1"), "MR/rt-polarity.pos": b"fine\n"})
    card = fetch_dataset("mr", kit.params("copy"), out.table, out.card, root=tmp_path, registry=kit.with_local("mr", n_examples=2))
    assert card["encoding"] == "latin-1"
    assert read_table(out.table)["text"].tolist() == ["caf\xe9 \x85 na\xefve", "fine"]  # \x85 is no line break


MRPC_HEAD = "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"


@pytest.mark.parametrize(
    ("files", "match"),
    [
        ({"MRPC/train.tsv": MRPC_HEAD + "1\t1\t2\ta\n"}, r"MRPC/train\.tsv:2: expected 5 tab-separated fields, got 4"),
        ({"MRPC/train.tsv": MRPC_HEAD + "yes\t1\t2\ta\tb\n"}, r"MRPC/train\.tsv:2: label 'yes' is not an integer in 0\.\.1"),
        ({"MRPC/train.tsv": MRPC_HEAD + "1\t1\t2\t \tb\n"}, r"MRPC/train\.tsv:2: field 4 is empty"),
        ({"MRPC/train.tsv": "Quality\t#1 String\n1\ta\n"}, r"MRPC/train\.tsv:1: expected the header"),
        (
            {"MRPC/train.tsv": MRPC_HEAD.encode() + b"1\t1\t2\t\xff\tb\n"},
            r"MRPC/train\.tsv: not valid utf-8 \(byte 0xff at offset 49\); tried encodings \[.utf-8.\]",
        ),
        ({"SST-2/train.tsv": "sentence\tlabel\ngood \t1\nbad\t+1\n"}, r"SST-2/train\.tsv:3: label '\+1' is not an integer"),
        ({"TREC/trec.tsv": "Who ?\t6\n"}, r"TREC/trec\.tsv:1: label '6' is not an integer in 0\.\.5"),
        ({"MR/rt-polarity.neg": "a\n"}, r"mr: missing file .*copy/MR/rt-polarity\.pos in the local copy"),
        ({"MR/rt-polarity.neg": "a\n", "MR/rt-polarity.pos": "\n\n"}, r"rt-polarity\.pos holds no examples"),
        ({"MR/rt-polarity.neg": "a\nb\n", "MR/rt-polarity.pos": "c\n"}, r"mr: read 3 examples from .*copy, expected exactly 10662"),
    ],
)
def test_local_errors_leave_nothing(kit: Any, tmp_path: Path, out: Any, files: dict, match: str) -> None:
    _layout(tmp_path, {k: v.encode() if isinstance(v, str) else v for k, v in files.items()})
    name = {"MRPC": "mrpc", "SST-2": "sst2", "TREC": "trec", "MR": "mr"}[next(iter(files)).split("/")[0]]
    registry = kit.with_local(name, n_examples=REGISTRY[name].local.n_examples)
    with pytest.raises(FetchError, match=match):
        fetch_dataset(name, kit.params("copy"), out.table, out.card, root=tmp_path, registry=registry)
    kit.assert_nothing_written(out.dir)


def test_unknown_dataset_lists_the_valid_ones(kit: Any, out: Any) -> None:
    with pytest.raises(FetchError, match=r"unknown dataset 'imdb'; expected one of \['mr', 'cr', 'subj', 'mpqa', 'sst2', 'trec', 'mrpc'\]"):
        fetch_dataset("imdb", kit.params(), out.table, out.card, root=kit.repo)
    kit.assert_nothing_written(out.dir)


def _copy_of_shared(senteval: Path, root: Path) -> Path:
    """A byte copy of the shared SentEval copy under ``root``/copy (deleted with tmp_path)."""
    for path in senteval.rglob("*"):
        if path.is_file():
            (root / "copy" / path.relative_to(senteval)).parent.mkdir(parents=True, exist_ok=True)
            (root / "copy" / path.relative_to(senteval)).write_bytes(path.read_bytes())
    return root / "copy"


def _replace_line(path: Path, number: int, new: bytes) -> None:
    lines = path.read_bytes().split(b"\n")
    lines[number] = new
    path.write_bytes(b"\n".join(lines))


@pytest.mark.parametrize(
    ("file", "edit"),
    [
        ("MR/rt-polarity.pos", lambda p: _replace_line(p, 10, b"@@ garbage @@")),  # a line replaced by garbage
        ("TREC/trec.tsv", lambda p: _replace_line(p, 0, p.read_bytes().split(b"\n")[0][:-1] + b"1")),  # a label changed
        ("SST-2/train.tsv", lambda p: p.write_bytes(p.read_bytes()[:-7])),  # cut inside its last line
    ],
)
def test_an_edited_local_copy_is_refused_naming_file_and_checksums(
    kit: Any, senteval: Path, tmp_path: Path, out: Any, file: str, edit: Any
) -> None:
    copy = _copy_of_shared(senteval, tmp_path)
    edit(copy / file)
    name = {"MR": "mr", "TREC": "trec", "SST-2": "sst2"}[file.split("/")[0]]
    pinned = next(p.sha256 for p in REGISTRY[name].local.parts if p.path == file)
    match = rf"copy/{re.escape(file)}: sha256 [0-9a-f]{{64}} does not match the pinned {pinned}"
    with pytest.raises(FetchError, match=match):
        fetch_dataset(name, kit.params("copy"), out.table, out.card, root=tmp_path)
    kit.assert_nothing_written(out.dir)
    with pytest.raises(FetchError, match=match):  # the check stage refuses it too, whatever the grid
        verify_sources(kit.params("copy"), ("cr",), tmp_path, out.dir / "sources")
    kit.assert_nothing_written(out.dir)


def test_verified_sources_do_not_depend_on_the_grid(kit: Any, senteval: Path, tmp_path: Path) -> None:
    one = verify_sources(kit.params(), ("trec",), kit.repo, tmp_path / "a")
    every = verify_sources(kit.params(), tuple(REGISTRY), kit.repo, tmp_path / "b")
    assert one == every and sorted(p.name for p in (tmp_path / "a").iterdir()) == [f"{name}.json" for name in sorted(REGISTRY)]
    assert all((tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes() for name in os.listdir(tmp_path / "a"))
    assert one["mrpc"] == {"source": "local", "files": {"MRPC/train.tsv": REGISTRY["mrpc"].local.parts[0].sha256}}


def test_a_missing_local_copy_is_an_error_unless_downloads_are_allowed(kit: Any, tmp_path: Path, out: Any) -> None:
    match = (
        r"fetch\.local_dir='sentevall': no directory at .*/sentevall; expected the SentEval copy there, "
        r"or set fetch\.download: true"
    )
    with pytest.raises(FetchError, match=match):
        fetch_dataset("trec", kit.params("sentevall"), out.table, out.card, root=tmp_path)
    with pytest.raises(FetchError, match=match):
        verify_sources(kit.params("sentevall"), ("trec",), tmp_path, out.dir / "sources")
    kit.assert_nothing_written(out.dir)
    record = verify_sources(kit.params("sentevall", download=True), ("trec",), tmp_path, out.dir / "sources")["trec"]
    assert record["source"] == "official" and record["urls"]["trec"].endswith("/train_5500.label")


def test_relative_local_dir_resolves_against_the_workspace_of_a_dvc_temp_run(kit: Any, tmp_path: Path) -> None:
    workspace = tmp_path / "repo"
    for temp in (workspace / ".dvc/tmp/exps/standalone/tmpa1b2", workspace / ".dvc/tmp/exps/tmpx9"):
        temp.mkdir(parents=True)
        assert workspace_root(temp) == workspace.resolve()
    assert workspace_root(workspace) == workspace.resolve()
    _layout(tmp_path, {"MR/rt-polarity.neg": b"a\n", "MR/rt-polarity.pos": b"b\n"})
    temp = workspace / ".dvc/tmp/exps/standalone/tmpa1b2"
    card = fetch_dataset(
        "mr", kit.params("../copy"), temp / "t.jsonl", temp / "c.json", root=temp, registry=kit.with_local("mr", n_examples=2)
    )
    assert card["source"] == "local" and card["n_examples"] == 2


def test_every_registered_dataset_pins_its_files_and_table() -> None:
    for name, spec in REGISTRY.items():
        assert spec.table_sha256 and len(spec.table_sha256) == 64, name
        assert all(part.sha256 and len(part.sha256) == 64 for part in spec.local.parts), name
        # A download without a published checksum is still verified through the table pin.
        assert spec.official.url_key is not None, name
