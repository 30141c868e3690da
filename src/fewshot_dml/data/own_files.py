"""Your own local files, read as written: every cell is the text in the file, nothing is guessed.

Written with the standard library's ``csv`` and ``json`` (not ``datasets``/``pandas``) because those
readers infer types (``01`` becomes the integer 1, ``TRUE`` a boolean, a column of digits an int) and
recover silently from quoting they cannot parse (a sentence that opens a quote swallowed the next
rows as one cell). The rules, each enforced with an error naming the file, the row and the value:

- ``.tsv``: one example per line, cells split at tabs, quotes are ordinary characters;
- ``.csv``: RFC 4180 quoting (``"a, b"``, ``""`` for a quote inside a quoted cell), strictly: a quote
  that does not close a cell is an error, and a cell may not hold a line break (one example per line);
- both: UTF-8 (a byte-order mark is dropped), a header row of distinct names, every row as many
  cells as the header, no blank line;
- ``.jsonl``: one JSON object per line (``.json``: an array of objects, or JSON lines); ``NaN`` and
  ``Infinity`` are refused, a fractional number is kept as written so it can be named;
- ``.parquet``: typed columns, read with ``pyarrow``.

Rows are numbered from 1, a header not counted (:func:`read_file` returns the columns as lists).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from fewshot_dml.core.errors import FetchError


class Fraction(str):
    """A JSON number with a fraction or exponent, kept as its literal text (never a label)."""

    def __repr__(self) -> str:
        return str(self)


def _decode(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise FetchError(f"{path}: line {line}: byte {data[err.start]:#04x} is not UTF-8; expected a UTF-8 text file") from None


def _delimited(path: Path, tsv: bool) -> dict[str, list[Any]]:
    text = _decode(path)
    options: dict[str, Any] = {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if tsv else {"delimiter": ",", "quotechar": '"'}
    reader = csv.reader(io.StringIO(text, newline=""), strict=True, **options)
    try:
        header = next(reader, None)
        if not header:
            raise FetchError(f"{path}: no header row; expected the column names on the first line")
        if len(set(header)) != len(header):
            raise FetchError(f"{path}: the header {header} repeats a column name; expected distinct names")
        columns: dict[str, list[Any]] = {name: [] for name in header}
        row, end = 0, reader.line_num
        for cells in reader:
            row, start, end = row + 1, end + 1, reader.line_num
            where = f"{path}: row {row} (line {start})"
            if not cells:
                raise FetchError(f"{where}: blank line; expected one example per line")
            if len(cells) != len(header):
                hint = " (a tab inside a text?)" if tsv else " (an unquoted comma, or a quote that does not close?)"
                raise FetchError(f"{where}: {len(cells)} cells, expected {len(header)} as in the header {header}{hint}")
            broken = next((c for c in cells if "\n" in c or "\r" in c), None)
            if broken is not None:
                raise FetchError(
                    f"{where}: a cell holds a line break ({broken[:60]!r}...): a quote opened here closes on a later line; "
                    'expected one example per line (write a quote inside a quoted cell as "")'
                )
            for name, cell in zip(header, cells, strict=True):
                columns[name].append(cell)
    except csv.Error as err:
        raise FetchError(
            f"{path}: line {reader.line_num}: {err}; expected {'tab-separated cells' if tsv else 'RFC 4180 CSV quoting'}"
        ) from None
    return columns


def _no_constant(literal: str) -> Any:
    raise ValueError(f"{literal} is not a number JSON allows")


def _json_rows(path: Path) -> list[tuple[int, Any]]:
    """``(line, value)`` of each JSON value: the array's items, or one per non-blank line."""
    text = _decode(path)
    loads = lambda s: json.loads(s, parse_constant=_no_constant, parse_float=Fraction)  # noqa: E731
    if path.suffix.lower() == ".json" and text.lstrip().startswith("["):
        try:
            return [(0, item) for item in loads(text)]
        except ValueError as err:
            raise FetchError(f"{path}: not valid JSON: {err}; expected an array of objects") from None
    rows = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                rows.append((line_no, loads(line)))
            except ValueError as err:
                raise FetchError(f"{path}: line {line_no}: not valid JSON: {err}; expected one JSON object per line") from None
    return rows


def _json(path: Path) -> dict[str, list[Any]]:
    rows = _json_rows(path)
    names: list[str] = []
    for line, value in rows:
        if not isinstance(value, dict):
            raise FetchError(f"{path}: {f'line {line}' if line else 'an item'}: {type(value).__name__} {value!r}; expected a JSON object")
        names += [k for k in value if k not in names]
    columns: dict[str, list[Any]] = {name: [] for name in names}
    for _, value in rows:
        for name in names:
            columns[name].append(value.get(name))
    return columns


def _parquet(path: Path) -> tuple[dict[str, list[Any]], Any]:
    import datasets
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow raises ArrowInvalid, OSError, ... for a bad file
        raise FetchError(f"{path}: cannot read it as Parquet: {type(err).__name__}: {err}") from None
    # A file written by `datasets` keeps its features (a ClassLabel's names) in the schema's metadata.
    return table.to_pydict(), datasets.Features.from_arrow_schema(table.schema)


def read_file(path: Path, builder: str) -> tuple[dict[str, list[Any]], Any]:
    """``(columns by name, each a list in row order; the ``datasets`` features of a Parquet file, else None)``."""
    if builder == "csv":
        return _delimited(path, tsv=path.suffix.lower() == ".tsv"), None
    if builder == "json":
        return _json(path), None
    if builder == "parquet":
        return _parquet(path)
    raise ValueError(f"{path}: no reader for {builder!r}")
