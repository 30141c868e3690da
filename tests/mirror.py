"""A loopback mirror of the official SentEval/GLUE/TREC files, rebuilt from the local copy (for the tests)."""

from __future__ import annotations

import functools
import io
import itertools
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

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


def official_urls(base: str) -> dict[str, str]:
    """``fetch.urls`` (key -> URL) for the official files served under ``base``."""
    return {key: f"{base}/{name}" for key, name in OFFICIAL_FILES.items()}


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


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


@contextmanager
def serve(root: Path) -> Iterator[Server]:
    """A loopback HTTP server over ``root`` for the duration of the block."""
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
