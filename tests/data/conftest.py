"""Fixtures for the data tests: the shared SentEval copy, and a loopback server for the official path."""

from __future__ import annotations

import functools
import hashlib
import io
import itertools
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from fewshot_dml.catalog.datasets import REGISTRY, DatasetSpec, Exclusion
from fewshot_dml.config.sections import FetchParams, FetchUrls
from fewshot_dml.data.fetch import fetch_dataset

REPO = Path(__file__).resolve().parents[2]
LOCAL_DIR = "../shared/senteval"  # params.yaml's fetch.local_dir, relative to the repository root
SENTEVAL = REPO / LOCAL_DIR

# SentEval's archive layout, written here independently of the registry so the two cross-check.
SENTEVAL_MEMBERS = {
    "MR/rt-polarity.neg": "data/rt10662/rt-polarity.neg",
    "MR/rt-polarity.pos": "data/rt10662/rt-polarity.pos",
    "CR/custrev.neg": "data/customerr/custrev.neg",
    "CR/custrev.pos": "data/customerr/custrev.pos",
    "SUBJ/subj.objective": "data/subj/subj.objective",
    "SUBJ/subj.subjective": "data/subj/subj.subjective",
    "MPQA/mpqa.neg": "data/mpqa/mpqa.neg",
    "MPQA/mpqa.pos": "data/mpqa/mpqa.pos",
}
TREC_FINE = ("DESC:def", "ENTY:other", "ABBR:exp", "HUM:ind", "NUM:count", "LOC:city")


# The official file names, as fetch.urls keys: a test server serves them under one base URL.
OFFICIAL_FILES = {
    "senteval_small": "datasmall_NB_ACL12.zip",
    "sst2": "SST-2.zip",
    "trec": "train_5500.label",
    "mrpc": "msr_paraphrase_train.txt",
    "mrpc_dev_ids": "mrpc_dev_ids.tsv",
}


def fetch_params(
    local_dir: str = LOCAL_DIR, *, base: str = "http://127.0.0.1:9/unused", download: bool = False, timeout_s: float = 5.0, retries: int = 0
) -> FetchParams:
    """FetchParams whose ``urls`` are the official file names under ``base``."""
    urls = FetchUrls(**{key: f"{base}/{name}" for key, name in OFFICIAL_FILES.items()})
    return FetchParams(local_dir=local_dir, download=download, urls=urls, timeout_s=timeout_s, retries=retries)


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


