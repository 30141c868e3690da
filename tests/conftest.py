"""Shared fixtures, built once per test session: tiny randomly initialised checkpoints, the shared SentEval copy
and a loopback mirror of its official files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mirror import Server, official_files, serve
from tiny_models import build_tiny_bert, build_tiny_roberta

SENTEVAL = Path(__file__).resolve().parents[1].parent / "shared" / "senteval"  # params.yaml's fetch.local_dir


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide BERT with a small WordPiece vocabulary (AutoModel/AutoTokenizer loadable)."""
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_roberta_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide RoBERTa with a small byte-level BPE (AutoModel/AutoTokenizer loadable)."""
    return build_tiny_roberta(tmp_path_factory.mktemp("tiny-roberta"))


@pytest.fixture(scope="session")
def senteval() -> Path:
    if not SENTEVAL.is_dir():
        pytest.skip(f"the local SentEval copy is absent: {SENTEVAL} (these tests read it, never copy it)")
    return SENTEVAL


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A loopback HTTP server; ``server.put`` serves files under a fresh folder."""
    with serve(tmp_path_factory.mktemp("served")) as running:
        yield running


@pytest.fixture(scope="session")
def official(server: Server, senteval: Path) -> tuple[str, dict[str, bytes]]:
    """(base URL, files) of the official files served from the loopback server."""
    files = official_files(senteval)
    return server.put(files), files
