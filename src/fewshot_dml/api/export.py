"""Saving a fitted :class:`~fewshot_dml.api.classifier.FewShotClassifier` as a SetFit model, and reading it back.

Which stock format holds the classifier (measured on MiniLM and RoBERTa): the head is RoBERTa's
(dense -> tanh -> out_proj) on the *pooled* encoder output. transformers' ``...ForSequenceClassification``
holds it only for RoBERTa with ``cls`` pooling; BERT's stock head (pooler dense + tanh on the first
token, then one linear layer) cannot express mean pooling, the CPU default. A SetFit model holds every
case without custom code: a sentence-transformers body (Transformer -> Pooling(mean | cls) ->
Dense(tanh) = the head's ``dense``) and SetFit's differentiable head (one linear layer = ``out_proj``,
softmax), with the class names. ``setfit.SetFitModel.from_pretrained(path).predict(texts)`` then gives
this classifier's labels (tested). A SetFit-arm classifier is a SetFit model already.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from fewshot_dml.core import io
from fewshot_dml.model.classifier import TextClassifier

CARD = "README.md"
RECIPE = "fewshot_dml.json"  # the arm, seed and train section the model was fitted with


def _st_modules() -> tuple[Any, Any, Any]:
    try:  # sentence-transformers >= 5.2 (the older path warns there)
        from sentence_transformers.sentence_transformer.modules import Dense, Pooling, Transformer
    except ImportError:
        from sentence_transformers.models import Dense, Pooling, Transformer
    return Transformer, Pooling, Dense


def to_setfit(model: TextClassifier, tokenizer: Any, labels: list[str], max_length: int) -> Any:
    """The SetFit model that computes ``model``'s logits (a CPU copy; see the module docstring)."""
    from sentence_transformers import SentenceTransformer
    from setfit import SetFitHead, SetFitModel

    Transformer, Pooling, Dense = _st_modules()
    model = model.cpu().eval()
    with tempfile.TemporaryDirectory(prefix="fewshot-dml-export-") as tmp:
        model.encoder.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        transformer = Transformer(tmp, max_seq_length=max_length)
    size = model.embedding_size
    dense = Dense(size, size, bias=True, activation_function=torch.nn.Tanh())
    dense.linear.load_state_dict(model.dense.state_dict())
    body = SentenceTransformer(modules=[transformer, Pooling(size, pooling_mode=model.pooling), dense], device="cpu")
    head = SetFitHead(in_features=size, out_features=model.num_labels, device="cpu")
    head.linear.load_state_dict(model.out_proj.state_dict())
    return SetFitModel(model_body=body, model_head=head, labels=list(labels), normalize_embeddings=False)


def save_model(clf: Any, path: Path) -> Path:
    """``path``: the SetFit model of a fitted classifier, its recipe and a model card, written atomically."""
    from fewshot_dml.train.setfit import save_setfit

    if clf.model is None:
        raise RuntimeError("this FewShotClassifier is not fitted; call fit(texts, labels) first")
    setfit_model = clf.model if clf.is_setfit else to_setfit(clf.model, clf.tokenizer, list(clf.labels), clf.train.max_length)
    if clf.is_setfit:
        setfit_model.labels = list(clf.labels)  # the head predicts ids; SetFit maps them to these names
    with io.atomic_dir(path) as tmp:
        save_setfit(setfit_model, tmp)
        io.write_json(tmp / RECIPE, clf.recipe())
        (tmp / CARD).write_text(model_card(clf), encoding="utf-8")
    return path


def model_card(clf: Any) -> str:
    """A short model card of a classifier fitted through the API: what it is, how it was trained, how to load it."""
    loss, labels = clf.loss, clf.labels
    trained = (
        f"with the `{loss.name}` arm (base loss `{loss.base}`, beta {loss.beta}) for {len(clf.curve)} steps, seed {clf.seed}, "
        f"on {clf.n_train} labelled examples of {len(labels)} classes: {', '.join(labels)}."
    )
    evaluated = "No evaluation was run by the API; the study's own numbers for this arm are in the pipeline's `reports/results.md`."
    return _card(clf.recipe(), trained, evaluated, clf.is_setfit)


def _card(recipe: Mapping[str, Any], trained: str, evaluated: str, setfit: bool) -> str:
    """The card's text; ``setfit``: a SetFit-arm model, whose trainer takes its batch size, learning rate and steps
    from its own section, in fp32 (so the train section's are not its recipe)."""
    loss, train = recipe["loss"], recipe["train"]
    keys = ("model", "max_length") if setfit else ("model", "pooling", "max_length", "batch_size", "steps", "lr", "precision")
    what = "SetFit's hyperparameters (fp32)" if setfit else "loss hyperparameters"
    return "\n".join(
        [
            "---",
            "library_name: setfit",
            "tags: [setfit, few-shot, text-classification, fewshot-dml]",
            "---",
            "",
            f"# A few-shot text classifier ({loss['name']})",
            "",
            f"Fine-tuned by [fewshot-dml](https://github.com/) from `{train['model']}` {trained}",
            "",
            f"Recipe: {json.dumps({k: v for k, v in train.items() if k in keys})}; {what} "
            f"{json.dumps(dict(loss['hparams']))}. Everything is in `{RECIPE}`.",
            "",
            evaluated,
            "",
            "```python",
            "from setfit import SetFitModel",
            "",
            'model = SetFitModel.from_pretrained("<this folder>")',
            'model.predict(["a sentence to classify"])  # class names',
            "```",
            "",
            "A sentence-pair task (MRPC, or your own data with a second text column) needs both sentences: "
            '`fewshot_dml.api.load("<this folder>").predict(texts, pairs=second_sentences)`; the stock loader takes one text.',
            "",
        ]
    )


