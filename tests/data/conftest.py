"""Fixtures for the data tests: fetch parameters, registry edits and outputs (the shared SentEval copy and the
loopback server are tests/conftest.py's)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from fewshot_dml.catalog.datasets import REGISTRY, DatasetSpec, Exclusion
from fewshot_dml.config.sections import FetchParams, FetchUrls
from fewshot_dml.data.fetch import fetch_dataset
from mirror import official_urls, zip_bytes

REPO = Path(__file__).resolve().parents[2]
LOCAL_DIR = "../shared/senteval"  # params.yaml's fetch.local_dir, relative to the repository root


def fetch_params(
    local_dir: str = LOCAL_DIR, *, base: str = "http://127.0.0.1:9/unused", download: bool = False, timeout_s: float = 5.0, retries: int = 0
) -> FetchParams:
    """FetchParams whose ``urls`` are the official file names under ``base``."""
    urls = FetchUrls(**official_urls(base))
    return FetchParams(local_dir=local_dir, download=download, urls=urls, timeout_s=timeout_s, retries=retries)


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
def sst2_local(senteval: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """SST-2 (67k rows) fetched once from the shared copy: (table path, card)."""
    raw = tmp_path_factory.mktemp("sst2-local")
    card = fetch_dataset("sst2", fetch_params(), raw / "sst2.jsonl", raw / "sst2.card.json", root=REPO)
    return raw / "sst2.jsonl", card
