"""The normalised table ``data/raw/<dataset>.jsonl``: one ``{"label", "text", "text_pair"}`` per line.

Both directions go through the ``json`` module line by line, never through pandas' readers: those
infer dtypes, and a text such as ``"1"`` or ``"NaN"`` must stay the string it is.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fewshot_dml.core import io

COLUMNS = ("label", "text", "text_pair")


def encode_table(df: pd.DataFrame) -> bytes:
    """The table's bytes: canonical JSON lines in row order (byte-stable for the same rows)."""
    if tuple(sorted(df.columns)) != COLUMNS:
        raise ValueError(f"table columns are {sorted(map(str, df.columns))}; expected {list(COLUMNS)}")
    lines = []
    for i, (label, text, text_pair) in enumerate(zip(df["label"], df["text"], df["text_pair"], strict=True)):
        if isinstance(label, (bool, np.bool_)) or not isinstance(label, (int, np.integer)):
            raise ValueError(f"row {i}: label {label!r} is not an integer")
        for key, value in (("text", text), ("text_pair", text_pair)):
            if not isinstance(value, str):
                raise ValueError(f"row {i}: {key} {value!r} is not a string")
        obj = {"label": int(label), "text": text, "text_pair": text_pair}
        lines.append(json.dumps(obj, ensure_ascii=False, sort_keys=True) + "\n")
    return "".join(lines).encode("utf-8")


def write_table(path: str | Path, df: pd.DataFrame) -> str:
    """Write ``df`` atomically to ``path``; return the sha256 of the bytes written."""
    data = encode_table(df)
    with io.atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def read_table(path: str | Path, sha256: str | None = None) -> pd.DataFrame:
    """Columns ``text``, ``text_pair`` (str) and ``label`` (int64); index 0..n-1 = line number.

    With ``sha256``, the file's bytes must have that checksum (the card's ``table_sha256``).
    """
    path = Path(path)
    data = path.read_bytes()
    if sha256 is not None and (actual := hashlib.sha256(data).hexdigest()) != sha256:
        raise ValueError(
            f"{path}: sha256 {actual} does not match the card's table_sha256 {sha256}; "
            "the table changed after the fetch stage wrote it (re-run fetch)"
        )
    text = data.decode("utf-8")
    if text and not text.endswith("\n"):
        raise ValueError(f"{path}: the last line has no newline; the file is truncated")
    labels: list[int] = []
    texts: list[str] = []
    pairs: list[str] = []
    # split("\n"), not splitlines(): U+2028 and friends may occur unescaped inside JSON strings.
    for number, line in enumerate(text.split("\n")[:-1], start=1):
        label, first, second = _parse_row(line, path, number)
        labels.append(label)
        texts.append(first)
        pairs.append(second)
    return make_table(labels, texts, pairs)


def read_card(path: str | Path, required: Sequence[str]) -> dict[str, Any]:
    """The dataset card written beside a table by the fetch stage, with ``required`` keys present."""
    card = json.loads(Path(path).read_text(encoding="utf-8"))
    missing = [key for key in required if key not in card]
    if missing:
        raise ValueError(f"{path}: missing keys {missing}; expected a dataset card (fetch stage)")
    return card


def read_card_and_table(card_path: str | Path, table_path: str | Path, required: Sequence[str]) -> tuple[dict[str, Any], pd.DataFrame]:
    """The card (with ``required`` keys and ``table_sha256``) and its table, checked against it."""
    card = read_card(card_path, tuple(dict.fromkeys((*required, "table_sha256"))))
    return card, read_table(table_path, card["table_sha256"])


def make_table(labels: Sequence[int], texts: Sequence[str], pairs: Sequence[str]) -> pd.DataFrame:
    """The table's DataFrame with explicit dtypes (nothing inferred from the text)."""
    return pd.DataFrame(
        {
            "text": pd.Series(list(texts), dtype=str),
            "text_pair": pd.Series(list(pairs), dtype=str),
            "label": pd.Series(np.asarray(labels, dtype=np.int64)),
        }
    )


def _parse_row(line: str, path: Path, number: int) -> tuple[int, str, str]:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}:{number}: not a JSON object ({err.msg})") from None
    if not isinstance(obj, dict) or tuple(sorted(obj)) != COLUMNS:
        keys = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        raise ValueError(f"{path}:{number}: expected the keys {list(COLUMNS)}, got {keys}")
    label = obj["label"]
    if isinstance(label, bool) or not isinstance(label, int):
        raise ValueError(f"{path}:{number}: label {label!r} is not an integer")
    for key in ("text", "text_pair"):
        if not isinstance(obj[key], str):
            raise ValueError(f"{path}:{number}: {key} {obj[key]!r} is not a string")
    return label, obj["text"], obj["text_pair"]
