"""Samplers, optimiser groups, the training loop and the run directory (tiny models, CPU)."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import logging
import math
import subprocess
import sys
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModel

from fewshot_dml.config.params import load_params
from fewshot_dml.config.sections import training_steps
from fewshot_dml.core import rundir
from fewshot_dml.core.rundir import CURVE_COLUMNS, write_npz
from fewshot_dml.core.timing import Phases
from fewshot_dml.data.table import make_table
from fewshot_dml.infer import inference
from fewshot_dml.losses import get_spec
from fewshot_dml.model.batching import balanced_batches, collate, make_batches, random_batches, tokenize
from fewshot_dml.model.classifier import HEAD_FILE, load_classifier
from fewshot_dml.train import finetune
from fewshot_dml.train import run as run_module
from fewshot_dml.train import setfit as setfit_module
from fewshot_dml.train.loop import build_optimizer, embed
from fewshot_dml.train.objective import Objective, ObjectiveOutput, build_objective
from fewshot_dml.train.run import train_group, train_run
from tiny_models import tiny_train_params as train_params

ROOT = Path(__file__).resolve().parents[1]
PARAMS = load_params(ROOT / "params.yaml")
LOSSES = PARAMS.losses

POSITIVE = [
    "a wonderful film",
    "the acting was great",
    "she loves the story",
    "great camera , sharp pictures",
    "the battery lasts long",
    "a wonderful surprise",
    "profits rose sharply",
    "it is just fine",
]
NEGATIVE = [
    "a dull , boring film",
    "a terrible script",
    "the screen broke",
    "awful product",
    "shares fell",
    "weaker results",
    "she hates the ending",
    "boring and dull",
]


def write_dataset(root: Path, dataset: str, rows: list[tuple[int, str, str]], label_names: list[str]) -> tuple[Path, Path]:
    """A table and its card as the fetch stage writes them (docs/architecture.md)."""
    table = root / f"{dataset}.jsonl"
    lines = [json.dumps({"label": y, "text": t, "text_pair": p}, ensure_ascii=False, sort_keys=True) for y, t, p in rows]
    table.write_text("\n".join(lines) + "\n", encoding="utf-8")
    card = root / f"{dataset}.card.json"
    card.write_text(
        json.dumps(
            {
                "dataset": dataset,
                "label_names": label_names,
                "n_examples": len(rows),
                "pair": any(p for _, _, p in rows),
                "table_sha256": hashlib.sha256(table.read_bytes()).hexdigest(),
            }
        )
    )
    return table, card


def write_split(
    root: Path, card_path: Path, train: list[int], eval_: list[int], seed: int, dataset: str | None = None, dev: list[int] | None = None
) -> Path:
    card = json.loads(card_path.read_text())
    split = {
        "dataset": dataset or card["dataset"],
        "size": len(train),
        "seed": seed,
        "protocol": "kfold",
        "folds": 2,
        "eval_fold": 0,
        "eval_max": 0,
        "dev_ratio": len(dev or []) / len(train),
        "n_examples": card["n_examples"],
        "table_sha256": card["table_sha256"],
        "train": train,
        "dev": sorted(dev or []),
        "eval": sorted(eval_),
    }
    path = root / f"{split['dataset']}-{len(train)}-{seed}.json"
    path.write_text(json.dumps(split))
    return path


@pytest.fixture
def toy(tmp_path: Path) -> tuple[Path, Path, Path]:
    """16 rows of 2 classes; 8 training rows (4 per class, in draw order), 8 evaluation rows."""
    rows = [(1, t, "") for t in POSITIVE] + [(0, t, "") for t in NEGATIVE]
    table, card = write_dataset(tmp_path, "toy", rows, ["negative", "positive"])
    split = write_split(tmp_path, card, [0, 8, 1, 9, 2, 10, 3, 11], [4, 5, 6, 7, 12, 13, 14, 15], seed=0)
    return table, card, split


def run(
    model_dir: Path,
    toy: tuple[Path, Path, Path],
    out: Path,
    loss: str = "proxyanchor",
    split: Path | None = None,
    phases: Phases | None = None,
    **train,
) -> dict:
    table, card, default_split = toy
    return train_run(train_params(model_dir, **train), LOSSES[loss], table, card, split or default_split, out, phases)


def rebuilt_scores(run_dir: Path, part: str = "eval") -> np.ndarray:
    """The class scores as the infer stage computed them before they were stored: the loss module
    rebuilt from ``loss_state.pt`` and applied to the stored float16 embeddings."""
    info = json.loads((run_dir / "run.json").read_text())
    spec = get_spec(info["loss"]["base"])
    with torch.random.fork_rng(devices=[]):
        module = spec.build(info["num_classes"], info["embedding_size"], info["loss"]["hparams"])
    module.load_state_dict(torch.load(run_dir / "loss_state.pt", weights_only=True))
    with np.load(run_dir / f"{part}.npz") as npz, torch.no_grad():
        return spec.class_scores(module.float().eval(), torch.from_numpy(npz["embeddings"].astype(np.float32))).numpy()


def read_curve(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "curve.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


# ---- samplers ----


def test_balanced_batches_handle_six_classes_and_a_single_example_class() -> None:
    labels = [0, 1, 1, 1, 2, 2, 3, 3, 3, 3, 4, 4, 4, 5, 5, 5]  # class 0 has one example
    sizes = Counter(labels)
    it = balanced_batches(labels, 16, torch.Generator().manual_seed(0))
    batches = [next(it) for _ in range(30)]
    for batch in batches:
        counts = Counter(labels[i] for i in batch)
        assert len(batch) == 16 and set(counts) == set(range(6)) and min(counts.values()) >= 2
        for c, n in counts.items():  # an example repeats only when its class has fewer examples than slots
            assert len({i for i in batch if labels[i] == c}) == min(n, sizes[c])
    used = Counter(i for batch in batches for i in batch)
    assert set(used) == set(range(16))  # cycles through the whole few-shot set
    again = balanced_batches(labels, 16, torch.Generator().manual_seed(0))
    assert [next(again) for _ in range(30)] == batches
    other = balanced_batches(labels, 16, torch.Generator().manual_seed(1))
    assert [next(other) for _ in range(30)] != batches


def test_balanced_batches_cycle_classes_and_examples_when_few_fit() -> None:
    labels = [c for c in range(6) for _ in range(4)]
    it = balanced_batches(labels, 4, torch.Generator().manual_seed(0))
    batches = [next(it) for _ in range(12)]  # 2 classes x 2 examples each
    for batch in batches:
        counts = Counter(labels[i] for i in batch)
        assert len(counts) == 2 and set(counts.values()) == {2}
    for start in (0, 3, 6, 9):  # every 3 batches see every class once
        assert {labels[i] for b in batches[start : start + 3] for i in b} == set(range(6))
    assert Counter(i for b in batches for i in b) == Counter({i: 2 for i in range(24)})  # each example once a round


def test_random_batches_are_shuffled_epochs() -> None:
    it = random_batches(10, 4, torch.Generator().manual_seed(0))
    batches = [next(it) for _ in range(6)]
    assert [len(b) for b in batches] == [4, 4, 2, 4, 4, 2]
    assert sorted(sum(batches[:3], [])) == list(range(10)) == sorted(sum(batches[3:], []))
    assert batches[:3] != batches[3:]
    with pytest.raises(ValueError, match=r"train.sampler='mper'.*\['random', 'balanced'\]"):
        make_batches("mper", [0, 1], 2, torch.Generator())


# ---- optimiser ----


def test_optimizer_groups(tiny_bert_dir: Path) -> None:
    train = train_params(tiny_bert_dir, lr=1e-4, head_lr=1e-2, weight_decay=0.05)
    model, _ = load_classifier(train, num_labels=2)
    objective = build_objective(LOSSES["proxyanchor"], 2, model.embedding_size)
    groups = build_optimizer(model, objective, train, LOSSES["proxyanchor"]).param_groups
    names = {id(p): n for n, p in [*model.named_parameters(), *(("proxy", p) for p in objective.proxy_parameters())]}
    by = [(g["lr"], g["weight_decay"], {names[id(p)] for p in g["params"]}) for g in groups]
    assert [(lr, wd) for lr, wd, _ in by] == [(1e-4, 0.05), (1e-4, 0.0), (1e-2, 0.05), (1e-2, 0.0), (0.01, 0.0)]
    assert all(n.endswith("weight") and "LayerNorm" not in n for n in by[0][2])
    assert "encoder.embeddings.LayerNorm.weight" in by[1][2] and all(n.endswith("bias") or "LayerNorm" in n for n in by[1][2])
    assert by[2][2] == {"dense.weight", "out_proj.weight"} and by[3][2] == {"dense.bias", "out_proj.bias"}
    assert by[4][2] == {"proxy"}
    assert sum(len(g["params"]) for g in groups) == len(names)


def test_layerwise_decay_gives_each_layer_its_rate(tiny_bert_dir: Path) -> None:
    train = train_params(tiny_bert_dir, lr=1e-4, head_lr=1e-2, llrd=0.5)
    model, _ = load_classifier(train, num_labels=2)
    objective = build_objective(LOSSES["cce"], 2, model.embedding_size)
    groups = build_optimizer(model, objective, train, LOSSES["cce"]).param_groups
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    named = dict(model.encoder.named_parameters())
    # 2 layers: the top layer (and the pooler above it) at lr, layer 0 at lr/2, the embeddings at lr/4.
    assert lr_of[id(named["encoder.layer.1.attention.self.query.weight"])] == 1e-4
    assert lr_of[id(named["pooler.dense.weight"])] == 1e-4
    assert lr_of[id(named["encoder.layer.0.attention.self.query.weight"])] == 5e-5
    assert lr_of[id(named["embeddings.word_embeddings.weight"])] == 2.5e-5
    assert lr_of[id(model.out_proj.weight)] == 1e-2
    assert len(lr_of) == len(list(model.parameters()))
    assert groups[0]["lr"] == 1e-4  # the curve logs the top layer's rate


def test_epochs_set_the_number_of_steps(tiny_bert_dir: Path, toy: tuple[Path, Path, Path], tmp_path: Path) -> None:
    assert training_steps(train_params(tiny_bert_dir, steps=7), 16) == 7
    assert training_steps(train_params(tiny_bert_dir, batch_size=16, epochs=20), 16) == 20
    assert training_steps(train_params(tiny_bert_dir, batch_size=4, epochs=3), 10) == 8  # ceil(30 / 4)
    metrics = run(tiny_bert_dir, toy, tmp_path / "out", loss="cce", steps=50, epochs=2, batch_size=4)
    assert metrics["steps"] == 4 and len(read_curve(tmp_path / "out")) == 4  # 2 passes over 8 rows


# ---- the run directory ----


@pytest.mark.parametrize(("save_weights", "kept"), [(("mr", "toy"), True), (("mr",), False), (False, False)])
def test_weights_are_kept_for_the_listed_datasets_only(
    tiny_bert_dir: Path, toy: tuple[Path, Path, Path], tmp_path: Path, save_weights: object, kept: bool
) -> None:
    run(tiny_bert_dir, toy, tmp_path / "out", loss="cce", steps=1, save_weights=save_weights)
    assert (tmp_path / "out" / "model").is_dir() is kept


def test_run_writes_every_artifact(tiny_roberta_dir: Path, toy: tuple[Path, Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "runs" / "toy-8-0-proxyanchor"
    phases = Phases()
    metrics = run(tiny_roberta_dir, toy, out, steps=3, save_weights=True, phases=phases)
    # The wall time lives outside the run directory (a DVC output): it would change the output's hash.
    assert set(phases.seconds) == {"read", "load", "fit", "embed", "write"} and min(phases.seconds.values()) > 0
    assert {p.name for p in out.iterdir()} == {
        "eval.npz",
        "dev.npz",
        "train.npz",
        "loss_state.pt",
        "curve.csv",
        "metrics.json",
        "run.json",
        "model",
    }
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temporary directory left behind
    with np.load(out / "eval.npz") as ev:
        assert sorted(ev.files) == ["embeddings", "indices", "labels", "logits", "scores"]
        assert ev["scores"].dtype == np.float32 and ev["scores"].shape == (8, 2)
        assert ev["logits"].dtype == np.float32 and ev["logits"].shape == (8, 2)
        assert ev["embeddings"].dtype == np.float16 and ev["embeddings"].shape == (8, 32)
        assert ev["indices"].dtype == np.int64 and ev["indices"].tolist() == [4, 5, 6, 7, 12, 13, 14, 15]
        assert ev["labels"].dtype == np.int64 and ev["labels"].tolist() == [1] * 4 + [0] * 4
        accuracy = float(np.mean(ev["logits"].argmax(1) == ev["labels"]))
    with np.load(out / "train.npz") as tr:
        assert sorted(tr.files) == ["embeddings", "indices", "labels"]
        assert tr["indices"].tolist() == [0, 8, 1, 9, 2, 10, 3, 11] and tr["labels"].tolist() == [1, 0] * 4
        assert tr["embeddings"].shape == (8, 32) and tr["embeddings"].dtype == np.float16
    state = torch.load(out / "loss_state.pt", weights_only=True)
    assert [tuple(v.shape) for v in state.values()] == [(2, 32)]  # ProxyAnchor: one proxy per class
    curve = read_curve(out)
    assert [r["step"] for r in curve] == ["1", "2", "3"] and list(curve[0]) == list(CURVE_COLUMNS)
    assert float(curve[0]["lr"]) == 0.0 and float(curve[1]["lr"]) == pytest.approx(1e-3)  # 1 warmup step, linear
    assert all(r["pairs_ok"] == "1" and float(r["dml"]) > 0 for r in curve)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == metrics and metrics["accuracy"] == pytest.approx(accuracy)
    assert set(metrics) == {
        "accuracy",
        "macro_f1",
        "dev_accuracy",
        "dev_macro_f1",
        "majority_accuracy",
        "n_train",
        "n_dev",
        "n_eval",
        "num_classes",
        "steps",
        "selected_step",
        "dev_checkpoints",
        "batches_without_pairs",
        "device",
        "degenerate",
    }
    assert metrics["dev_accuracy"] is None and metrics["n_dev"] == 0  # this split has no development set
    assert metrics["majority_accuracy"] == 0.5  # 8 of 16 rows per class: class 0 (lowest id) on a 4/4 eval set
    assert isinstance(metrics["degenerate"], list)
    assert (metrics["n_train"], metrics["n_eval"], metrics["steps"], metrics["device"]) == (8, 8, 3, "cpu")
    info = json.loads((out / "run.json").read_text())
    assert (info["dataset"], info["size"], info["seed"], info["arm"]) == ("toy", 8, 0, "proxyanchor")
    assert info["loss"] == {
        "name": "proxyanchor",
        "base": "proxyanchor",
        "beta": 0.4,
        "proxy_lr": 0.01,
        "hparams": {"margin": 0.1, "alpha": 0.1},
        "dml_on": "pooled",
        "metrix": None,
    }
    assert info["train"]["steps"] == 3 and info["embedding_size"] == 32 and info["label_names"] == ["negative", "positive"]
    assert set(info["versions"]) == {"torch", "transformers", "pytorch_metric_learning"}
    assert AutoModel.from_pretrained(out / "model").config.hidden_size == 32
    assert torch.load(out / "model" / HEAD_FILE, weights_only=True)["out_proj"]["weight"].shape == (2, 32)
    artifacts = inference.load_run(out)  # the infer stage reads what the train stage wrote
    assert artifacts.eval_scores is not None and artifacts.eval_logits.shape == (8, 2)


def test_cpu_runs_are_deterministic_and_arms_share_the_start(tiny_bert_dir: Path, toy: tuple[Path, Path, Path], tmp_path: Path) -> None:
    table, card, split = toy
    other_seed = write_split(tmp_path, card, [0, 8, 1, 9, 2, 10, 3, 11], [4, 5, 6, 7, 12, 13, 14, 15], seed=1)
    a, b, c, base = (tmp_path / name for name in ("a", "b", "c", "cce"))
    run(tiny_bert_dir, toy, a, pooling="mean")
    run(tiny_bert_dir, toy, b, pooling="mean")
    run(tiny_bert_dir, toy, c, pooling="mean", split=other_seed)
    run(tiny_bert_dir, toy, base, loss="cce", pooling="mean")
    for name in ("eval.npz", "train.npz", "loss_state.pt", "curve.csv", "run.json", "metrics.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    # Every file of the run directory is identical (what DVC hashes), so a retrain reruns nothing downstream.
    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())
    assert all((a / p.name).read_bytes() == (b / p.name).read_bytes() for p in a.iterdir())
    assert (a / "eval.npz").read_bytes() != (c / "eval.npz").read_bytes()
    assert read_curve(a)[0]["cce"] == read_curve(base)[0]["cce"]  # same head, batch and dropout at step 1
    assert torch.load(base / "loss_state.pt", weights_only=True) == {}
    assert all(r["dml"] == "" for r in read_curve(base))


def test_bf16_training_is_deterministic_and_differs_from_fp32_only_in_precision(
    tiny_bert_dir: Path, toy: tuple[Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """train.precision=bf16 autocasts the forward pass (the loss terms stay float32): the same seed gives
    the same bytes twice, the run records its precision, and its curve moves off fp32's only slightly."""
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"avx512_bf16": True})  # bf16 on any CPU (emulated where not native)
    runs = {name: tmp_path / name for name in ("fp32", "bf16", "bf16-again")}
    for name, out in runs.items():
        run(tiny_bert_dir, toy, out, precision=name.split("-")[0], steps=3)
    assert all(f.read_bytes() == (runs["bf16-again"] / f.name).read_bytes() for f in runs["bf16"].iterdir())
    assert json.loads((runs["bf16"] / "run.json").read_text())["train"]["precision"] == "bf16"
    fp32, bf16 = read_curve(runs["fp32"]), read_curve(runs["bf16"])
    assert [r["loss"] for r in fp32] != [r["loss"] for r in bf16]
    assert np.allclose([float(r["loss"]) for r in fp32], [float(r["loss"]) for r in bf16], rtol=0.05)


