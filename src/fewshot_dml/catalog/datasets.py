"""The seven SentEval tasks: where their files live (local copy, official files) and how to parse them.

Every dataset has one meaning whichever source is read: the registry pins the sha256 of each file
of the local copy, of each official download that has a published checksum, and of the
normalised table itself, so a local copy and a download must give the same bytes (or fail).

A parser turns one decoded file into rows ``(label, text, text_pair)``. Blank lines are not
examples; every other line, and every tab-separated field, loses its trailing whitespace and is
otherwise kept as is (SST-2 ends every sentence with a space, CR every line). Parsers are strict: a
malformed row raises :class:`FetchError` naming the file, the line number and what was expected.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from types import MappingProxyType

from fewshot_dml.data import FetchError

Row = tuple[int, str, str]  # (label, text, text_pair)
Parser = Callable[[str, str], list[Row]]  # (decoded file, where: file or URL for messages) -> rows

SENTIMENT = ("negative", "positive")
SUBJECTIVITY = ("objective", "subjective")  # the studies' numbering; SentEval's loader reverses it
TREC_CLASSES = ("DESC", "ENTY", "ABBR", "HUM", "NUM", "LOC")
PARAPHRASE = ("not_paraphrase", "paraphrase")
MRPC_HEADER = ("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String")
SST2_HEADER = ("sentence", "label")



@dataclass(frozen=True)
class Part:
    """One file holding examples: its path (in the local copy, or the archive member; "" = the
    downloaded file itself), its parser and, for the local copy, its pinned sha256."""

    path: str
    parse: Parser
    sha256: str | None = None


@dataclass(frozen=True)
class Exclusion:
    """An official file of ``#1 ID<TAB>#2 ID`` lines naming MRPC pairs to drop from the download.

    GLUE built its MRPC train split from MSR's train file minus these 408 pairs (its dev split);
    the local copy is GLUE's train split, so the download drops them too (one meaning of `mrpc`).
    """

    url_key: str  # the fetch.urls key of the file
    sha256: str


@dataclass(frozen=True)
class Source:
    """One way to obtain a dataset. ``url_key`` (a ``fetch.urls`` key) is None for the local copy.
    ``encodings`` are tried in order, the same one for every part; the card records the one that
    worked."""

    parts: tuple[Part, ...]
    n_examples: int  # exact count expected from this source (blank lines excluded)
    encodings: tuple[str, ...]
    url_key: str | None = None
    sha256: str | None = None  # pinned checksum of the downloaded file, where one is published
    exclude: Exclusion | None = None


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    label_names: tuple[str, ...]
    pair: bool
    local: Source
    official: Source
    # The normalised table (data/raw/<name>.jsonl), whichever source it came from. Every registered
    # dataset pins it (a contract test checks); None exists only for registries built in tests.
    table_sha256: str | None


@dataclass(frozen=True)
class Loaded:
    """What a source yielded: the rows in source order, the card's ``inputs`` and the encoding."""

    rows: list[Row]
    inputs: list[dict]  # [{"name", "sha256", "rows"}], one per file read or URL downloaded
    encoding: str


def parse_parts(
    spec: DatasetSpec, source: Source, blobs: Sequence[tuple[str, bytes]]
) -> tuple[list[list[Row]], str]:
    """Decode the bytes of ``source.parts`` (in order, ``(where, bytes)``) and parse each one."""
    texts, encoding = decode_parts(blobs, source.encodings)
    parsed = [part.parse(text, where) for part, text, (where, _) in zip(source.parts, texts, blobs, strict=True)]
    for rows, (where, _) in zip(parsed, blobs, strict=True):
        if not rows:
            raise FetchError(f"{spec.name}: {where} holds no examples")
    return parsed, encoding


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
        raise FetchError(f"{where}: {len(absent)} excluded pair(s) do not occur, e.g. {absent[0]}; "
                         "expected every pair of the exclusion list in the file")
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


def _line_files(
    name: str, labels: tuple[str, ...], local_dir: str, archive_dir: str, files: Mapping[str, str], n: int,
    table_sha256: str,
) -> DatasetSpec:
    """A SentEval binary task kept as one file per class (file i holds label i); ``files`` maps
    each file name to its pinned sha256 in the local copy."""
    local = tuple(Part(f"{local_dir}/{f}", partial(parse_lines, label=i), sha)
                  for i, (f, sha) in enumerate(files.items()))
    member = tuple(Part(f"data/{archive_dir}/{f}", part.parse) for f, part in zip(files, local, strict=True))
    return DatasetSpec(
        name=name,
        label_names=labels,
        pair=False,
        # The local copy is UTF-8; a verbatim copy of SentEval's latin-1 files is read as such.
        local=Source(local, n, ("utf-8", "latin-1")),
        # The archive's files are the same as the local copy (blank lines included); SentEval's
        # published sizes (CR 3775, MPQA 10606) count those blank lines. No checksum of the archive
        # is published: its content is verified through the pinned table checksum.
        official=Source(member, n, ("latin-1",), "senteval_small", None),
        table_sha256=table_sha256,
    )


