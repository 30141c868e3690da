"""Few-shot splits: determinism, protocols, the stratified eval cap, the split file and its checks."""

from __future__ import annotations

import hashlib
import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from fewshot_dml.config.sections import SampleParams
from fewshot_dml.core.layout import split_file
from fewshot_dml.data.sampling import Split, check_split, make_split, stratified_quotas, write_splits

REPO = Path(__file__).resolve().parents[1]
TREC = REPO.parent / "shared" / "senteval" / "TREC" / "trec.tsv"


def synthetic_labels(n: int, num_classes: int, seed: int = 123) -> np.ndarray:
    """Imbalanced labels where every class occurs (class c has weight c + 1)."""
    rng = np.random.default_rng(seed)
    weights = np.arange(1, num_classes + 1, dtype=float)
    labels = np.concatenate([np.arange(num_classes), rng.choice(num_classes, n - num_classes, p=weights / weights.sum())])
    return rng.permutation(labels)


LABELS = synthetic_labels(400, 4)


# ---- determinism ------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["kfold", "per_class"])
def test_same_inputs_same_split(protocol: str) -> None:
    a = make_split(LABELS, protocol, 8, 3, 4, 50)
    b = make_split(LABELS.copy(), protocol, 8, 3, 4, 50)
    assert a == b and isinstance(a, Split)
    assert all(type(i) is int for i in a.train + a.eval)


def test_global_random_state_is_ignored() -> None:
    np.random.seed(0)
    a = make_split(LABELS, "kfold", 8, 5, 4, 50)
    np.random.seed(99)
    np.random.rand(10)
    assert make_split(LABELS, "kfold", 8, 5, 4, 50) == a


@pytest.mark.parametrize("protocol", ["kfold", "per_class"])
def test_different_seeds_differ(protocol: str) -> None:
    splits = {make_split(LABELS, protocol, 8, seed, 4, 50) for seed in range(6)}
    assert len({s.train for s in splits}) == 6
    assert len({s.eval for s in splits}) == 6


# ---- kfold --------------------------------------------------------------------------------------


