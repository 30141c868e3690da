"""Inference from fabricated run directories that follow docs/architecture.md."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from fewshot_dml.config.params import Params, load_params
from fewshot_dml.config.sections import InferParams
from fewshot_dml.core import io
from fewshot_dml.infer.inference import (
    _softmax,
    accuracy_f1,
    infer_grid,
    knn_predictions,
    load_run,
    mixture_predictions,
    prototype_predictions,
    run_inference,
)
from fewshot_dml.losses import all_specs, get_spec

LOSSES = all_specs()

ROOT = Path(__file__).resolve().parents[1]
PROXY = sorted(n for n, s in LOSSES.items() if s.has_proxies)
C, D = 3, 6
PARAMS = InferParams(proxy_weight=0.5, curve_points=11, knn_k=3)


@pytest.fixture(scope="module")
def params() -> Params:
    return load_params(ROOT / "params.yaml")


def separable(n_per_class: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Class c lies near +axis c (well separated): embeddings (n*C, D) float16 and labels."""
    labels = np.repeat(np.arange(C), n_per_class)
    emb = np.eye(C, D)[labels] + 0.1 * rng.standard_normal((len(labels), D))
    return emb.astype(np.float16), labels.astype(np.int64)


def axis_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every proxy / centre / class weight of class c along +axis c."""
    rows = torch.eye(C, D)
    out = {}
    for key, value in module.state_dict().items():
        if key == "proxies":
            out[key] = rows
        elif key == "W":
            out[key] = rows.T.contiguous()
        elif key == "fc":
            out[key] = rows.repeat_interleave(value.shape[1] // C, dim=0).T.contiguous()
    return out


def make_run(root: Path, params: Params, loss: str) -> Path:
    """A run directory whose classifier is wrong on every third example and whose proxies are exact."""
    rng = np.random.default_rng(0)
    run = root / f"run-{loss}"
    run.mkdir()
    eval_emb, eval_labels = separable(6, rng)
    train_emb, train_labels = separable(4, rng)
    logits = np.eye(C)[eval_labels] * 2.0
    wrong = np.arange(len(eval_labels)) % 3 == 0
    logits[wrong] = np.eye(C)[(eval_labels[wrong] + 1) % C] * 2.0
    section = params.losses[loss]
    torch.manual_seed(0)
    module = get_spec(loss).build(C, D, section.hparams)
    state = {} if module is None else (axis_state(module) if get_spec(loss).has_proxies else module.state_dict())
    if module is not None:
        module.load_state_dict(state)
    scores = {"scores": class_scores(loss, module, eval_emb)} if get_spec(loss).has_proxies else {}
    np.savez(
        run / "eval.npz",
        logits=logits.astype(np.float32),
        embeddings=eval_emb,
        labels=eval_labels,
        indices=np.arange(len(eval_labels), dtype=np.int64),
        **scores,
    )
    np.savez(run / "train.npz", embeddings=train_emb, labels=train_labels, indices=np.arange(len(train_labels), dtype=np.int64) + 100)
    torch.save(state, run / "loss_state.pt")
    io.write_json(
        run / "run.json",
        {
            "arm": loss,
            "num_classes": C,
            "embedding_size": D,
            "loss": {
                "name": loss,
                "base": section.base,
                "beta": section.beta,
                "proxy_lr": section.proxy_lr,
                "hparams": dict(section.hparams),
            },
        },
    )
    return run


def class_scores(loss: str, module: torch.nn.Module, embeddings: np.ndarray) -> np.ndarray:
    """What the train stage stores as ``scores``: the registry's class scores of the float16 embeddings."""
    with torch.no_grad():
        return get_spec(loss).class_scores(module.float().eval(), torch.from_numpy(embeddings.astype(np.float32))).numpy()


@pytest.mark.parametrize("loss", PROXY)
def test_proxy_mixture_endpoints(tmp_path: Path, params: Params, loss: str) -> None:
    out = run_inference(make_run(tmp_path, params, loss), PARAMS, tmp_path / "out.json")
    assert out == io.read_json(tmp_path / "out.json")
    classifier = out["classifier"]["accuracy"]
    assert classifier == pytest.approx(2 / 3)
    curve = out["proxy_curve"]
    assert [p["weight"] for p in curve] == pytest.approx(np.linspace(0, 1, 11).tolist())
    assert (curve[-1]["accuracy"], curve[-1]["macro_f1"]) == (classifier, out["classifier"]["macro_f1"])
    assert curve[0]["accuracy"] == 1.0  # proxies alone: exact by construction
    assert out["proxy"]["weight"] == 0.5
    assert out["prototype"]["accuracy"] == 1.0 and out["knn"] == {"k": 3, "accuracy": 1.0, "macro_f1": 1.0}


