"""The official download path, for real, against a loopback HTTP server serving the official layouts."""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fewshot_dml.core.errors import FetchError
from fewshot_dml.data.fetch import fetch_dataset
from fewshot_dml.data.official import download

FILES = {
    "mr": "datasmall_NB_ACL12.zip",
    "cr": "datasmall_NB_ACL12.zip",
    "subj": "datasmall_NB_ACL12.zip",
    "mpqa": "datasmall_NB_ACL12.zip",
    "sst2": "SST-2.zip",
    "trec": "train_5500.label",
    "mrpc": "msr_paraphrase_train.txt",
}
ENCODINGS = {"sst2": "utf-8", "mrpc": "utf-8"}  # the others are latin-1 at the source


@pytest.fixture(autouse=True)
def download_area(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Downloads go to a temporary area of this test, which must be empty again afterwards."""
    area = tmp_path / "tmp"
    area.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(area))
    yield area
    assert list(area.iterdir()) == [], "a download was left behind"


def _fetch(kit: Any, out: Any, name: str, base_url: str, registry: Any = None, **params: Any) -> dict:
    """Fetch with no local copy (``absent`` under the test's root) from fetch.urls under ``base_url``."""
    fetch = kit.params("absent", base=base_url, download=True, **params)
    return fetch_dataset(name, fetch, out.table, out.card, root=out.dir.parent, registry=registry)


@pytest.mark.parametrize("name", list(FILES))
def test_official_gives_the_same_table_as_the_local_copy(
    kit: Any, out: Any, name: str, official: tuple[str, dict], sst2_local: tuple[Path, dict], tmp_path: Path
) -> None:
    base, files = official
    served = files[FILES[name]]
    # Pin the served files' checksums (so their verification passes); the table keeps its real pin.
    # MSR's file holds more pairs than GLUE's split: the dev-ids file names the ones to drop.
    changes: dict[str, Any] = {"sha256": kit.sha256(served)}
    if name == "mrpc":
        changes["exclude"] = kit.exclusion(files["mrpc_dev_ids.tsv"])
    card = _fetch(kit, out, name, base, kit.with_official(name, **changes))
    if name == "sst2":
        local_table, local_card = sst2_local
    else:
        local_table = tmp_path / "local.jsonl"
        local_card = fetch_dataset(name, kit.params(), local_table, tmp_path / "local.json", root=kit.repo)
    assert out.table.read_bytes() == local_table.read_bytes()
    url = f"{base}/{FILES[name]}"
    assert card["source"] == "official" and card["location"] == [url]
    assert card["encoding"] == ENCODINGS.get(name, "latin-1")
    inputs = [{"name": url, "sha256": kit.sha256(served), "rows": local_card["n_examples"]}]
    if name == "mrpc":
        dev = files["mrpc_dev_ids.tsv"]
        inputs.append({"name": f"{base}/mrpc_dev_ids.tsv", "sha256": kit.sha256(dev), "excluded_pairs": 407})
    assert card["inputs"] == inputs
    same = ("n_examples", "class_counts", "label_names", "pair", "table_sha256", "dataset")
    assert {k: card[k] for k in same} == {k: local_card[k] for k in same}


def test_latin1_archive_is_decoded_as_latin1(kit: Any, out: Any, server: Any) -> None:
    members = {"data/rt10662/rt-polarity.neg": "caf\xe9 \x85 na\xefve \n\nbad\n", "data/rt10662/rt-polarity.pos": "good\n"}
    base = server.put({"datasmall_NB_ACL12.zip": kit.zip_bytes({k: v.encode("latin-1") for k, v in members.items()})})
    card = _fetch(kit, out, "mr", base, kit.with_official("mr", n_examples=3, table_pin=False))
    assert card["encoding"] == "latin-1" and card["class_counts"] == {"negative": 2, "positive": 1}
    # split("\n"): \x85 (NEL) is text here, not a line break.
    assert out.table.read_text("utf-8").split("\n")[0] == '{"label": 0, "text": "caf\xe9 \x85 na\xefve", "text_pair": ""}'


def test_retries_after_a_server_error(kit: Any, out: Any, official: tuple[str, dict], server: Any, caplog: Any) -> None:
    data = official[1]["train_5500.label"]
    registry = kit.with_official("trec", sha256=kit.sha256(data))
    # /flaky/<path> answers 503 to the first request for each path, then serves the file.
    first, second = (server.put({"train_5500.label": data}).replace(server.url, server.url + "/flaky") for _ in "ab")
    with pytest.raises(FetchError, match=r"/flaky/f\d+/train_5500\.label: unreachable after 1 attempt\(s\): HTTP 503"):
        _fetch(kit, out, "trec", first, registry, retries=0)
    kit.assert_nothing_written(out.dir)
    assert _fetch(kit, out, "trec", second, registry, retries=1)["n_examples"] == 5452  # waits 1 s
    assert "attempt 1 of 2 failed (HTTP 503" in caplog.text


def test_shipped_urls_are_the_official_addresses() -> None:
    from fewshot_dml.config.params import load_params

    urls = vars(load_params(Path(__file__).resolve().parents[2] / "params.yaml").fetch.urls)
    assert {key: url.rsplit("/", 1)[-1] for key, url in urls.items()} == {
        "senteval_small": "datasmall_NB_ACL12.zip",
        "sst2": "SST-2.zip",
        "trec": "train_5500.label",
        "mrpc": "msr_paraphrase_train.txt",
        "mrpc_dev_ids": "mrpc_dev_ids.tsv",
    }
    assert all(url.startswith("https://") for url in urls.values())


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


NO_PIN = {"sha256": None}
MRPC_HEAD = "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
# id: (dataset, what the server holds, registry changes, expected message). A dict of bytes is served
# as files; a nested dict becomes a zip archive.
ERRORS: dict[str, tuple[str, Any, dict, str]] = {
    "404": ("mr", "missing", {}, r"/missing/datasmall_NB_ACL12\.zip: HTTP 404"),
    "pin-wrong": ("mr", "official", {"sha256": "0" * 64}, r"datasmall_NB_ACL12\.zip: sha256 [0-9a-f]{64} does not match the pinned 0{64}"),
    "pin-real": ("trec", "official", {}, r"train_5500\.label: sha256 [0-9a-f]{64} does not match the pinned 9e4c8bdc"),
    "count-off": (
        "mrpc",
        "official",
        NO_PIN | {"exclude": None},
        r"mrpc: read 4075 examples from http://127\.0\.0\.1:\d+/f0/msr_paraphrase_train\.txt, expected exactly 3668",
    ),
    "dev-ids-pin": ("mrpc", "official", NO_PIN, r"mrpc_dev_ids\.tsv: sha256 [0-9a-f]{64} does not match the pinned 971d7767"),
    "dev-ids-absent": (
        "mrpc",
        {"msr_paraphrase_train.txt": (MRPC_HEAD + "1\t1\t2\ta\tb\n").encode(), "mrpc_dev_ids.tsv": b"3\t4\n"},
        NO_PIN | {"exclude": "served"},
        r"msr_paraphrase_train\.txt: 1 excluded pair\(s\) do not occur, e\.g\. \('3', '4'\)",
    ),
    "dev-ids-format": (
        "mrpc",
        {"msr_paraphrase_train.txt": (MRPC_HEAD + "1\t1\t2\ta\tb\n").encode(), "mrpc_dev_ids.tsv": b"3 4\n"},
        NO_PIN | {"exclude": "served"},
        r"mrpc_dev_ids\.tsv:1: expected 2 tab-separated fields, got 1",
    ),
    "table-pin": (
        "trec",
        {"train_5500.label": "swapped"},
        NO_PIN,
        r"trec: the table read from .*train_5500\.label has sha256 [0-9a-f]{64}, not the pinned b7fffb3f",
    ),
    "trec-no-colon": (
        "trec",
        {"train_5500.label": b"DESC:def What ?\nHUMind Who ?\n"},
        NO_PIN,
        r"train_5500\.label:2: expected 'COARSE:fine question', got 'HUMind Who \?'",
    ),
    "trec-coarse": (
        "trec",
        {"train_5500.label": b"FOO:bar What ?\n"},
        NO_PIN,
        r"train_5500\.label:1: unknown coarse class 'FOO'; expected one of \['DESC'",
    ),
    "mrpc-fields": (
        "mrpc",
        {"msr_paraphrase_train.txt": (MRPC_HEAD + "1\t2\t3\ta\n").encode()},
        NO_PIN | {"exclude": None},
        r"msr_paraphrase_train\.txt:2: expected 5 tab-separated fields, got 4",
    ),
    "sst2-label": (
        "sst2",
        {"SST-2.zip": {"SST-2/train.tsv": b"sentence\tlabel\nok\t1.0\n"}},
        NO_PIN,
        r"SST-2\.zip!SST-2/train\.tsv:2: label '1\.0' is not an integer in 0\.\.1",
    ),
    "not-zip": ("sst2", {"SST-2.zip": b"PK not a zip"}, NO_PIN, r"SST-2\.zip: not a valid zip archive"),
    "no-member": (
        "sst2",
        {"SST-2.zip": {"SST-2/dev.tsv": b"x"}},
        NO_PIN,
        r"SST-2\.zip: the archive has no member 'SST-2/train\.tsv'; it holds \['SST-2/dev\.tsv'\]",
    ),
    "refused": (
        "mr",
        "closed",
        {},
        r"127\.0\.0\.1:\d+/x/datasmall_NB_ACL12\.zip: unreachable after 1 attempt\(s\): .*[Cc]onnection refused",
    ),
    "bad-url": ("sst2", "ftp-nope://x", {}, r"ftp-nope://x/SST-2\.zip: not a valid URL; expected one of the schemes"),
}


def _swap_two_labels(data: bytes) -> bytes:
    """The TREC file with the coarse classes of its first two questions swapped (format still valid)."""
    first, second, *rest = data.split(b"\n")
    (a, qa), (b, qb) = first.split(b" ", 1), second.split(b" ", 1)
    return b"\n".join([b + b" " + qa, a + b" " + qb, *rest])


def _base_url(where: Any, kit: Any, server: Any, official: tuple[str, dict]) -> str:
    if isinstance(where, dict):
        files = {name: _swap_two_labels(official[1][name]) if d == "swapped" else d for name, d in where.items()}
        return server.put({name: kit.zip_bytes(d) if isinstance(d, dict) else d for name, d in files.items()})
    if where == "closed":
        return f"http://127.0.0.1:{_closed_port()}/x"
    return {"official": official[0], "missing": official[0] + "/missing"}.get(where, where)


@pytest.mark.parametrize("case", list(ERRORS))
def test_official_errors_leave_nothing(kit: Any, out: Any, official: tuple[str, dict], server: Any, case: str) -> None:
    name, where, changes, match = ERRORS[case]
    if changes.get("exclude") == "served":
        changes = changes | {"exclude": kit.exclusion(where["mrpc_dev_ids.tsv"])}
    with pytest.raises(FetchError, match=match):
        _fetch(kit, out, name, _base_url(where, kit, server, official), kit.with_official(name, **changes))
    kit.assert_nothing_written(out.dir)


def test_a_file_url_works_as_a_mirror(kit: Any, out: Any, official: tuple[str, dict], server: Any) -> None:
    base = official[0].replace(server.url, server.root.as_uri())
    exclude = kit.exclusion(official[1]["mrpc_dev_ids.tsv"])
    card = _fetch(kit, out, "mrpc", base, kit.with_official("mrpc", sha256=None, exclude=exclude))
    assert card["location"] == [f"{base}/msr_paraphrase_train.txt"] and card["n_examples"] == 3668


def test_timeout_is_reported(kit: Any, out: Any) -> None:
    with socket.socket() as sock:  # accepts connections (backlog) but never answers
        sock.bind(("127.0.0.1", 0))
        sock.listen(4)
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        with pytest.raises(FetchError, match=r"SST-2\.zip: unreachable after 1 attempt\(s\): .*timed out"):
            _fetch(kit, out, "sst2", base, timeout_s=0.3)
    kit.assert_nothing_written(out.dir)


def test_download_streams_and_rejects_a_truncated_body(kit: Any, official: tuple[str, dict], server: Any, tmp_path: Path) -> None:
    base, files = official
    dest = tmp_path / "d"
    assert download(f"{base}/train_5500.label", dest, timeout_s=5, retries=0) == kit.sha256(files["train_5500.label"])
    assert dest.read_bytes() == files["train_5500.label"]
    with pytest.raises(FetchError, match=r"/truncated: unreachable after 2 attempt\(s\): .*IncompleteRead"):
        download(f"{server.url}/truncated", dest, timeout_s=5, retries=1, backoff_s=0)
    assert not dest.exists()
