"""The Python API (fewshot_dml.api): the README's snippet, the train stage's code path, stock loaders, bad input."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fewshot_dml.api import FewShotClassifier, load
from fewshot_dml.api.export import export_run
from fewshot_dml.config.params import load_params
from fewshot_dml.data.table import make_table, write_table
from fewshot_dml.train.run import train_run
from test_training import write_split
from tiny_models import tiny_train_params

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["a wonderful film", "the acting was great", "she loves the story", "a joy to watch"]
TEXTS += ["a terrible film", "the plot was boring", "he hated the ending", "a waste of time"]
LABELS = ["pos"] * 4 + ["neg"] * 4


def tiny(model_dir: Path, pooling: str = "mean", steps: int = 3) -> dict:
    """Train-section overrides: a tiny local model, a few steps, one thread (every other key from params.yaml)."""
    return {"model": str(model_dir), "pooling": pooling, "steps": steps, "warmup_steps": 1, "batch_size": 4, "threads": 1}


def test_the_readme_snippet_runs_and_its_model_loads_with_setfit(tmp_path: Path) -> None:
    snippet = re.search(r"## From Python.*?```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    assert len(snippet.strip().splitlines()) <= 10
    script = f"import os; os.chdir({str(tmp_path)!r})\n" + snippet.replace('"my-model"', repr(str(tmp_path / "my-model")))
    script = script.replace("FewShotClassifier(", f"FewShotClassifier(params={str(ROOT / 'params.yaml')!r}, ", 1)
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=600, env={"HF_HUB_OFFLINE": "1", "PATH": ""}
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert re.search(r"\['(pos|neg)'\] \[\[", out.stdout)
    from setfit import SetFitModel

    stock = SetFitModel.from_pretrained(str(tmp_path / "my-model"))
    probe = ["what a wonderful film", "a boring film", "dull", "great acting"]
    assert list(stock.predict(probe)) == load(tmp_path / "my-model").predict(probe)
    assert "supcon" in (tmp_path / "my-model" / "README.md").read_text()


@pytest.mark.parametrize("loss", ["cce", "proxyanchor"])
def test_fit_is_the_train_stage_code_path(loss: str, tiny_bert_dir: Path, tmp_path: Path) -> None:
    """The API's fit and the train stage's train_run on the same rows and seed: the same training curve."""
    clf = FewShotClassifier(loss=loss, params=ROOT / "params.yaml", seed=3, train=tiny(tiny_bert_dir, "cls"))
    clf.fit(TEXTS, LABELS)
    # The same data as a pipeline table (labels numbered alike: neg = 0, pos = 1) and a split of every row.
    table = make_table([1] * 4 + [0] * 4 + [1, 0], TEXTS + ["so good", "so bad"], [""] * 10)  # two held-out rows
    sha = write_table(tmp_path / "t.jsonl", table)
    card = {"dataset": "t", "label_names": ["neg", "pos"], "table_sha256": sha, "n_examples": 10}
    (tmp_path / "t.card.json").write_text(json.dumps(card))
    split = write_split(tmp_path, tmp_path / "t.card.json", list(range(8)), [8, 9], seed=3)
    train_run(clf.train, clf.loss, tmp_path / "t.jsonl", tmp_path / "t.card.json", split, tmp_path / "run")
    with (tmp_path / "run" / "curve.csv").open(newline="") as handle:
        stage = [float(r["loss"]) for r in csv.DictReader(handle)]
    assert clf.labels == ("neg", "pos") and stage == pytest.approx([r["loss"] for r in clf.curve], abs=1e-6)


@pytest.mark.parametrize("model, pooling", [("bert", "mean"), ("roberta", "cls")])
def test_a_saved_classifier_predicts_the_same_with_setfits_stock_loader(
    model: str, pooling: str, tiny_bert_dir: Path, tiny_roberta_dir: Path, tmp_path: Path
) -> None:
    from setfit import SetFitModel

    directory = tiny_bert_dir if model == "bert" else tiny_roberta_dir
    clf = FewShotClassifier(loss="supcon", params=ROOT / "params.yaml", seed=0, train=tiny(directory, pooling, steps=5)).fit(TEXTS, LABELS)
    clf.save(tmp_path / "m")
    stock = SetFitModel.from_pretrained(str(tmp_path / "m"))
    np.testing.assert_allclose(stock.predict_proba(TEXTS).numpy(), clf.predict_proba(TEXTS), atol=1e-5)
    assert list(stock.predict(TEXTS)) == clf.predict(TEXTS)
    back = load(tmp_path / "m")
    assert back.labels == clf.labels and back.loss == clf.loss and back.train == clf.train
    np.testing.assert_allclose(back.logits(TEXTS), clf.logits(TEXTS), atol=1e-5)
    np.testing.assert_allclose(back.embed(TEXTS), clf.embed(TEXTS), atol=1e-5)
    assert clf.embed(TEXTS).shape == (8, 32)


def test_the_setfit_arm_fits_predicts_and_saves(tiny_bert_dir: Path, tmp_path: Path) -> None:
    from setfit import SetFitModel

    clf = FewShotClassifier(loss="setfit", params=ROOT / "params.yaml", train=tiny(tiny_bert_dir)).fit(TEXTS, LABELS, pairs=["x"] * 8)
    assert set(clf.predict(TEXTS[:2], pairs=["x", "x"])) <= {"pos", "neg"}
    assert clf.predict_proba(TEXTS, pairs=["x"] * 8).shape == (8, 2)
    clf.save(tmp_path / "s")
    stock = SetFitModel.from_pretrained(str(tmp_path / "s"))
    assert stock.labels == ["neg", "pos"] and load(tmp_path / "s").is_setfit


@pytest.mark.parametrize("loss", ["supcon", "setfit"])
def test_a_pipeline_run_s_kept_weights_export_to_a_stock_setfit_model(loss: str, tiny_bert_dir: Path, tmp_path: Path) -> None:
    """`fewshot-dml export RUN OUT`: SetFit's own loader predicts the labels the run's stored logits give."""
    from setfit import SetFitModel

    from fewshot_dml.console.main import main

    held_out, dev = ["so good", "so bad", "a fine film", "boring"], ["lovely", "awful", "superb", "dreadful"]
    train = {**tiny(tiny_bert_dir, steps=6), "save_weights": True, "dev_checkpoints": 3}
    clf = FewShotClassifier(loss=loss, params=ROOT / "params.yaml", seed=1, train=train)
    table = make_table([1] * 4 + [0] * 4 + [1, 0] * 4, TEXTS + held_out + dev, [""] * 16)
    card = {"dataset": "t", "label_names": ["neg", "pos"], "table_sha256": write_table(tmp_path / "t.jsonl", table), "n_examples": 16}
    (tmp_path / "t.card.json").write_text(json.dumps(card))
    split = write_split(tmp_path, tmp_path / "t.card.json", list(range(8)), [8, 9, 10, 11], seed=1, dev=[12, 13, 14, 15])
    train_run(clf.train, clf.loss, tmp_path / "t.jsonl", tmp_path / "t.card.json", split, tmp_path / "run")
    assert main(["export", str(tmp_path / "run"), str(tmp_path / "model")]) == 0
    with np.load(tmp_path / "run" / "eval.npz") as stored:
        expected = [card["label_names"][i] for i in stored["logits"].argmax(1)]
        texts = [held_out[i - 8] for i in stored["indices"]]
    assert list(SetFitModel.from_pretrained(str(tmp_path / "model")).predict(texts)) == expected
    assert load(tmp_path / "model").predict(texts) == expected
    # The card tells the run's own facts: the checkpoint the development set kept, the held-out numbers, the recipe.
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    model_card = (tmp_path / "model" / "README.md").read_text()
    assert len(metrics["dev_checkpoints"]) == 3 and f"step {metrics['selected_step']} of {metrics['steps']} kept" in model_card
    assert f"`{loss}` arm" in model_card and "of `t`" in model_card
    assert f"Held-out accuracy {100 * metrics['accuracy']:.2f}%, macro-F1 {100 * metrics['macro_f1']:.2f}% on 4 " in model_card
    if loss == "setfit":  # its trainer ignores the train section's batch, steps, lr and precision: the card must too
        assert "SetFit's hyperparameters (fp32)" in model_card and '"precision"' not in model_card
    else:
        assert "loss hyperparameters" in model_card and '"precision": "fp32"' in model_card and "beta 0.4" in model_card


def test_bad_input_is_one_clear_line(tiny_bert_dir: Path, tmp_path: Path) -> None:
    params = ROOT / "params.yaml"
    with pytest.raises(ValueError, match=r"train=\{'stepz': \.\.\.\}: not a key of the train section"):
        FewShotClassifier(loss="cce", params=params, train={"stepz": 3})
    with pytest.raises(Exception, match=r"train\.steps"):
        FewShotClassifier(loss="cce", params=params, train={"steps": 0})
    with pytest.raises(Exception, match=r"--arm 'nope': no losses.nope section"):
        FewShotClassifier(loss="nope", params=params)
    clf = FewShotClassifier(loss="cce", params=params, train=tiny(tiny_bert_dir))
    with pytest.raises(RuntimeError, match="not fitted; call fit"):
        clf.predict(TEXTS)
    with pytest.raises(ValueError, match="3 labels for 8 texts"):
        clf.fit(TEXTS, LABELS[:3])
    with pytest.raises(TypeError, match="a single string; expected a list of texts"):
        clf.fit("a film", ["pos"])
    with pytest.raises(Exception, match="has one class"):
        clf.fit(TEXTS, ["pos"] * 8)
    with pytest.raises(FileNotFoundError, match="no fewshot_dml.json; expected a folder written by FewShotClassifier.save"):
        load(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"no run\.json or metrics\.json; expected one seed's run directory"):
        export_run(tmp_path, tmp_path / "out")
    (tmp_path / "run.json").write_text("{}")
    (tmp_path / "metrics.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"no model/; this run did not keep its weights \(add its dataset to train\.save_weights"):
        export_run(tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert load_params(params).train.steps > 0  # params.yaml untouched


def test_tiny_train_params_cover_every_train_key() -> None:
    # The overrides above are keys of the train section (a renamed key fails here first).
    assert set(tiny(Path("x"))) <= set(tiny_train_params("x").__dataclass_fields__)