@pytest.mark.parametrize("loss", PROXY)
def test_weight_zero_is_proxy_only(tmp_path: Path, params: Params, loss: str) -> None:
    """With the loss's random initial proxies, w=0 is the argmax of the registry's class scores."""
    run = make_run(tmp_path, params, loss)
    torch.manual_seed(3)
    module = get_spec(loss).build(C, D, params.losses[loss].hparams)
    artifacts = load_run(run)
    scores = class_scores(loss, module, artifacts.eval_embeddings.astype(np.float16))
    rewrite_npz(run / "eval.npz", scores=scores)
    expected = accuracy_f1(artifacts.eval_labels, scores.argmax(axis=1), C)
    weighted = InferParams(proxy_weight=0.0, curve_points=2, knn_k=3)
    out = run_inference(run, weighted, tmp_path / "out.json")
    assert {k: out["proxy"][k] for k in expected} == expected
    assert out["proxy_curve"][0] == {"weight": 0.0, **expected}


@pytest.mark.parametrize("loss", ["cce", "supcon"])
def test_losses_without_proxies(tmp_path: Path, params: Params, loss: str) -> None:
    out = run_inference(make_run(tmp_path, params, loss), PARAMS, tmp_path / "out.json")
    assert out["proxy"] is None and out["proxy_curve"] == []
    assert out["prototype"]["accuracy"] == 1.0 and out["knn"]["accuracy"] == 1.0


def test_output_is_byte_identical(tmp_path: Path, params: Params) -> None:
    run = make_run(tmp_path, params, "softtriple")
    run_inference(run, PARAMS, tmp_path / "a.json")
    run_inference(run, PARAMS, tmp_path / "b.json")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()


def test_knn_k_is_capped_by_the_training_set(tmp_path: Path, params: Params) -> None:
    out = run_inference(make_run(tmp_path, params, "cce"), InferParams(0.5, 2, 1000), tmp_path / "out.json")
    assert out["knn"]["k"] == 12


@pytest.mark.parametrize("name", ["eval.npz", "train.npz", "run.json"])
def test_missing_artifact(tmp_path: Path, params: Params, name: str) -> None:
    run = make_run(tmp_path, params, "proxyanchor")
    (run / name).unlink()
    with pytest.raises(FileNotFoundError, match=rf"{name}: missing run artifact"):
        run_inference(run, PARAMS, tmp_path / "out.json")
    assert not (tmp_path / "out.json").exists()


@pytest.mark.parametrize(("name", "keep"), [("eval.npz", 0.5), ("train.npz", 0.9), ("eval.npz", 0.0)])
def test_a_truncated_npz_names_the_file_in_one_line(tmp_path: Path, params: Params, capsys, name: str, keep: float) -> None:
    from fewshot_dml.core.cli import run_tool

    run = make_run(tmp_path, params, "proxyanchor")
    data = (run / name).read_bytes()
    (run / name).write_bytes(data[: int(len(data) * keep)])
    expected = rf"{run / name}: cannot read it \(truncated or not an npz: (BadZipFile|EOFError)\b.*\); expected the train stage's output, rerun dvc repro"
    with pytest.raises(ValueError, match=expected):
        run_inference(run, PARAMS, tmp_path / "out.json")
    with pytest.raises(SystemExit) as exit_:
        run_tool(lambda argv: load_run(run))
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and len(err.strip().splitlines()) == 1 and err.startswith(f"error: {run / name}: cannot read it"), err


def rewrite_npz(path: Path, **changes: Any) -> None:
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays.update(changes)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"logits": None}, r"missing arrays \['logits'\]"),
        ({"logits": np.zeros((18, 4), np.float32)}, r"logits has shape \(18, 4\); expected \(18, 3\)"),
        ({"labels": np.full(18, 3)}, r"labels int64 in \[3, 3\]; expected integers in \[0, 2\]"),
        ({"embeddings": np.full((18, D), np.inf, np.float16)}, "embeddings holds non-finite values"),
    ],
)
def test_bad_eval_arrays(tmp_path: Path, params: Params, change: dict[str, Any], match: str) -> None:
    run = make_run(tmp_path, params, "cce")
    rewrite_npz(run / "eval.npz", **change)
    with pytest.raises(ValueError, match=match):
        load_run(run)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"scores": None}, r"missing arrays \['scores'\]"),
        ({"scores": np.zeros((18, C + 1), np.float32)}, r"scores has shape \(18, 4\); expected \(18, 3\)"),
        ({"scores": np.full((18, C), np.nan, np.float32)}, "scores holds non-finite values"),
    ],
)
def test_bad_class_scores(tmp_path: Path, params: Params, change: dict[str, Any], match: str) -> None:
    """A proxy loss's run needs the class scores the train stage stores (an older run has none)."""
    run = make_run(tmp_path, params, "proxyanchor")
    rewrite_npz(run / "eval.npz", **change)
    with pytest.raises(ValueError, match=match):
        load_run(run)


