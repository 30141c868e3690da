"""Parsers of the SentEval files: one decoded file -> rows ``(label, text, text_pair)``.

Blank lines are not examples; every other line, and every tab-separated field, loses its trailing
whitespace and is otherwise kept as is (SST-2 ends every sentence with a space, CR every line).
Parsers are strict: a malformed row raises :class:`FetchError` naming the file, the line number and
what was expected.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from fewshot_dml.core.errors import FetchError

Row = tuple[int, str, str]  # (label, text, text_pair)
Parser = Callable[[str, str], list[Row]]  # (decoded file, where: file or URL for messages) -> rows
MRPC_HEADER = ("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String")
SST2_HEADER = ("sentence", "label")
TREC_CLASSES = ("DESC", "ENTY", "ABBR", "HUM", "NUM", "LOC")  # the label order of TREC


def _lines(text: str) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without trailing whitespace) for every non-blank line."""
    # split("\n"), not splitlines(): latin-1 text may hold \x85 or \x0c, which splitlines breaks on.
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip()
        if line:
            yield number, line


def _fields(line: str, n: int, where: str, number: int) -> list[str]:
    """The ``n`` tab-separated fields of ``line``, each without trailing whitespace (as lines are)."""
    fields = [value.rstrip() for value in line.split("\t")]
    if len(fields) != n:
        raise FetchError(f"{where}:{number}: expected {n} tab-separated fields, got {len(fields)}: {line[:120]!r}")
    for i, value in enumerate(fields):
        if not value:
            raise FetchError(f"{where}:{number}: field {i + 1} is empty: {line[:120]!r}")
    return fields


def _label(value: str, n_labels: int, where: str, number: int) -> int:
    # isdecimal alone accepts non-ASCII digits; int() alone accepts " 1", "+1" and "1_0".
    if not (value.isascii() and value.isdecimal()) or int(value) >= n_labels:
        raise FetchError(f"{where}:{number}: label {value!r} is not an integer in 0..{n_labels - 1}")
    return int(value)


def _check_header(line: str, header: Sequence[str], where: str, number: int) -> None:
    if tuple(line.split("\t")) != tuple(header):
        raise FetchError(f"{where}:{number}: expected the header {chr(9).join(header)!r}, got {line[:120]!r}")


def parse_lines(text: str, where: str, *, label: int) -> list[Row]:
    """One example a line, every line of the file has ``label`` (MR, CR, SUBJ, MPQA)."""
    return [(label, line, "") for _, line in _lines(text)]


def parse_text_label(text: str, where: str, *, n_labels: int, header: Sequence[str] | None) -> list[Row]:
    """``text<TAB>label`` lines, after an optional exact header (SST-2, the local TREC copy)."""
    rows: list[Row] = []
    for i, (number, line) in enumerate(_lines(text)):
        if i == 0 and header is not None:
            _check_header(line, header, where, number)
            continue
        sentence, label = _fields(line, 2, where, number)
        rows.append((_label(label, n_labels, where, number), sentence, ""))
    return rows


def parse_trec_label(text: str, where: str) -> list[Row]:
    """``COARSE:fine question`` lines of the official TREC file; the label is the coarse class."""
    rows: list[Row] = []
    for number, line in _lines(text):
        head, _, question = line.partition(" ")
        coarse, colon, fine = head.partition(":")
        if not colon or not fine or not question.strip():
            raise FetchError(f"{where}:{number}: expected 'COARSE:fine question', got {line[:120]!r}")
        if coarse not in TREC_CLASSES:
            expected = list(TREC_CLASSES)
            raise FetchError(f"{where}:{number}: unknown coarse class {coarse!r}; expected one of {expected}")
        rows.append((TREC_CLASSES.index(coarse), question, ""))
    return rows


def parse_mrpc(text: str, where: str, *, exclude: frozenset[tuple[str, str]] = frozenset()) -> list[Row]:
    """MSR paraphrase rows ``Quality, #1 ID, #2 ID, #1 String, #2 String`` after the exact header,
    without the pairs ``(#1 ID, #2 ID)`` in ``exclude`` (each must occur).

    Fields are split on tabs only: the strings contain double quotes that are text, not quoting.
    """
    rows: list[Row] = []
    dropped: set[tuple[str, str]] = set()
    for i, (number, line) in enumerate(_lines(text)):
        if i == 0:
            _check_header(line, MRPC_HEADER, where, number)
            continue
        quality, id1, id2, first, second = _fields(line, 5, where, number)
        if (id1, id2) in exclude:
            dropped.add((id1, id2))
            continue
        rows.append((_label(quality, 2, where, number), first, second))
    absent = sorted(exclude - dropped)
    if absent:
        raise FetchError(
            f"{where}: {len(absent)} excluded pair(s) do not occur, e.g. {absent[0]}; expected every pair of the exclusion list in the file"
        )
    return rows


def parse_id_pairs(text: str, where: str) -> frozenset[tuple[str, str]]:
    """``#1 ID<TAB>#2 ID`` lines (GLUE's ``mrpc_dev_ids.tsv``: no header) as a set of pairs."""
    pairs = set()
    for number, line in _lines(text):
        first, second = _fields(line, 2, where, number)
        if not (first.isascii() and first.isdecimal() and second.isascii() and second.isdecimal()):
            raise FetchError(f"{where}:{number}: expected two numeric sentence ids, got {line[:120]!r}")
        pairs.add((first, second))
    return frozenset(pairs)


def decode_parts(blobs: Sequence[tuple[str, bytes]], encodings: Sequence[str]) -> tuple[list[str], str]:
    """Decode every ``(where, bytes)`` with the first encoding that decodes all of them.

    A leading UTF-8 byte-order mark is dropped (``utf-8-sig``); the card still says ``utf-8``.
    """
    failure = ""
    for encoding in encodings:
        codec = "utf-8-sig" if encoding == "utf-8" else encoding
        texts: list[str] = []
        for where, data in blobs:
            try:
                texts.append(data.decode(codec))
            except UnicodeDecodeError as err:
                offset = err.start + len(data) - len(err.object)  # utf-8-sig reports past the BOM
                failure = f"{where}: not valid {encoding} (byte {data[offset]:#04x} at offset {offset})"
                break
        else:
            return texts, encoding
    raise FetchError(f"{failure}; tried encodings {list(encodings)}")
