"""Download a dataset from its official address: stream to a temporary file, verify, unpack, parse.

Nothing is written next to the outputs: downloads live in a temporary directory that is removed
whatever happens, so a failed fetch leaves no trace in ``data/raw``.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import replace
from functools import partial
from pathlib import Path

from tqdm import tqdm

from fewshot_dml.catalog.datasets import DatasetSpec, Loaded, Source, parse_parts
from fewshot_dml.catalog.parsers import decode_parts, parse_id_pairs
from fewshot_dml.config.sections import FetchParams
from fewshot_dml.core.errors import FetchError

log = logging.getLogger(__name__)

CHUNK = 1 << 16
SCHEMES = ("https", "http", "file")  # file: an official file already downloaded by hand


def official_url(params: FetchParams, key: str) -> str:
    """The address of official file ``key`` (a field of ``fetch.urls``)."""
    return getattr(params.urls, key)


def download(url: str, dest: Path, *, timeout_s: float, retries: int, backoff_s: float = 1.0) -> str:
    """Stream ``url`` into ``dest``; return its sha256. Retries ``retries`` more times on network
    errors and HTTP 5xx/429 (waiting ``backoff_s`` x attempt); other HTTP errors fail at once."""
    if urllib.parse.urlsplit(url).scheme not in SCHEMES:
        raise FetchError(f"{url}: not a valid URL; expected one of the schemes {list(SCHEMES)}")
    problem = ""
    for attempt in range(1, retries + 2):
        try:
            return _stream(url, dest, timeout_s)
        except ValueError as err:  # e.g. a malformed host or port: retrying cannot help
            raise FetchError(f"{url}: not a valid URL ({err})") from None
        except urllib.error.HTTPError as err:
            if err.code < 500 and err.code != 429:
                raise FetchError(f"{url}: HTTP {err.code} {err.reason}") from None
            problem = f"HTTP {err.code} {err.reason}"
        except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
            problem = str(getattr(err, "reason", None) or err) or type(err).__name__
        dest.unlink(missing_ok=True)
        if attempt <= retries:
            log.warning("%s: attempt %d of %d failed (%s); retrying", url, attempt, retries + 1, problem)
            time.sleep(backoff_s * attempt)
    raise FetchError(f"{url}: unreachable after {retries + 1} attempt(s): {problem}")


def _stream(url: str, dest: Path, timeout_s: float) -> str:
    digest = hashlib.sha256()
    written = 0
    with urllib.request.urlopen(url, timeout=timeout_s) as response, dest.open("wb") as out:
        length = response.headers.get("Content-Length")
        expected = int(length) if length and length.isdecimal() else None
        with tqdm(total=expected, unit="B", unit_scale=True, desc=dest.name, disable=None, leave=False) as bar:
            while chunk := response.read(CHUNK):
                out.write(chunk)
                digest.update(chunk)
                written += len(chunk)
                bar.update(len(chunk))
    if expected is not None and written < expected:
        raise http.client.IncompleteRead(b"", expected - written)
    return digest.hexdigest()


def _read_member(path: Path, member: str, url: str) -> bytes:
    """The bytes of ``member`` in the zip archive at ``path`` ("" = the downloaded file itself)."""
    if not member:
        return path.read_bytes()
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if member not in names:
                raise FetchError(f"{url}: the archive has no member {member!r}; it holds {names[:20]}")
            return archive.read(member)
    except zipfile.BadZipFile as err:
        raise FetchError(f"{url}: not a valid zip archive ({err})") from None


def _fetch_file(url: str, tmp: str, params: FetchParams, pinned: str | None) -> tuple[Path, str]:
    """Download ``url`` into ``tmp``; check the pinned sha256 (if any); return (path, sha256)."""
    path = Path(tmp) / (urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1] or "download")
    log.info("downloading %s", url)
    sha256 = download(url, path, timeout_s=params.timeout_s, retries=params.retries)
    if pinned is not None and sha256 != pinned:
        raise FetchError(f"{url}: sha256 {sha256} does not match the pinned {pinned}")
    return path, sha256


def read_official(spec: DatasetSpec, params: FetchParams) -> Loaded:
    """Download ``spec``'s official file(s) from ``fetch.urls``, check pins, unpack and parse."""
    source = spec.official
    if source.url_key is None:
        raise FetchError(f"{spec.name}: no official address is registered")
    url = official_url(params, source.url_key)
    inputs = []
    with tempfile.TemporaryDirectory(prefix="fewshot-dml-fetch-") as tmp:
        if source.exclude is not None:
            source = _with_exclusion(source, params, tmp, inputs)
        path, sha256 = _fetch_file(url, tmp, params, source.sha256)
        blobs = [(f"{url}!{part.path}" if part.path else url, _read_member(path, part.path, url)) for part in source.parts]
    parsed, encoding = parse_parts(spec, source, blobs)
    rows = [row for part_rows in parsed for row in part_rows]
    log.info("%s: read %d examples from %s (%s)", spec.name, len(rows), url, encoding)
    inputs.insert(0, {"name": url, "sha256": sha256, "rows": len(rows)})
    return Loaded(rows=rows, inputs=inputs, encoding=encoding)


def _with_exclusion(source: Source, params: FetchParams, tmp: str, inputs: list[dict]) -> Source:
    """``source`` whose parsers drop the pairs listed in its exclusion file (downloaded, verified)."""
    assert source.exclude is not None
    url = official_url(params, source.exclude.url_key)
    path, sha256 = _fetch_file(url, tmp, params, source.exclude.sha256)
    (text,), _ = decode_parts([(url, path.read_bytes())], ("utf-8",))
    pairs = parse_id_pairs(text, url)
    inputs.append({"name": url, "sha256": sha256, "excluded_pairs": len(pairs)})
    parts = tuple(replace(part, parse=partial(part.parse, exclude=pairs)) for part in source.parts)
    return replace(source, parts=parts)