def test_inference_needs_neither_torch_nor_pml() -> None:
    """The infer stage's whole import closure stays free of torch and PML (its start-up is the cost)."""
    code = (
        "import sys; sys.argv = ['infer']; import runpy; "
        "runpy.run_path('stages/infer.py', run_name='not_main'); "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'pytorch_metric_learning', "
        "'transformers', 'pandas')); print(bad); assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_numpy_softmax_matches_torch_and_keeps_the_mixture_predictions() -> None:
    """The numpy softmax that replaced torch's: equal to float32 rounding, same mixture argmax."""
    rng = np.random.default_rng(0)
    logits = (rng.standard_normal((500, 6)) * 5).astype(np.float32)
    scores = (rng.standard_normal((500, 6)) * 30).astype(np.float32)
    ref = torch.softmax(torch.from_numpy(scores), dim=1).numpy()
    np.testing.assert_allclose(_softmax(scores), ref, rtol=1e-6, atol=1e-7)
    for w in np.linspace(0, 1, 11):
        torch_mix = (np.float32(w) * torch.softmax(torch.from_numpy(logits), 1).numpy() + (np.float32(1) - np.float32(w)) * ref).argmax(
            axis=1
        )
        assert np.array_equal(mixture_predictions(logits, scores, float(w)), torch_mix)


def test_infer_grid_writes_every_cell_of_the_grid(tmp_path: Path, params: Params) -> None:
    """The infer stage's function: one JSON per run the params imply, each as run_inference alone."""
    grid = dataclasses.replace(params, datasets=("mr",), sample_sizes=(16,), seeds=(0, 1), loss="proxyanchor")
    runs = tmp_path / "runs"
    for arm in grid.arms:
        (runs / f"mr-16-{arm}").mkdir(parents=True)
        for seed in (0, 1):
            made = make_run(tmp_path, params, "proxyanchor" if arm == "proxyanchor" else "cce")
            made.rename(runs / f"mr-16-{arm}" / str(seed))
    (runs / "mr-16-softtriple").mkdir()  # a stale run of another loss: ignored
    assert infer_grid(grid, runs, tmp_path / "infer") == 6
    written = sorted(str(p.relative_to(tmp_path / "infer")) for p in (tmp_path / "infer").rglob("*.json"))
    assert written == [f"mr-16-{arm}/{seed}.json" for arm in sorted(grid.arms) for seed in (0, 1)]
    alone = run_inference(runs / "mr-16-proxyanchor/1", grid.infer, tmp_path / "alone.json")
    assert io.read_json(tmp_path / "infer/mr-16-proxyanchor/1.json") == alone
    shutil.rmtree(runs / "mr-16-cce/1")
    with pytest.raises(FileNotFoundError, match="run directory not found"):
        infer_grid(grid, runs, tmp_path / "infer2")
    assert not (tmp_path / "infer2").exists()


def test_accuracy_f1_matches_sklearn() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    y_true, y_pred = rng.integers(0, 4, 50), rng.integers(0, 3, 50)  # class 3 is never predicted
    out = accuracy_f1(y_true, y_pred, 5)  # class 4 is neither present nor predicted: F1 0
    assert out["accuracy"] == pytest.approx(metrics.accuracy_score(y_true, y_pred))
    assert out["macro_f1"] == pytest.approx(metrics.f1_score(y_true, y_pred, labels=range(5), average="macro", zero_division=0))


def test_accuracy_f1_by_hand() -> None:
    # class 0: TP 1, FN 1 -> 2/3; class 1: TP 1, FP 1 -> 2/3; class 2: absent -> 0
    assert accuracy_f1(np.array([0, 0, 1]), np.array([0, 1, 1]), 3) == {"accuracy": 2 / 3, "macro_f1": 4 / 9}


def test_knn_ties() -> None:
    train = np.array([[1, 0], [1, 0], [0.9, 0.1], [0.8, 0.6]], np.float32)
    labels = np.array([1, 0, 0, 1])
    query = np.array([[1, 0]], np.float32)
    # k=2: the two identical neighbours (one vote each, same similarity) -> the lowest class id
    assert knn_predictions(train, labels, query, 2, 2).tolist() == [0]
    # k=4: two votes each; class 0 sums 1 + 0.994, class 1 sums 1 + 0.8 -> class 0
    assert knn_predictions(train, labels, query, 2, 4).tolist() == [0]
    # votes beat similarity: class 1 holds two of the three nearest
    assert knn_predictions(train, np.array([0, 1, 1, 0]), query, 2, 3).tolist() == [1]


def test_knn_similarity_breaks_vote_ties() -> None:
    train = np.array([[1, 0], [0.6, 0.8], [0.95, 0.05], [0.5, 0.5]], np.float32)
    query = np.array([[1, 0]], np.float32)
    # cosines to the query: 1, 0.6, 0.999, 0.707; two votes each, the summed similarity decides
    assert knn_predictions(train, np.array([1, 0, 1, 0]), query, 2, 4).tolist() == [1]  # 2.0 vs 1.3
    assert knn_predictions(train, np.array([1, 1, 0, 0]), query, 2, 4).tolist() == [0]  # 1.6 vs 1.7


def test_prototype_never_predicts_absent_classes() -> None:
    train = np.array([[1, 0], [0.9, 0.1]], np.float32)
    query = np.array([[0, 1], [1, 0]], np.float32)
    assert prototype_predictions(train, np.array([1, 1]), query, 3).tolist() == [1, 1]