def export_run(run_dir: str | Path, out: str | Path) -> Path:
    """A pipeline run that kept its weights (``train.save_weights``) as the folder :func:`save_model` writes: a
    SetFit model that ``SetFitModel.from_pretrained`` loads without this package, its recipe and a model card
    naming the dataset, the draw, the seed and the run's held-out metrics."""
    from setfit import SetFitModel

    from fewshot_dml.catalog.arms import KIND_SETFIT
    from fewshot_dml.core import rundir
    from fewshot_dml.losses import get_spec
    from fewshot_dml.train.setfit import save_setfit

    run_dir, out = Path(run_dir), Path(out)
    model_dir = run_dir / rundir.MODEL
    if not (run_dir / rundir.RUN).is_file() or not (run_dir / rundir.METRICS).is_file():
        raise FileNotFoundError(
            f"{run_dir}: no {rundir.RUN} or {rundir.METRICS}; expected one seed's run directory, e.g. data/runs/sst2-8-supcon/0"
        )
    if not model_dir.is_dir():
        raise FileNotFoundError(
            f"{run_dir}: no {rundir.MODEL}/; this run did not keep its weights (add its dataset to train.save_weights and rerun)"
        )
    record, metrics = io.read_json(run_dir / rundir.RUN), io.read_json(run_dir / rundir.METRICS)
    missing = [k for k in ("n_train", "steps", "selected_step", "accuracy", "macro_f1", "n_eval", "majority_accuracy") if k not in metrics]
    if missing:
        raise ValueError(f"{run_dir / rundir.METRICS}: no {', '.join(missing)}; expected the metrics of a run the train stage wrote")
    labels = list(record["label_names"])
    recipe = {"loss": record["loss"], "train": record["train"], "seed": record["seed"], "labels": labels, "n_train": metrics["n_train"]}
    setfit = get_spec(record["loss"]["base"]).kind == KIND_SETFIT
    if setfit:
        setfit_model = SetFitModel.from_pretrained(str(model_dir), device="cpu")
        setfit_model.labels = labels
    else:
        classifier, tokenizer = TextClassifier.load(model_dir)
        setfit_model = to_setfit(classifier, tokenizer, labels, int(record["train"]["max_length"]))
    loss = record["loss"]
    arm = f"`{record['arm']}` arm" + ("" if loss.get("beta") is None else f" (base loss `{loss['base']}`, beta {loss['beta']})")
    trained = (
        f"with the {arm} of the fewshot-dml pipeline, seed {record['seed']}, on {metrics['n_train']} "
        f"labelled examples (sample size {record['size']}) of `{record['dataset']}`, {len(labels)} classes: {', '.join(labels)}; "
        f"step {metrics['selected_step']} of {metrics['steps']} kept."
    )
    evaluated = (
        f"Held-out accuracy {100 * metrics['accuracy']:.2f}%, macro-F1 {100 * metrics['macro_f1']:.2f}% on "
        f"{metrics['n_eval']} evaluation examples (majority class {100 * metrics['majority_accuracy']:.2f}%); one seed of "
        "the study (the `results.md` of the commit or experiment that trained it)."
    )
    with io.atomic_dir(out) as tmp:
        save_setfit(setfit_model, tmp)
        io.write_json(tmp / RECIPE, recipe)
        (tmp / CARD).write_text(_card(recipe, trained, evaluated, setfit), encoding="utf-8")
    return out


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """``fewshot-dml export RUN_DIR OUT``: a pipeline run's kept weights as a stock SetFit model."""
    import argparse

    ap = argparse.ArgumentParser(prog=prog, description=main.__doc__.split(":", 1)[1].strip())
    ap.add_argument("run_dir", type=Path, help="a run that kept its weights, e.g. data/runs/sst2-8-supcon/0 (train.save_weights)")
    ap.add_argument("out", type=Path, help="the folder to write (replaced atomically)")
    args = ap.parse_args(argv)
    print(export_run(args.run_dir, args.out))
    return 0


def load_model(path: str | Path) -> Any:
    """A :class:`~fewshot_dml.api.classifier.FewShotClassifier` from a folder :func:`save_model` wrote."""
    from setfit import SetFitModel

    from fewshot_dml.api.classifier import FewShotClassifier

    path = Path(path)
    recipe_path = path / RECIPE
    if not recipe_path.is_file():
        raise FileNotFoundError(f"{path}: no {RECIPE}; expected a folder written by FewShotClassifier.save")
    recipe = io.read_json(recipe_path)
    setfit_model = SetFitModel.from_pretrained(str(path), device="cpu")
    clf = FewShotClassifier.__new__(FewShotClassifier).restore(recipe, setfit_model)
    return clf if clf.is_setfit else clf.restore(recipe, *from_setfit(setfit_model))


def from_setfit(setfit_model: Any) -> tuple[TextClassifier, Any]:
    """The :class:`TextClassifier` and tokenizer inside a SetFit model :func:`to_setfit` made."""
    transformer, pooling, dense = list(setfit_model.model_body)
    mode = pooling.get_pooling_mode_str() if hasattr(pooling, "get_pooling_mode_str") else pooling.pooling_mode
    head = setfit_model.model_head
    model = TextClassifier(transformer.auto_model, str(mode), head.linear.out_features, 0.0)
    model.dense.load_state_dict(dense.linear.state_dict())
    model.out_proj.load_state_dict(head.linear.state_dict())
    return model.eval(), transformer.tokenizer