def test_kfold_eval_is_one_fold_and_train_is_outside_it() -> None:
    n, folds = 103, 4
    for seed in range(12):
        split = make_split(LABELS[:n], "kfold", 10, seed, folds, 0)
        assert split.eval_fold == seed % folds
        assert len(split.eval) in (n // folds, n // folds + 1)
        assert list(split.eval) == sorted(split.eval)
        assert len(split.train) == 10 and len(set(split.train)) == 10
        assert not set(split.train) & set(split.eval)


def test_kfold_eval_independent_of_size_and_train_nested() -> None:
    small = make_split(LABELS, "kfold", 5, 7, 4, 60)
    large = make_split(LABELS, "kfold", 40, 7, 4, 60)
    assert small.eval == large.eval
    assert large.train[:5] == small.train


def test_kfold_train_is_uniform_not_stratified() -> None:
    # Class 0 is rare (~10%): a uniform draw of 4 misses it for some seed; a stratified one never would.
    missed = [0 not in set(LABELS[list(make_split(LABELS, "kfold", 4, s, 4, 0).train)]) for s in range(40)]
    assert any(missed) and not all(missed)


def test_kfold_train_covers_the_pool_uniformly() -> None:
    # Every row outside the held-out fold is drawn about equally often over many seeds.
    labels = LABELS[:40]
    hits = np.zeros(40)
    seeds = range(0, 2000, 4)  # eval_fold 0 for all, but each seed shuffles differently
    for seed in seeds:
        hits[list(make_split(labels, "kfold", 6, seed, 4, 0).train)] += 1
    # P(row drawn) = P(outside fold) * 6/30 = 0.75 * 0.2 = 0.15; 500 draws -> 75 +- ~8 (sd)
    assert np.all(np.abs(hits / len(seeds) - 0.15) < 0.06)


# ---- per_class ---------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 3, 8])
def test_per_class_exact_counts_and_rest_is_eval(size: int) -> None:
    split = make_split(LABELS, "per_class", size, 2, 4, 0)
    train_labels = LABELS[list(split.train)]
    assert np.bincount(train_labels, minlength=4).tolist() == [size] * 4
    assert sorted(split.train + split.eval) == list(range(LABELS.size))
    assert split.eval_fold is None
    assert len(set(train_labels[: 2 * 4])) > 1  # draw order interleaves classes, not grouped by class


def test_per_class_nested_across_sizes() -> None:
    small = make_split(LABELS, "per_class", 2, 4, 4, 0)
    large = make_split(LABELS, "per_class", 6, 4, 4, 0)
    assert set(small.train) <= set(large.train)


def test_per_class_too_few_examples_names_class() -> None:
    labels = np.array([0] * 10 + [1] * 3 + [2] * 10)
    with pytest.raises(ValueError, match=r"class 1 has 3 examples, fewer than size=4"):
        make_split(labels, "per_class", 4, 0, 4, 0)


def test_per_class_nothing_left_to_evaluate() -> None:
    with pytest.raises(ValueError, match="nothing is left to evaluate"):
        make_split(np.array([0, 0, 1, 1]), "per_class", 2, 0, 4, 0)


# ---- the evaluation cap -------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["kfold", "per_class"])
def test_eval_cap_is_stratified_and_exact(protocol: str) -> None:
    labels = synthetic_labels(3000, 6, seed=9)
    for seed in range(5):
        full = make_split(labels, protocol, 4, seed, 4, 0)
        capped = make_split(labels, protocol, 4, seed, 4, 97)
        assert capped.train == full.train
        assert len(capped.eval) == 97 and set(capped.eval) <= set(full.eval)
        pool = np.bincount(labels[list(full.eval)], minlength=6)
        got = np.bincount(labels[list(capped.eval)], minlength=6)
        exact = [Fraction(97 * int(c), int(pool.sum())) for c in pool]
        assert all(abs(g - e) < 1 for g, e in zip(got, exact)), (got, exact)


def test_eval_cap_keeps_every_class() -> None:
    labels = np.array([0] * 500 + [1] * 3 + [2] * 2 + [3] * 300)
    for seed in range(10):
        uncapped = make_split(labels, "kfold", 4, seed, 2, 0)
        split = make_split(labels, "kfold", 4, seed, 2, 10)
        present = set(labels[list(uncapped.eval)].tolist())
        assert set(labels[list(split.eval)].tolist()) == present and len(split.eval) == 10


def test_eval_cap_larger_than_pool_keeps_all() -> None:
    assert make_split(LABELS, "kfold", 4, 0, 4, 10_000).eval == make_split(LABELS, "kfold", 4, 0, 4, 0).eval


def test_stratified_quotas_properties() -> None:
    rng = np.random.default_rng(0)
    for _ in range(300):
        counts = rng.integers(0, 60, size=int(rng.integers(1, 8)))
        if counts.sum() == 0:
            continue
        total = int(rng.integers(0, counts.sum() + 1))
        quotas = stratified_quotas(counts, total)
        assert quotas.sum() == total
        assert np.all(quotas <= counts) and np.all(quotas[counts == 0] == 0)
        present = np.count_nonzero(counts)
        if total >= present:
            assert np.all(quotas[counts > 0] >= 1)
        exact = [Fraction(total * int(c), int(counts.sum())) for c in counts]
        if total < present or all(e >= 1 for e, c in zip(exact, counts) if c):
            assert all(abs(q - e) < 1 for q, e in zip(quotas, exact)), (counts, total, quotas)


def test_stratified_quotas_known_values() -> None:
    assert stratified_quotas(np.array([5, 5, 5]), 4).tolist() == [2, 1, 1]  # tie -> lower class id
    assert stratified_quotas(np.array([1, 1000]), 2).tolist() == [1, 1]  # minimum of one per class
    assert stratified_quotas(np.array([1, 1000]), 1).tolist() == [0, 1]  # fewer slots than classes
    with pytest.raises(ValueError, match=r"total=9 is out of range; expected 0 <= total <= 8"):
        stratified_quotas(np.array([4, 4]), 9)


# ---- property loop ----------------------------------------------------------------------------


def test_properties_over_many_seeds_and_sizes() -> None:
    for n, classes in ((12, 2), (37, 3), (90, 6)):
        labels = synthetic_labels(n, classes, seed=n)
        smallest = int(np.bincount(labels).min())
        for seed in range(25):
            for folds in (2, 3, 5):
                for size in (1, 2, 5):
                    for eval_max in (0, 3, 7):
                        _check_one(labels, "kfold", size, seed, folds, eval_max)
                        if size < smallest:
                            _check_one(labels, "per_class", size, seed, folds, eval_max)


def _check_one(labels: np.ndarray, protocol: str, size: int, seed: int, folds: int, eval_max: int) -> None:
    split = make_split(labels, protocol, size, seed, folds, eval_max)
    train, ev = split.train, split.eval
    n_train = size if protocol == "kfold" else size * int(labels.max() + 1)
    assert len(train) == n_train == len(set(train))
    assert ev and list(ev) == sorted(set(ev)) and not set(train) & set(ev)
    assert all(0 <= i < labels.size for i in train + ev)
    if eval_max:
        assert len(ev) <= eval_max
    assert make_split(labels, protocol, size, seed, folds, eval_max) == split


# ---- argument errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"protocol": "stratified"}, r"protocol='stratified' is unknown; expected one of \['kfold', 'per_class'\]"),
        ({"size": 0}, r"size=0 is invalid; expected an integer >= 1"),
        ({"size": 2.0}, r"size=2.0 is invalid; expected an integer >= 1"),
        ({"folds": 1}, r"folds=1 is invalid; expected an integer >= 2"),
        ({"eval_max": -1}, r"eval_max=-1 is invalid; expected an integer >= 0"),
        ({"seed": -3}, r"seed=-3 is invalid; expected an integer >= 0"),
        ({"size": 301}, r"size=301 exceeds the 300 examples outside the held-out fold"),
        ({"folds": 401}, r"folds=401 exceeds the 400 examples"),
        ({"labels": np.array([0.0, 1.0])}, r"dtype float64; expected a non-empty 1-D integer array"),
        ({"labels": np.array([], dtype=int)}, r"shape \(0,\).*expected a non-empty 1-D integer array"),
    ],
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    args = {"labels": LABELS, "protocol": "kfold", "size": 4, "seed": 0, "folds": 4, "eval_max": 0} | kwargs
    with pytest.raises(ValueError, match=match):
        make_split(**args)


