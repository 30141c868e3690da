"""The Python API: texts and labels in, a fitted few-shot classifier out, on the `train` stage's code path.

:class:`FewShotClassifier` reads an arm's recipe (``train`` and ``losses.<arm>``) from ``params.yaml``,
numbers the labels as the pipeline numbers your own data's (:func:`fewshot_dml.data.own.label_ids`), and
trains through :func:`fewshot_dml.train.run.fit_classifier` (CCE or CCE + a DML loss) or
:func:`fewshot_dml.train.setfit.fit_setfit` (the SetFit arm): the functions the `train` stage calls.
:meth:`~FewShotClassifier.save` writes a SetFit model (:mod:`fewshot_dml.api.export`) that
``setfit.SetFitModel.from_pretrained`` loads without this package.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fewshot_dml.catalog.arms import KIND_SETFIT
from fewshot_dml.config.loss_sections import LossParams, MetrixParams
from fewshot_dml.config.params import arm_section, load_params
from fewshot_dml.config.sections import TrainParams
from fewshot_dml.core.strict import build
from fewshot_dml.core.timing import Phases
from fewshot_dml.data.own import label_ids
from fewshot_dml.data.table import make_table
from fewshot_dml.losses import get_spec
from fewshot_dml.model.batching import is_pair_table, tokenize
from fewshot_dml.model.classifier import load_pretrained
from fewshot_dml.model.device import resolve_device, torch_settings
from fewshot_dml.model.ref import resolve
from fewshot_dml.train.finetune import fit_classifier
from fewshot_dml.train.loop import embed
from fewshot_dml.train.run import check_loss


class FewShotClassifier:
    """An arm of the study as a scikit-learn-style estimator.

    ``loss`` is an arm of ``params`` (``cce``, ``setfit``, a DML loss or a variant); ``seed`` seeds it as
    the pipeline seeds a split; ``train`` overrides keys of the ``train`` section (validated as in
    ``params.yaml``), e.g. ``{"steps": 40, "model": "models/my-encoder"}``.
    """

    def __init__(
        self, loss: str = "supcon", params: str | Path = "params.yaml", seed: int = 0, train: Mapping[str, Any] | None = None
    ) -> None:
        loaded = load_params(Path(params), sections=["train", f"losses.{loss}"])
        self.loss = arm_section(loaded, loss, params)
        # As params.yaml spells the section (lists, not the dataclass's tuples), to be validated again with the overrides.
        raw = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(loaded.train).items()}
        unknown = sorted(set(train or {}) - set(raw))
        if unknown:
            raise ValueError(f"train={{{unknown[0]!r}: ...}}: not a key of the train section; expected some of {sorted(raw)}")
        self.train: TrainParams = build(TrainParams, {**raw, **(train or {})}, "train.")
        check_loss(self.train, self.loss)
        self.seed = int(seed)
        self.labels: tuple[str, ...] = ()
        self.model: Any = None  # TextClassifier, or a setfit.SetFitModel for the SetFit arm
        self.tokenizer: Any = None
        self.curve: list[dict[str, Any]] = []
        self.n_train = 0
        self.device = torch.device("cpu")

    @property
    def is_setfit(self) -> bool:
        return get_spec(self.loss.base).kind == KIND_SETFIT

    def fit(self, texts: Sequence[str], labels: Sequence[str | int], pairs: Sequence[str] | None = None) -> FewShotClassifier:
        """Train on ``texts`` (and second sentences ``pairs``) with class names or ids ``labels``."""
        texts, pairs = _texts(texts, pairs)
        if len(labels) != len(texts):
            raise ValueError(f"labels: {len(labels)} labels for {len(texts)} texts; expected one label per text")
        ids, self.labels, _ = label_ids(list(labels), "fit", "labels")
        table = make_table(ids, texts, pairs)
        rows, device, phases = list(range(len(texts))), resolve_device(self.train.device), Phases()
        self.n_train, self.device = len(texts), device
        directory = resolve(self.train.model).directory
        with torch_settings(device, self.train.threads):
            if self.is_setfit:
                from fewshot_dml.train.setfit import fit_setfit, load_setfit

                split = {"train": rows, "dev": [], "eval": [], "seed": self.seed}
                model = load_setfit(self.train, directory, device)  # the directory resolved above, not again
                fitted = fit_setfit(self.train, self.loss, table, split, len(self.labels), device, phases, model)
                self.model, self.curve = fitted["model"], fitted["curve"]
            else:
                pretrained = load_pretrained(self.train.model, directory)
                model, self.tokenizer, _, self.curve, _, _ = fit_classifier(
                    self.train, self.loss, table, rows, self.seed, len(self.labels), device, phases, pretrained
                )
                self.model = model.eval()
        return self

    def logits(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> np.ndarray:
        """(N, C) class scores: the classifier's logits, or SetFit's head's log-probabilities."""
        return self._forward(texts, pairs)[0]

    def predict_proba(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> np.ndarray:
        """(N, C) probabilities, columns in the order of :attr:`labels`."""
        scores = self.logits(texts, pairs).astype(np.float64)
        scores = np.exp(scores - scores.max(axis=1, keepdims=True))
        return scores / scores.sum(axis=1, keepdims=True)

    def predict(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> list[str]:
        """The predicted class name of each text."""
        return [self.labels[i] for i in self.logits(texts, pairs).argmax(axis=1)]

    def embed(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> np.ndarray:
        """(N, D) sentence embeddings: the pooled encoder output the DML loss shaped (SetFit: its body's)."""
        return self._forward(texts, pairs)[1]

    def save(self, path: str | Path) -> Path:
        """A SetFit model directory with a model card (:func:`fewshot_dml.api.export.save_model`)."""
        from fewshot_dml.api.export import save_model

        return save_model(self, Path(path))

    def recipe(self) -> dict[str, Any]:
        """What :meth:`restore` needs: the arm's loss section, the train section, the seed and the classes."""
        return {
            "loss": {
                **{f.name: getattr(self.loss, f.name) for f in dataclasses.fields(LossParams)},
                "hparams": dict(self.loss.hparams),
                "metrix": None if self.loss.metrix is None else dataclasses.asdict(self.loss.metrix),
            },
            "train": dataclasses.asdict(self.train),
            "seed": self.seed,
            "labels": list(self.labels),
            "n_train": self.n_train,
        }

    def restore(self, recipe: Mapping[str, Any], model: Any, tokenizer: Any = None) -> FewShotClassifier:
        """Set the state of a fitted classifier from :meth:`recipe` and its trained model (see ``api.export.load_model``)."""
        self.loss = loss_params(recipe["loss"])
        self.train = build(TrainParams, recipe["train"], "train.")
        self.seed, self.labels, self.n_train = int(recipe["seed"]), tuple(recipe["labels"]), int(recipe["n_train"])
        self.model, self.tokenizer, self.curve, self.device = model, tokenizer, [], torch.device("cpu")
        return self

    def _forward(self, texts: Sequence[str], pairs: Sequence[str] | None) -> tuple[np.ndarray, np.ndarray]:
        if self.model is None:
            raise RuntimeError("this FewShotClassifier is not fitted; call fit(texts, labels) first")
        texts, pairs = _texts(texts, pairs)
        table = make_table([0] * len(texts), texts, pairs)
        if self.is_setfit:
            from fewshot_dml.train.setfit import encode_and_score

            return encode_and_score(self.model, table, self.train.eval_batch_size, len(self.labels))
        features = tokenize(self.tokenizer, table, range(len(texts)), self.train.max_length, is_pair_table(table))
        with torch_settings(self.device, self.train.threads):
            return embed(self.model, self.tokenizer, features, self.train.eval_batch_size, self.device, len(self.labels))


def _texts(texts: Sequence[str], pairs: Sequence[str] | None) -> tuple[list[str], list[str]]:
    if isinstance(texts, str):
        raise TypeError("texts: a single string; expected a list of texts")
    texts = list(texts)
    pairs = [""] * len(texts) if pairs is None else list(pairs)
    if len(pairs) != len(texts):
        raise ValueError(f"pairs: {len(pairs)} second sentences for {len(texts)} texts; expected one per text")
    bad = next((i for i, t in enumerate(texts + pairs) if not isinstance(t, str)), None)
    if bad is not None:
        raise TypeError(f"texts/pairs: item {bad % len(texts)} is {type((texts + pairs)[bad]).__name__}; expected str")
    return texts, pairs


def loss_params(raw: Mapping[str, Any]) -> LossParams:
    """A :class:`LossParams` from its ``dataclasses.asdict`` form (a saved recipe)."""
    metrix = raw.get("metrix")
    return LossParams(**{**raw, "metrix": None if metrix is None else MetrixParams(**metrix)})
