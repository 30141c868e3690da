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

import dataclasses
import json
import tempfile
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
    """A short model card: what the model is, how it was trained, how to load it."""
    steps = len(clf.curve)
    loss = clf.loss
    keys = ("model", "pooling", "max_length", "batch_size", "steps", "lr", "precision")
    recipe = {k: v for k, v in dataclasses.asdict(clf.train).items() if k in keys}
    return "\n".join(
        [
            "---",
            "library_name: setfit",
            "tags: [setfit, few-shot, text-classification, fewshot-dml]",
            "---",
            "",
            f"# A few-shot text classifier ({loss.name})",
            "",
            f"Fine-tuned by [fewshot-dml](https://github.com/) from `{clf.train.model}` with the `{loss.name}` arm "
            f"(base loss `{loss.base}`, beta {loss.beta}) for {steps} steps, seed {clf.seed}, on "
            f"{clf.n_train} labelled examples of {len(clf.labels)} classes: {', '.join(clf.labels)}.",
            "",
            f"Recipe: {json.dumps(recipe)}; loss hyperparameters {json.dumps(dict(loss.hparams))}. Everything is in `{RECIPE}`.",
            "",
            "No evaluation was run by the API; the study's own numbers for this arm are in the pipeline's `reports/results.md`.",
            "",
            "```python",
            "from setfit import SetFitModel",
            "",
            'model = SetFitModel.from_pretrained("<this folder>")',
            'model.predict(["a sentence to classify"])  # class names',
            "```",
            "",
        ]
    )


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