# ---- the split file -----------------------------------------------------------------------------


def write_table(tmp_path: Path, labels: np.ndarray, card_extra: dict) -> tuple[Path, Path]:
    """A table and its card; ``{"table_sha256": SHA}`` in ``card_extra`` stands for the table's real checksum."""
    table = tmp_path / "toy.jsonl"
    rows = [json.dumps({"label": int(y), "text": f"t{i}", "text_pair": ""}, sort_keys=True) for i, y in enumerate(labels)]
    table.write_text("\n".join(rows) + "\n", encoding="utf-8")
    if card_extra.get("table_sha256") is SHA:
        card_extra = {**card_extra, "table_sha256": hashlib.sha256(table.read_bytes()).hexdigest()}
    card = tmp_path / "toy.card.json"
    card.write_text(json.dumps({"dataset": "toy", "n_examples": int(labels.size), **card_extra}), encoding="utf-8")
    return table, card


PARAMS = SampleParams(protocol="kfold", folds=4, eval_max=30, dev_ratio=0.0)
SHA = object()  # write_table: the real checksum of the table written


def write_split(table: Path, card: Path, params: SampleParams, dataset: str, size: int, seed: int, out_dir: Path) -> dict:
    """One seed through ``write_splits`` (the sample stage's function): its record."""
    return write_splits(table, card, params, dataset, size, [seed], out_dir)[seed]


def test_write_split_is_canonical_and_byte_stable(tmp_path: Path) -> None:
    table, card = write_table(tmp_path, LABELS, {"table_sha256": SHA})
    sha = hashlib.sha256(table.read_bytes()).hexdigest()
    dir_a, dir_b = tmp_path / "a" / "toy-8", tmp_path / "b" / "toy-8"
    record = write_split(table, card, PARAMS, "toy", 8, 1, dir_a)
    write_split(table, card, PARAMS, "toy", 8, 1, dir_b)
    out_a = dir_a / "1.json"
    assert out_a.read_bytes() == (dir_b / "1.json").read_bytes()
    assert json.loads(out_a.read_text()) == record
    split = make_split(LABELS, "kfold", 8, 1, 4, 30)
    assert record == {
        "dataset": "toy",
        "size": 8,
        "seed": 1,
        "protocol": "kfold",
        "folds": 4,
        "eval_fold": 1,
        "eval_max": 30,
        "dev_ratio": 0.0,
        "n_examples": 400,
        "table_sha256": sha,
        "train": list(split.train),
        "dev": [],
        "eval": list(split.eval),
    }
    check_split(record, "toy", 400, sha)
    assert [p.name for p in dir_a.parent.iterdir()] == ["toy-8"]  # no temp directory left behind
    assert [p.name for p in dir_a.iterdir()] == ["1.json"]