@pytest.mark.parametrize("arm", ["proxyanchor", "setfit"])
def test_one_process_trains_every_seed_exactly_as_one_process_per_seed(
    arm: str, tiny_bert_dir: Path, toy: tuple[Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """train_group (the train stage) gives each seed the bytes of a run trained alone, in a fresh process,
    though it reads the table and loads the model once and trains a copy of it per seed."""
    table, card, split0 = toy
    splits = tmp_path / "splits"
    splits.mkdir()
    split0.rename(splits / "0.json")
    write_split(tmp_path, card, [8, 0, 9, 1, 10, 2, 11, 3], [4, 5, 6, 7, 12, 13, 14, 15], seed=1).rename(splits / "1.json")
    phases = Phases()
    train = train_params(tiny_bert_dir, steps=3)
    calls: list[str] = []
    for module, name in ((run_module, "read_labelled_table"), (finetune, "load_pretrained")):
        monkeypatch.setattr(module, name, lambda *a, _f=getattr(module, name), _n=name: calls.append(_n) or _f(*a))
    monkeypatch.setattr(
        "fewshot_dml.train.setfit.load_setfit", lambda *a, _f=setfit_module.load_setfit: calls.append("load_setfit") or _f(*a)
    )
    metrics = train_group(train, LOSSES[arm], table, card, splits, [1, 0], tmp_path / "group", phases)
    assert sorted(metrics) == [0, 1] and sorted(p.name for p in (tmp_path / "group").iterdir()) == ["0", "1"]
    assert calls == ["read_labelled_table", "load_setfit" if arm == "setfit" else "load_pretrained"]  # once for both seeds
    first = tmp_path / "alone-1"  # the group's first seed, alone in this process
    train_run(train, LOSSES[arm], table, card, splits / "1.json", first)
    assert all(f.read_bytes() == (first / f.name).read_bytes() for f in (tmp_path / "group" / "1").iterdir())
    assert phases.seconds["fit"] > 0
    params = tmp_path / "params.json"
    params.write_text(json.dumps(dataclasses.asdict(train)))
    for seed in (0,):  # trained second in the group: alone in a new interpreter, nothing carried over from seed 1
        code = (
            "import json, sys; from pathlib import Path; from fewshot_dml.config.sections import TrainParams; "
            "from fewshot_dml.train.run import train_run; from test_training import LOSSES; "
            f"t = TrainParams(**json.loads(Path({str(params)!r}).read_text())); "
            f"train_run(t, LOSSES[{arm!r}], Path({str(table)!r}), Path({str(card)!r}), "
            f"Path({str(splits / f'{seed}.json')!r}), Path({str(tmp_path / f'alone-{seed}')!r}))"
        )
        subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parent, check=True)
        group, alone = tmp_path / "group" / str(seed), tmp_path / f"alone-{seed}"
        assert sorted(p.name for p in group.iterdir()) == sorted(p.name for p in alone.iterdir())
        for f in group.iterdir():
            assert f.read_bytes() == (alone / f.name).read_bytes(), (seed, f.name)
    bad = train_params(tiny_bert_dir, steps=3)
    with pytest.raises(FileNotFoundError):
        train_group(bad, LOSSES[arm], table, card, splits, [0, 2], tmp_path / "partial")
    assert not (tmp_path / "partial").exists()  # a seed that fails leaves no group behind


def test_the_development_set_is_embedded_and_scored_apart_from_eval(
    tiny_bert_dir: Path, toy: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    table, card, _ = toy
    split = write_split(tmp_path, card, [0, 8, 1, 9, 2, 10], [4, 5, 12, 13], seed=0, dev=[3, 11, 6, 14])
    out = tmp_path / "dev-run"
    metrics = run(tiny_bert_dir, toy, out, split=split, steps=2)
    with np.load(out / "dev.npz") as dev, np.load(out / "eval.npz") as ev:
        assert dev["indices"].tolist() == [3, 6, 11, 14] and dev["labels"].tolist() == [1, 1, 0, 0]
        assert dev["logits"].shape == (4, 2) and dev["embeddings"].shape == (4, 32)
        assert metrics["dev_accuracy"] == pytest.approx(float(np.mean(dev["logits"].argmax(1) == dev["labels"])))
        assert ev["indices"].tolist() == [4, 5, 12, 13]
    assert metrics["n_dev"] == 4


@pytest.mark.parametrize("pair", [False, True])
def test_setfit_arm_is_deterministic_and_writes_every_artifact(tiny_bert_dir: Path, tmp_path: Path, pair: bool) -> None:
    rows = [(1, t, "and so on" if pair else "") for t in POSITIVE] + [(0, t, "but no" if pair else "") for t in NEGATIVE]
    table, card = write_dataset(tmp_path, "toy", rows, ["negative", "positive"])
    split = write_split(tmp_path, card, [0, 8, 1, 9, 2, 10], [4, 5, 12, 13], seed=0, dev=[3, 11])
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        metrics = run(tiny_bert_dir, (table, card, split), out, loss="setfit")
    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())
    for p in a.iterdir():
        assert p.read_bytes() == (b / p.name).read_bytes(), p.name
    curve = read_curve(a)
    assert curve and all(r["cce"] == "" and float(r["dml"]) >= 0 for r in curve)  # SetFit's pair loss per step
    assert metrics["steps"] == len(curve) and metrics["n_dev"] == 2 and metrics["dev_accuracy"] is not None
    assert "setfit" in json.loads((a / "run.json").read_text())["versions"]
    result = inference.run_inference(a, PARAMS.infer, tmp_path / "a.json")
    assert result["proxy"] is None and result["classifier"]["accuracy"] == pytest.approx(metrics["accuracy"])


@pytest.mark.parametrize("iterations", [0, 1, 3])
def test_setfit_num_iterations_sets_the_pairs_per_example(
    iterations: int, tiny_bert_dir: Path, toy: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """losses.setfit.num_iterations = n: 2n pairs per few-shot example in one epoch (the paper's recipe, n = 20);
    0: the library's default oversampling, as before the param existed."""
    table, card, _ = toy
    split = write_split(tmp_path, card, [0, 8, 1, 9, 2, 10], [4, 5, 12, 13], seed=0)
    section = dataclasses.replace(LOSSES["setfit"], hparams={**LOSSES["setfit"].hparams, "num_iterations": iterations, "batch_size": 4})
    metrics = train_run(train_params(tiny_bert_dir), section, table, card, split, tmp_path / "run")
    # Oversampling: 3 examples per class give 6 positive pairs each (self-pairs included), 12 in all, and
    # the 9 negative pairs are oversampled to 12: 24 pairs, 6 steps of 4.
    assert metrics["steps"] == (math.ceil(2 * iterations * 6 / 4) if iterations else 6)


def test_saved_setfit_models_are_byte_identical_under_any_string_hashing_and_folder(tiny_bert_dir: Path, tmp_path: Path) -> None:
    # SetFit writes config_setfit.json from a set of names, whose order follows PYTHONHASHSEED (per process):
    # with the library's save_pretrained alone these two processes wrote two different files.
    import os

    script = (
        "import sys; from setfit import SetFitModel; from fewshot_dml.train.setfit import save_setfit; "
        "save_setfit(SetFitModel.from_pretrained(sys.argv[1]), sys.argv[2])"
    )
    # Two hash seeds under which SetFit's set of names iterates in different orders (checked here, so the
    # test keeps its power if Python's hashing changes).
    seeds = ("0", "2")
    order = 'print(list({"normalize_embeddings", "labels"}))'
    assert (
        len(
            {
                subprocess.run(
                    [sys.executable, "-c", order], capture_output=True, text=True, check=True, env={**os.environ, "PYTHONHASHSEED": seed}
                ).stdout
                for seed in seeds
            }
        )
        == 2
    )
    configs = set()
    for seed in seeds:
        subprocess.run(
            [sys.executable, "-c", script, str(tiny_bert_dir), str(tmp_path / seed)],
            check=True,
            capture_output=True,
            env={**os.environ, "PYTHONHASHSEED": seed, "HF_HUB_OFFLINE": "1"},
        )
        configs.add((tmp_path / seed / "config_setfit.json").read_text())
    (config,) = configs
    assert list(json.loads(config)) == sorted(json.loads(config))
    # Every file, the model card too: SetFit named the folder (here under /tmp) as the model id in it.
    files = [{p.relative_to(tmp_path / seed): p.read_bytes() for p in (tmp_path / seed).rglob("*") if p.is_file()} for seed in seeds]
    assert files[0] == files[1] and any(p.name == "README.md" for p in files[0])


def test_setfit_arm_without_the_library_says_how_to_install_it(
    tiny_bert_dir: Path, toy: tuple[Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "setfit", None)  # `import setfit` raises ImportError
    with pytest.raises(ImportError, match=r"the setfit arm needs the `setfit` library .*pip install 'setfit"):
        run(tiny_bert_dir, toy, tmp_path / "out", loss="setfit")
    assert not (tmp_path / "out").exists()


def test_embed_returns_input_order(tiny_bert_dir: Path) -> None:
    torch.manual_seed(0)
    model, tok = load_classifier(train_params(tiny_bert_dir, pooling="mean"), num_labels=2)
    table = make_table([0] * 5, ["a much longer sentence about the film", "short", "a dull , boring film", "ok", "fine ."], [""] * 5)
    features = tokenize(tok, table, range(5), 16, pair=False)
    logits, pooled = embed(model, tok, features, 2, torch.device("cpu"))  # length-sorted batches inside
    assert logits.dtype == pooled.dtype == np.float32 and pooled.shape == (5, 32)
    for i, feature in enumerate(features):
        one_logits, one_pooled = embed(model, tok, [feature], 1, torch.device("cpu"))
        np.testing.assert_allclose(pooled[i], one_pooled[0], atol=1e-5)
        np.testing.assert_allclose(logits[i], one_logits[0], atol=1e-5)


def test_embed_under_inference_mode_gives_the_bytes_of_no_grad_and_training_goes_on(tiny_bert_dir: Path) -> None:
    """embed runs under torch.inference_mode (cheaper than no_grad): the same float32 bytes as a no_grad forward of
    the same length-sorted batches, and the model trains afterwards (bench/time_to_accuracy.py evaluates mid-run)."""
    torch.manual_seed(0)
    model, tok = load_classifier(train_params(tiny_bert_dir, pooling="mean"), num_labels=2)
    table = make_table([0, 1, 0], ["a much longer sentence about the film", "short", "a dull , boring film"], [""] * 3)
    features = tokenize(tok, table, range(3), 16, pair=False)
    logits, pooled = embed(model, tok, features, 2, torch.device("cpu"))
    order = np.argsort([len(f["input_ids"]) for f in features], kind="stable")
    with torch.no_grad():
        parts = [model(collate(tok, [features[i] for i in order[k : k + 2]], torch.device("cpu"))) for k in (0, 2)]
    inverse = np.argsort(order, kind="stable")
    assert logits.tobytes() == torch.cat([p[0] for p in parts]).numpy()[inverse].tobytes()
    assert pooled.tobytes() == torch.cat([p[1] for p in parts]).numpy()[inverse].tobytes()
    model.train()
    batch = collate(tok, features, torch.device("cpu"))
    model(batch)[0].sum().backward()  # no inference tensor was left in the model
    assert all(p.grad is not None for p in model.head_parameters())


def test_write_npz_is_loadable_and_timestamp_free(tmp_path: Path) -> None:
    write_npz(tmp_path / "x.npz", a=np.arange(3, dtype=np.int64), b=np.ones((2, 2), np.float16))
    with np.load(tmp_path / "x.npz") as npz:
        assert npz["a"].tolist() == [0, 1, 2] and npz["b"].dtype == np.float16
    with zipfile.ZipFile(tmp_path / "x.npz") as archive:
        assert {i.date_time for i in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_single_class_batches_are_counted(
    tiny_bert_dir: Path, toy: tuple[Path, Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    one_class = write_split(tmp_path, toy[1], [0, 1, 2, 3], [4, 5, 12, 13], seed=2)
    with caplog.at_level(logging.WARNING, logger="fewshot_dml.train.run"):
        metrics = run(tiny_bert_dir, toy, tmp_path / "out", loss="supcon", split=one_class, steps=2)
    assert metrics["batches_without_pairs"] == 2
    assert "2 of 2 batches had no positive and negative pair" in caplog.text
    assert [r["pairs_ok"] for r in read_curve(tmp_path / "out")] == ["0", "0"]


# ---- errors ----


def test_pair_loss_with_random_sampler_is_rejected(tiny_bert_dir: Path, toy: tuple[Path, Path, Path], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"loss 'supcon' needs >= 2 examples.*set train.sampler: balanced"):
        run(tiny_bert_dir, toy, tmp_path / "out", loss="supcon", sampler="random")
    assert not (tmp_path / "out").exists()


def test_non_finite_loss_names_the_step(
    tiny_bert_dir: Path, toy: tuple[Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    real_forward = Objective.forward

    def forward(self: Objective, logits: torch.Tensor, embeddings: torch.Tensor, labels: torch.Tensor, *rest: object) -> ObjectiveOutput:
        out = real_forward(self, logits, embeddings, labels, *rest)
        calls.append(1)
        if len(calls) < 2:
            return out
        nan = out.dml * float("nan")
        return ObjectiveOutput(out.total + nan, out.cce, nan, out.pairs_ok)

    monkeypatch.setattr(Objective, "forward", forward)
    with pytest.raises(FloatingPointError, match=r"non-finite loss at step 2/3 .*total=nan, cce=[0-9.]+, dml=nan"):
        run(tiny_bert_dir, toy, tmp_path / "runs" / "out")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_failure_while_writing_leaves_no_run_directory(
    tiny_bert_dir: Path, toy: tuple[Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(rundir, "write_curve", fail)
    runs = tmp_path / "runs"
    with pytest.raises(OSError, match="disk full"):
        run(tiny_bert_dir, toy, runs / "out", steps=1)
    assert list(runs.iterdir()) == []


def test_split_of_another_dataset_is_rejected(tiny_bert_dir: Path, toy: tuple[Path, Path, Path], tmp_path: Path) -> None:
    other = write_split(tmp_path, toy[1], [0, 8], [4, 12], seed=0, dataset="trec")
    with pytest.raises(ValueError, match=r"split dataset='trec' does not match the table's 'toy'"):
        run(tiny_bert_dir, toy, tmp_path / "out", split=other)
    stale = json.loads(toy[2].read_text())
    stale["table_sha256"] = "0" * 64
    toy[2].write_text(json.dumps(stale))
    with pytest.raises(ValueError, match="table_sha256"):
        run(tiny_bert_dir, toy, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_labels_outside_the_card_are_rejected(tiny_bert_dir: Path, tmp_path: Path) -> None:
    table, card = write_dataset(tmp_path, "bad", [(0, "a", ""), (1, "b", ""), (2, "c", ""), (0, "d", "")], ["x", "y"])
    split = write_split(tmp_path, card, [0, 1], [2, 3], seed=0)
    with pytest.raises(ValueError, match=r"row 2 has label 2; expected 0..1"):
        train_run(train_params(tiny_bert_dir), LOSSES["cce"], table, card, split, tmp_path / "out")


# ---- contract: every registered loss through the real trainer and inference ----


def _contract_cases() -> list[tuple[str, str | None]]:
    """Every loss section of params.yaml; a Metrix variant at each of its three mixing points."""
    cases: list[tuple[str, str | None]] = []
    for name, section in sorted(LOSSES.items()):
        points = ("input", "feature", "embedding") if section.metrix is not None else (None,)
        cases += [(name, point) for point in points]
    return cases


@pytest.mark.parametrize(("loss", "point"), _contract_cases())
def test_every_registered_loss_trains_and_infers(
    tiny_bert_dir: Path, toy: tuple[Path, Path, Path], tmp_path: Path, loss: str, point: str | None
) -> None:
    from dataclasses import replace

    from fewshot_dml.losses import get_spec

    section = LOSSES[loss]
    if point is not None:  # the tiny model has 2 layers: mix after the first
        section = replace(section, metrix=replace(section.metrix, point=point, layer=1))
    spec, out = get_spec(section.base), tmp_path / loss
    table, card, split = toy
    metrics = train_run(train_params(tiny_bert_dir, steps=2), section, table, card, split, out)
    assert metrics["batches_without_pairs"] == 0  # the balanced sampler always provides pairs here
    curve = read_curve(out)
    assert all((r["dml"] == "") == (loss == "cce") for r in curve)
    state = torch.load(out / "loss_state.pt", weights_only=True)
    assert bool(state) == spec.has_proxies
    if spec.has_proxies:  # the proxies moved away from their seeded initial values
        torch.manual_seed(0)
        initial = build_objective(section, 2, 32).dml.state_dict()
        assert any(not torch.equal(initial[k], state[k]) for k in state), "proxies did not train"
    with np.load(out / "eval.npz") as ev, np.load(out / "dev.npz") as dev:
        assert ("scores" in ev.files) == ("scores" in dev.files) == spec.has_proxies
        if spec.has_proxies:  # stored at training = what inference computed from the saved state, bit for bit
            assert np.array_equal(ev["scores"], rebuilt_scores(out, "eval"))
    result = inference.run_inference(out, PARAMS.infer, tmp_path / f"{loss}.json")
    assert result["classifier"]["accuracy"] == pytest.approx(metrics["accuracy"])
    assert (result["proxy"] is not None) == spec.has_proxies
    assert len(result["proxy_curve"]) == (PARAMS.infer.curve_points if spec.has_proxies else 0)


def test_token_level_dml_trains_and_is_recorded(tiny_bert_dir: Path, toy: tuple[Path, Path, Path], tmp_path: Path) -> None:
    from dataclasses import replace

    section = replace(LOSSES["softtriple"], dml_on="tokens")
    table, card, split = toy
    metrics = train_run(train_params(tiny_bert_dir, steps=2), section, table, card, split, tmp_path / "run")
    assert all(r["dml"] != "" for r in read_curve(tmp_path / "run"))
    assert json.loads((tmp_path / "run/run.json").read_text())["loss"]["dml_on"] == "tokens"
    result = inference.run_inference(tmp_path / "run", PARAMS.infer, tmp_path / "run.json")
    assert result["proxy"] is not None and result["classifier"]["accuracy"] == pytest.approx(metrics["accuracy"])


def test_a_diverged_run_is_flagged_in_its_metrics_and_warned_about(
    tiny_bert_dir: Path, toy: tuple[Path, Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Inside the allowed ranges (every lr <= 1), yet useless: the observation that exited 0 unflagged.
    from dataclasses import replace

    table, card, split = toy
    loss = replace(LOSSES["proxyanchor"], proxy_lr=1.0)
    with caplog.at_level(logging.WARNING):
        metrics = train_run(
            train_params(tiny_bert_dir, lr=1.0, head_lr=1.0, steps=6, warmup_steps=0), loss, table, card, split, tmp_path / "diverged"
        )
    assert metrics["degenerate"], "lr = head_lr = proxy_lr = 1.0 was not flagged"
    assert any("predictions collapsed" in d or "no variance" in d or "loss rose" in d for d in metrics["degenerate"])
    assert "diverged seed 0 is degenerate: " in caplog.text


def test_the_degenerate_warning_of_the_train_stage_names_the_run_and_the_seed(
    tiny_bert_dir: Path, toy: tuple[Path, Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """train_group writes each seed inside a temporary folder: the warning names the run folder and the seed."""
    monkeypatch.setattr(run_module, "diagnose", lambda *args: ["predictions collapsed to one class"])
    table, card, split = toy
    splits = tmp_path / "splits"
    splits.mkdir()
    split.rename(splits / "0.json")
    with caplog.at_level(logging.WARNING, logger="fewshot_dml.train.run"):
        train_group(train_params(tiny_bert_dir, steps=1), LOSSES["cce"], table, card, splits, [0], tmp_path / "toy-8-cce")
    warned = [r.getMessage() for r in caplog.records if "degenerate" in r.getMessage()]
    assert warned == ["toy-8-cce seed 0 is degenerate: predictions collapsed to one class"], warned


@pytest.mark.parametrize("arm", ["cce", "setfit"])
def test_a_group_logs_its_seeds_and_steps_and_setfit_prints_no_noise(
    arm: str,
    tiny_bert_dir: Path,
    toy: tuple[Path, Path, Path],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    table, card, split0 = toy
    splits = tmp_path / "splits"
    splits.mkdir()
    split0.rename(splits / "0.json")
    with caplog.at_level(logging.INFO):
        train_group(train_params(tiny_bert_dir, steps=2), LOSSES[arm], table, card, splits, [0], tmp_path / "g-16-x")
    messages = [r.getMessage() for r in caplog.records]
    assert "g-16-x seed 0 [1/1]" in messages
    assert any(m.startswith(f"train {arm}: step ") and "ETA" in m for m in messages), messages
    printed = capfd.readouterr()
    text = printed.out + printed.err + "\n".join(messages)
    for noise in ("'embedding_loss'", "CoSENTLoss", "pin_memory", "Running training", "model_head.pkl", "Map:"):
        assert noise not in text, noise