def _registry() -> Mapping[str, DatasetSpec]:
    sst2 = "SST-2/train.tsv"
    sst2_parse = partial(parse_text_label, n_labels=2, header=SST2_HEADER)
    trec_tsv = partial(parse_text_label, n_labels=len(TREC_CLASSES), header=None)
    # Local pins: ../shared/senteval/SHA256SUMS. Download pins: HuggingFace datasets' `glue` and
    # `trec` dataset_infos.json (download_checksums). Table pins: the tables fetched from the local copy.
    specs = [
        _line_files("mr", SENTIMENT, "MR", "rt10662", {
            "rt-polarity.neg": "c4ac36eaa8adc8ee31c31f69594bfbe68d83ef5b6db53f1f19b28c0be52f3999",
            "rt-polarity.pos": "34e5b0da2d491e46b700b00afe735aaae0962bcfe4f7f22b2d8077e714fa370f"}, 10662,
            "31c6294030c81422225c8ec1ab6ca6627d9325a0ad5e5873544201f7965fab1d"),
        _line_files("cr", SENTIMENT, "CR", "customerr", {
            "custrev.neg": "ec94532766f6f962094841ab3bee2ad6f232f996c3756825a91e78bcc294750f",
            "custrev.pos": "91a20a4ffeb5d38a39a4087bb247e16538aff21e7d621ae59738379f39f21732"}, 3771,
            "a9129c9ee6b1cb02a519c60cecd6f5f40704f262ac1791191774f6cd5622c73d"),
        _line_files("subj", SUBJECTIVITY, "SUBJ", "subj", {
            "subj.objective": "d8ccd43f1674f1c17e4ab717564e3561cfb719b0db4cfb19e5677427c68ff8a1",
            "subj.subjective": "274c2ffe59c204dc4df779848561786f59a98cc20dda3cfdd7d9f76a4f730710"}, 10000,
            "130acead4953f2597983ca9eae186834784d6d04e2d1d5e0113d5e8886c081cf"),
        _line_files("mpqa", SENTIMENT, "MPQA", "mpqa", {
            "mpqa.neg": "8da6e035fa4cea02f0555091096b29a6b3995ff0adf41fad25008dcee066b79e",
            "mpqa.pos": "7487dbb74c77383e60b292845495163a9e21fb70a4fdacdda933413e43163f0d"}, 10603,
            "932a4fbcbb514044b4d4954b27ff578f48b62675e7e2521bce7b01f21a0bb4fb"),
        DatasetSpec(
            name="sst2",
            label_names=SENTIMENT,
            pair=False,
            local=Source((Part(sst2, sst2_parse, "48eac26399f8456935f81dd9e3a745c1430adb6c62e233ccfe22db4a0d15d1d1"),),
                         67349, ("utf-8",)),
            official=Source((Part(sst2, sst2_parse),), 67349, ("utf-8",), "sst2",
                            "d67e16fb55739c1b32cdce9877596db1c127dc322d93c082281f64057c16deaa"),
            table_sha256="52c7f25a99a8b5af24b2b0bcb146c47485430c9b9ef3391ea1b5e505eb839430",
        ),
        DatasetSpec(
            name="trec",
            label_names=TREC_CLASSES,
            pair=False,
            local=Source((Part("TREC/trec.tsv", trec_tsv,
                               "19ec27d2cbf5ebf86ba5a14a568cc7854329ac19fced10b085da3e2b156feba3"),), 5452, ("utf-8",)),
            official=Source((Part("", parse_trec_label),), 5452, ("latin-1",), "trec",
                            "9e4c8bdcaffb96ed61041bd64b564183d52793a8e91d84fc3a8646885f466ec3"),
            table_sha256="b7fffb3fe14c9f099584eee3857e1d8701fb319072eef91c3ad10879fd6451e7",
        ),
        DatasetSpec(
            name="mrpc",
            label_names=PARAPHRASE,
            pair=True,
            # `mrpc` is GLUE's training split (3668 pairs), the split the studies used: the local
            # copy is that file; the download is MSR's train file (4076 pairs) minus the 408 pairs
            # GLUE moved to its dev split, in MSR's order, which is how GLUE built its train.tsv.
            local=Source((Part("MRPC/train.tsv", parse_mrpc,
                               "69abcedee3cf738c6ce58d772e43e1b7cdf5b4edee4aceda459c0d9f4e5599f3"),), 3668, ("utf-8",)),
            official=Source(
                (Part("", parse_mrpc),), 3668, ("utf-8",), "mrpc",
                "60a9b09084528f0673eedee2b69cb941920f0b8cd0eeccefc464a98768457f89",
                Exclusion("mrpc_dev_ids", "971d7767d81b997fd9060ade0ec23c4fc31cbb226a55d1bd4a1bac474eb81dc7"),
            ),
            table_sha256="877a243eeaddc621b5f28f427f8ac5d4e5d1a3a12a748a215c364c7948c53431",
        ),
    ]
    return MappingProxyType({spec.name: spec for spec in specs})


REGISTRY: Mapping[str, DatasetSpec] = _registry()


def get_spec(name: str, registry: Mapping[str, DatasetSpec] | None = None) -> DatasetSpec:
    """The spec of dataset ``name``; FetchError listing the valid names if unknown."""
    registry = REGISTRY if registry is None else registry
    try:
        return registry[name]
    except KeyError:
        raise FetchError(f"unknown dataset {name!r}; expected one of {list(registry)}") from None