class Kit:
    """Helpers for the data tests, handed out as the ``kit`` fixture (test modules import no conftest)."""

    repo = REPO
    local_dir = LOCAL_DIR
    params = staticmethod(fetch_params)
    zip_bytes = staticmethod(zip_bytes)

    @staticmethod
    def sha256(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()

    @staticmethod
    def with_official(name: str, *, table_pin: bool = True, **changes: object) -> dict[str, DatasetSpec]:
        """The registry with ``name``'s official source changed (pins, expected count); the table pin
        is kept unless ``table_pin`` is false (synthetic data)."""
        spec = REGISTRY[name]
        table = spec.table_sha256 if table_pin else None
        return {**REGISTRY, name: replace(spec, official=replace(spec.official, **changes), table_sha256=table)}

    @staticmethod
    def with_local(name: str, **changes: object) -> dict[str, DatasetSpec]:
        """The registry with ``name``'s local source changed and unpinned (for synthetic files)."""
        spec = REGISTRY[name]
        parts = tuple(replace(part, sha256=None) for part in spec.local.parts)
        local = replace(spec.local, parts=parts, **changes)
        return {**REGISTRY, name: replace(spec, local=local, table_sha256=None)}

    @staticmethod
    def exclusion(data: bytes) -> Exclusion:
        return Exclusion("mrpc_dev_ids", hashlib.sha256(data).hexdigest())

    @staticmethod
    def assert_nothing_written(directory: Path) -> None:
        """No table, card or temporary file was left behind."""
        left = sorted(p.name for p in directory.iterdir()) if directory.exists() else []
        assert left == [], f"files left in {directory}: {left}"


@pytest.fixture(scope="session")
def kit() -> type[Kit]:
    return Kit


@dataclass(frozen=True)
class Outputs:
    dir: Path
    table: Path
    card: Path


@pytest.fixture
def out(tmp_path: Path) -> Outputs:
    raw = tmp_path / "raw"
    return Outputs(raw, raw / "ds.jsonl", raw / "ds.card.json")


@pytest.fixture(scope="session")
def senteval() -> Path:
    if not SENTEVAL.is_dir():
        pytest.skip(f"the local SentEval copy is absent: {SENTEVAL} (these tests read it, never copy it)")
    return SENTEVAL


@pytest.fixture(scope="session")
def sst2_local(senteval: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """SST-2 (67k rows) fetched once from the shared copy: (table path, card)."""
    raw = tmp_path_factory.mktemp("sst2-local")
    card = fetch_dataset("sst2", fetch_params(), raw / "sst2.jsonl", raw / "sst2.card.json", root=REPO)
    return raw / "sst2.jsonl", card


def msr_train_file(senteval: Path, every: int = 9) -> tuple[bytes, bytes]:
    """MSR's train file rebuilt from the local GLUE split, with a made-up pair inserted after every
    ``every``-th row, and the dev-ids file that lists the inserted pairs (GLUE's construction)."""
    lines = (senteval / "MRPC/train.tsv").read_text("utf-8").split("\n")
    head, rows = lines[0], [line for line in lines[1:] if line]
    out, dev = [head], []
    for i, row in enumerate(rows, start=1):
        out.append(row)
        if i % every == 0:
            ids = (str(9_000_000 + 2 * i), str(9_000_001 + 2 * i))
            out.append(f"0\t{ids[0]}\t{ids[1]}\tAn inserted dev sentence {i} .\tIts pair {i} .")
            dev.append("\t".join(ids))
    return ("\n".join(out) + "\n").encode("utf-8"), ("\n".join(dev) + "\n").encode("utf-8")


def official_files(senteval: Path) -> dict[str, bytes]:
    """The official files, rebuilt from the local copy in the official layouts and encodings."""
    latin1 = {m: (senteval / f).read_text("utf-8").encode("latin-1") for f, m in SENTEVAL_MEMBERS.items()}
    trec_lines = []
    for line in (senteval / "TREC/trec.tsv").read_text("utf-8").splitlines():
        question, label = line.split("\t")
        trec_lines.append(f"{TREC_FINE[int(label)]} {question}\n")
    return {
        "datasmall_NB_ACL12.zip": zip_bytes(latin1),
        "SST-2.zip": zip_bytes({"SST-2/train.tsv": (senteval / "SST-2/train.tsv").read_bytes()}),
        "train_5500.label": "".join(trec_lines).encode("latin-1"),
        **dict(zip(("msr_paraphrase_train.txt", "mrpc_dev_ids.tsv"), msr_train_file(senteval), strict=True)),
    }


class Server:
    """A loopback HTTP server over a directory; ``put`` adds files under a fresh folder."""

    def __init__(self, root: Path, url: str) -> None:
        self.root = root
        self.url = url
        self._ids = itertools.count()

    def put(self, files: dict[str, bytes]) -> str:
        """Serve ``files`` (name -> bytes) under a new folder; return that folder's base URL."""
        folder = f"f{next(self._ids)}"
        for name, data in files.items():
            (self.root / folder).mkdir(exist_ok=True)
            (self.root / folder / name).write_bytes(data)
        return f"{self.url}/{folder}"


class _Handler(SimpleHTTPRequestHandler):
    """Serves files; ``/flaky/<path>`` answers 503 the first time each path is asked for."""

    seen: set[str]
    lock: threading.Lock

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path == "/truncated":  # promises more bytes than it sends, then hangs up
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"only ten b")
            self.close_connection = True
            return
        if self.path.startswith("/flaky/"):
            with self.lock:
                first = self.path not in self.seen
                self.seen.add(self.path)
            if first:
                self.send_error(503, "try again")
                return
            self.path = self.path[len("/flaky") :]
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (overridden signature)
        pass


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("served")
    handler = type("Handler", (_Handler,), {"seen": set(), "lock": threading.Lock()})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield Server(root, f"http://127.0.0.1:{httpd.server_address[1]}")
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="session")
def official(server: Server, senteval: Path) -> tuple[str, dict[str, bytes]]:
    """(base URL, files) of the official files served from the loopback server."""
    files = official_files(senteval)
    return server.put(files), files