def test_write_splits_writes_every_seed_exactly_as_one_seed_alone(tmp_path: Path) -> None:
    """The per-(dataset, size) stage draws each seed's split exactly as a stage per seed did."""
    table, card = write_table(tmp_path, LABELS, {"table_sha256": SHA})
    params = SampleParams(protocol="kfold", folds=4, eval_max=30, dev_ratio=1.0)
    records = write_splits(table, card, params, "toy", 8, [0, 1, 2], tmp_path / "all")
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == [split_file(s) for s in (0, 1, 2)]
    for seed in (0, 1, 2):
        alone = write_split(table, card, params, "toy", 8, seed, tmp_path / f"alone-{seed}")
        assert alone == records[seed]
        assert (tmp_path / f"alone-{seed}" / split_file(seed)).read_bytes() == (tmp_path / "all" / split_file(seed)).read_bytes()
    assert records[0]["train"] != records[1]["train"]


def test_write_splits_leaves_nothing_when_a_seed_fails(tmp_path: Path) -> None:
    table, card = write_table(tmp_path, LABELS, {"table_sha256": SHA})
    with pytest.raises(ValueError, match="seed"):
        write_splits(table, card, PARAMS, "toy", 8, [0, -1], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_write_split_per_class_and_an_incomplete_card(tmp_path: Path) -> None:
    table, card = write_table(tmp_path, LABELS, {"table_sha256": SHA})
    params = SampleParams(protocol="per_class", folds=4, eval_max=0, dev_ratio=0.0)
    record = write_split(table, card, params, "toy", 3, 0, tmp_path / "s.json")
    assert record["eval_fold"] is None and len(record["train"]) == 12
    table, card = write_table(tmp_path, LABELS, {})
    with pytest.raises(ValueError, match=r"missing keys \['table_sha256'\]; expected a dataset card"):
        write_split(table, card, params, "toy", 3, 0, tmp_path / "t.json")
    assert not (tmp_path / "t.json").exists()


def test_write_split_refuses_a_table_edited_after_its_card(tmp_path: Path) -> None:
    table, card = write_table(tmp_path, LABELS, {"table_sha256": SHA})
    sha = json.loads(card.read_text())["table_sha256"]
    first, rest = table.read_text().split("\n", 1)
    row = json.loads(first)
    table.write_text(json.dumps({**row, "label": 1 - row["label"]}, sort_keys=True) + "\n" + rest)  # one label edited
    with pytest.raises(ValueError, match=rf"toy\.jsonl: sha256 [0-9a-f]{{64}} does not match the card's table_sha256 {sha}"):
        write_split(table, card, PARAMS, "toy", 8, 0, tmp_path / "s.json")
    assert not (tmp_path / "s.json").exists()


def test_write_split_rejects_mismatched_card_and_bad_labels(tmp_path: Path) -> None:
    table, card = write_table(tmp_path, LABELS, {"table_sha256": SHA})
    with pytest.raises(ValueError, match=r"dataset='toy' but expected 'mr'"):
        write_split(table, card, PARAMS, "mr", 8, 0, tmp_path / "s.json")
    table.write_text('{"label": 0, "text": "a", "text_pair": ""}\n{"label": "pos", "text": "b", "text_pair": ""}\n', encoding="utf-8")
    card.write_text(
        json.dumps({**json.loads(card.read_text()), "n_examples": 2, "table_sha256": hashlib.sha256(table.read_bytes()).hexdigest()})
    )
    with pytest.raises(ValueError, match=r"toy.jsonl:2: label 'pos' is not an integer"):
        write_split(table, card, PARAMS, "toy", 1, 0, tmp_path / "s.json")
    assert not (tmp_path / "s.json").exists()


# ---- check_split --------------------------------------------------------------------------------


def good_record() -> dict:
    split = make_split(LABELS, "kfold", 8, 0, 4, 20, dev_ratio=1.0)
    return {
        "dataset": "toy",
        "size": 8,
        "seed": 0,
        "protocol": "kfold",
        "folds": 4,
        "eval_fold": 0,
        "eval_max": 20,
        "dev_ratio": 1.0,
        "n_examples": 400,
        "table_sha256": "cd" * 32,
        "train": list(split.train),
        "dev": list(split.dev),
        "eval": list(split.eval),
    }


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"dataset": "mr"}, r"dataset='mr' does not match the table's 'toy'"),
        ({"n_examples": 401}, r"n_examples=401 does not match the table's 400"),
        ({"table_sha256": "00"}, r"table_sha256='00' does not match"),
        ({"train": [400] + list(range(7))}, r"train: index 400 is out of range; expected 0 <= index < 400"),
        ({"eval": [-1, 5]}, r"eval: index -1 is out of range"),
        ({"eval": [5, 3]}, r"not sorted ascending"),
        ({"train": []}, r"train: expected a non-empty list of integer row indices"),
        ({"train": [1, 1, 2, 3, 4, 5, 6, 7]}, r"train: duplicate row indices"),
        ({"size": 9}, r"train: 8 rows do not fit protocol='kfold' size=9"),
    ],
)
def test_check_split_errors(change: dict, match: str) -> None:
    record = good_record() | change
    with pytest.raises(ValueError, match=match):
        check_split(record, "toy", 400, "cd" * 32)


