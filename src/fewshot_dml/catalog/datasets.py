"""The seven SentEval tasks: where their files live (local copy, official files) and how to parse them.

Every dataset has one meaning whichever source is read: the registry pins the sha256 of each file
of the local copy, of each official download that has a published checksum, and of the
normalised table itself, so a local copy and a download must give the same bytes (or fail).

The parsers of the files are in :mod:`fewshot_dml.catalog.parsers`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from types import MappingProxyType

from fewshot_dml.catalog.parsers import (
    SST2_HEADER,
    TREC_CLASSES,
    Parser,
    Row,
    decode_parts,
    parse_lines,
    parse_mrpc,
    parse_text_label,
    parse_trec_label,
)
from fewshot_dml.core.errors import FetchError

SENTIMENT = ("negative", "positive")
SUBJECTIVITY = ("objective", "subjective")  # the studies' numbering; SentEval's loader reverses it
PARAPHRASE = ("not_paraphrase", "paraphrase")


@dataclass(frozen=True)
class Part:
    """One file holding examples: its path (in the local copy, or the archive member; "" = the
    downloaded file itself), its parser and, for the local copy, its pinned sha256."""

    path: str
    parse: Parser
    sha256: str | None = None


# The official files, by their `fetch.urls` key in params.yaml (the one declaration of these keys; the
# FetchUrls section is made from it and every Source names one).
URL_KEYS: Mapping[str, str] = MappingProxyType(
    {
        "senteval_small": "SentEval's datasmall_NB_ACL12.zip (MR, CR, SUBJ, MPQA)",
        "sst2": "GLUE's SST-2.zip",
        "trec": "TREC's train_5500.label",
        "mrpc": "msr_paraphrase_train.txt",
        "mrpc_dev_ids": "GLUE's mrpc_dev_ids.tsv: the pairs GLUE moved from MSR's train file to dev",
    }
)


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


def parse_parts(spec: DatasetSpec, source: Source, blobs: Sequence[tuple[str, bytes]]) -> tuple[list[list[Row]], str]:
    """Decode the bytes of ``source.parts`` (in order, ``(where, bytes)``) and parse each one."""
    texts, encoding = decode_parts(blobs, source.encodings)
    parsed = [part.parse(text, where) for part, text, (where, _) in zip(source.parts, texts, blobs, strict=True)]
    for rows, (where, _) in zip(parsed, blobs, strict=True):
        if not rows:
            raise FetchError(f"{spec.name}: {where} holds no examples")
    return parsed, encoding


def _line_files(
    name: str,
    labels: tuple[str, ...],
    local_dir: str,
    archive_dir: str,
    files: Mapping[str, str],
    n: int,
    table_sha256: str,
) -> DatasetSpec:
    """A SentEval binary task kept as one file per class (file i holds label i); ``files`` maps
    each file name to its pinned sha256 in the local copy."""
    local = tuple(Part(f"{local_dir}/{f}", partial(parse_lines, label=i), sha) for i, (f, sha) in enumerate(files.items()))
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
        _line_files(
            "mr",
            SENTIMENT,
            "MR",
            "rt10662",
            {
                "rt-polarity.neg": "c4ac36eaa8adc8ee31c31f69594bfbe68d83ef5b6db53f1f19b28c0be52f3999",
                "rt-polarity.pos": "34e5b0da2d491e46b700b00afe735aaae0962bcfe4f7f22b2d8077e714fa370f",
            },
            10662,
            "31c6294030c81422225c8ec1ab6ca6627d9325a0ad5e5873544201f7965fab1d",
        ),
        _line_files(
            "cr",
            SENTIMENT,
            "CR",
            "customerr",
            {
                "custrev.neg": "ec94532766f6f962094841ab3bee2ad6f232f996c3756825a91e78bcc294750f",
                "custrev.pos": "91a20a4ffeb5d38a39a4087bb247e16538aff21e7d621ae59738379f39f21732",
            },
            3771,
            "a9129c9ee6b1cb02a519c60cecd6f5f40704f262ac1791191774f6cd5622c73d",
        ),
        _line_files(
            "subj",
            SUBJECTIVITY,
            "SUBJ",
            "subj",
            {
                "subj.objective": "d8ccd43f1674f1c17e4ab717564e3561cfb719b0db4cfb19e5677427c68ff8a1",
                "subj.subjective": "274c2ffe59c204dc4df779848561786f59a98cc20dda3cfdd7d9f76a4f730710",
            },
            10000,
            "130acead4953f2597983ca9eae186834784d6d04e2d1d5e0113d5e8886c081cf",
        ),
        _line_files(
            "mpqa",
            SENTIMENT,
            "MPQA",
            "mpqa",
            {
                "mpqa.neg": "8da6e035fa4cea02f0555091096b29a6b3995ff0adf41fad25008dcee066b79e",
                "mpqa.pos": "7487dbb74c77383e60b292845495163a9e21fb70a4fdacdda933413e43163f0d",
            },
            10603,
            "932a4fbcbb514044b4d4954b27ff578f48b62675e7e2521bce7b01f21a0bb4fb",
        ),
        DatasetSpec(
            name="sst2",
            label_names=SENTIMENT,
            pair=False,
            local=Source((Part(sst2, sst2_parse, "48eac26399f8456935f81dd9e3a745c1430adb6c62e233ccfe22db4a0d15d1d1"),), 67349, ("utf-8",)),
            official=Source(
                (Part(sst2, sst2_parse),), 67349, ("utf-8",), "sst2", "d67e16fb55739c1b32cdce9877596db1c127dc322d93c082281f64057c16deaa"
            ),
            table_sha256="52c7f25a99a8b5af24b2b0bcb146c47485430c9b9ef3391ea1b5e505eb839430",
        ),
        DatasetSpec(
            name="trec",
            label_names=TREC_CLASSES,
            pair=False,
            local=Source(
                (Part("TREC/trec.tsv", trec_tsv, "19ec27d2cbf5ebf86ba5a14a568cc7854329ac19fced10b085da3e2b156feba3"),), 5452, ("utf-8",)
            ),
            official=Source(
                (Part("", parse_trec_label),),
                5452,
                ("latin-1",),
                "trec",
                "9e4c8bdcaffb96ed61041bd64b564183d52793a8e91d84fc3a8646885f466ec3",
            ),
            table_sha256="b7fffb3fe14c9f099584eee3857e1d8701fb319072eef91c3ad10879fd6451e7",
        ),
        DatasetSpec(
            name="mrpc",
            label_names=PARAPHRASE,
            pair=True,
            # `mrpc` is GLUE's training split (3668 pairs), the split the studies used: the local
            # copy is that file; the download is MSR's train file (4076 pairs) minus the 408 pairs
            # GLUE moved to its dev split, in MSR's order, which is how GLUE built its train.tsv.
            local=Source(
                (Part("MRPC/train.tsv", parse_mrpc, "69abcedee3cf738c6ce58d772e43e1b7cdf5b4edee4aceda459c0d9f4e5599f3"),), 3668, ("utf-8",)
            ),
            official=Source(
                (Part("", parse_mrpc),),
                3668,
                ("utf-8",),
                "mrpc",
                "60a9b09084528f0673eedee2b69cb941920f0b8cd0eeccefc464a98768457f89",
                Exclusion("mrpc_dev_ids", "971d7767d81b997fd9060ade0ec23c4fc31cbb226a55d1bd4a1bac474eb81dc7"),
            ),
            table_sha256="877a243eeaddc621b5f28f427f8ac5d4e5d1a3a12a748a215c364c7948c53431",
        ),
    ]
    for spec in specs:
        keys = {spec.official.url_key, spec.official.exclude and spec.official.exclude.url_key} - {None}
        if not keys <= set(URL_KEYS):
            raise AssertionError(f"{spec.name}: url keys {sorted(keys - set(URL_KEYS))} are not in URL_KEYS")
    return MappingProxyType({spec.name: spec for spec in specs})


REGISTRY: Mapping[str, DatasetSpec] = _registry()


def get_spec(name: str, registry: Mapping[str, DatasetSpec] | None = None) -> DatasetSpec:
    """The spec of dataset ``name``; FetchError listing the valid names if unknown."""
    registry = REGISTRY if registry is None else registry
    try:
        return registry[name]
    except KeyError:
        raise FetchError(f"unknown dataset {name!r}; expected one of {list(registry)}") from None