def test_check_split_overlap_and_missing_key() -> None:
    record = good_record()
    record["eval"] = sorted(record["eval"] + [record["train"][0]])
    with pytest.raises(ValueError, match=rf"rows \[{record['train'][0]}\] are in both train and eval"):
        check_split(record, "toy", 400, "cd" * 32)
    del record["table_sha256"]
    with pytest.raises(ValueError, match=r"missing keys \['table_sha256'\]"):
        check_split(record, "toy", 400, "cd" * 32)


@pytest.mark.parametrize(("a", "b"), [("train", "dev"), ("dev", "eval")])
def test_check_split_refuses_a_dev_row_shared_with_train_or_eval(a: str, b: str) -> None:
    record = good_record()
    record[b] = sorted(record[b] + [record[a][0]]) if b != "train" else record[b]
    with pytest.raises(ValueError, match=rf"rows \[{record[a][0]}\] are in both {a} and {b}"):
        check_split(record, "toy", 400, "cd" * 32)


# ---- the development set ------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["kfold", "per_class"])
def test_dev_set_is_disjoint_sized_and_leaves_train_and_eval_of_earlier_splits_unchanged(protocol: str) -> None:
    size = 8 if protocol == "kfold" else 3
    without = make_split(LABELS, protocol, size, 2, 4, 30 if protocol == "kfold" else 0)
    split = make_split(LABELS, protocol, size, 2, 4, 30 if protocol == "kfold" else 0, dev_ratio=1.0)
    assert split.train == without.train  # the fourth stream does not move the other three
    if protocol == "kfold":
        assert split.eval == without.eval and len(split.dev) == size
    else:
        counts = np.bincount(LABELS[list(split.dev)])
        assert counts.tolist() == [size] * 4  # `size` more rows of every class
        assert set(split.eval) == set(without.eval) - set(split.dev)
    train, dev, ev = set(split.train), set(split.dev), set(split.eval)
    assert not (train & dev or dev & ev or train & ev)
    assert list(split.dev) == sorted(split.dev)
    again = make_split(LABELS, protocol, size, 2, 4, 30 if protocol == "kfold" else 0, dev_ratio=1.0)
    assert again == split


def test_kfold_dev_rows_come_from_the_training_folds_not_the_held_out_fold() -> None:
    for seed in range(4):
        split = make_split(LABELS, "kfold", 8, seed, 4, 0, dev_ratio=2.0)
        held_out = set(make_split(LABELS, "kfold", 8, seed, 4, 0).eval)
        assert len(split.dev) == 16 and not set(split.dev) & held_out


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dev_ratio": -1}, r"dev_ratio=-1 is invalid; expected a number in \[0, 100\]"),
        ({"dev_ratio": 100, "size": 200}, r"dev_ratio=100 asks for 20000 development rows but only 100"),
    ],
)
def test_dev_ratio_errors(kwargs: dict, match: str) -> None:
    args = {"labels": LABELS, "protocol": "kfold", "size": 4, "seed": 0, "folds": 4, "eval_max": 0} | kwargs
    with pytest.raises(ValueError, match=match):
        make_split(**args)


# ---- real data ----------------------------------------------------------------------------------


@pytest.mark.skipif(not TREC.exists(), reason=f"{TREC} not present")
def test_real_trec_per_class_and_kfold() -> None:
    labels = np.array([int(line.rsplit(b"\t", 1)[1]) for line in TREC.read_bytes().splitlines() if line.strip()])
    assert sorted(set(labels.tolist())) == list(range(6))
    split = make_split(labels, "per_class", 8, 0, 4, 200)
    assert np.bincount(labels[list(split.train)], minlength=6).tolist() == [8] * 6
    assert len(split.eval) == 200 and set(labels[list(split.eval)].tolist()) == set(range(6))
    kfold = make_split(labels, "kfold", 16, 2, 4, 200)
    assert len(kfold.train) == 16 and len(kfold.eval) == 200 and not set(kfold.train) & set(kfold.eval)
