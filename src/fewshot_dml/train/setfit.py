"""The SetFit arm: the `setfit` library's own recipe on exactly the pipeline's splits.

SetFit (Tunstall et al. 2022, "Efficient Few-Shot Learning Without Prompts", arXiv:2209.11055)
fine-tunes the sentence encoder contrastively on pairs built from the few-shot set (cosine-similarity
loss), then fits a logistic-regression head on the embeddings. Its settings are the library's
documented defaults (``losses.setfit`` in params.yaml); the only pipeline choices are the encoder
(``train.model``), the input length (``train.max_length``) and the seed, so the arm differs from
``cce`` only in how it learns. It writes the same run arrays as every arm (see ``training``).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from fewshot_dml.config.loss_sections import LossParams
from fewshot_dml.config.sections import TrainParams
from fewshot_dml.core.logs import Progress
from fewshot_dml.core.timing import Phases
from fewshot_dml.model.batching import is_pair_table
from fewshot_dml.model.ref import resolve
from fewshot_dml.train.checkpoints import BestCheckpoint, checkpoint_steps

logger = logging.getLogger(__name__)


def _import_setfit() -> Any:
    try:
        import setfit
    except ImportError as err:
        raise ImportError(
            f"the setfit arm needs the `setfit` library ({err}); install it with "
            "`pip install 'setfit>=1.1,<2'` or drop `setfit` from the arms"
        ) from None
    return setfit


def save_setfit(model: Any, path: Path | str) -> None:
    """``model.save_pretrained(path)``, with ``config_setfit.json`` and the model card made reproducible.

    SetFit writes ``config_setfit.json`` from a ``set`` of attribute names, whose order follows Python's
    per-process string hashing, so two identical runs wrote different bytes (and a different DVC hash):
    it is rewritten with sorted keys. Its model card names the save folder as the model id when that
    folder lies under the system's temporary directory (a workspace under /tmp, the atomic run folder
    ``.<seed>.<random>.tmp``), so the card changed with the random name: it is written again without
    a model id, as for any other folder.
    """
    import json

    model.save_pretrained(str(path))
    config = Path(path) / "config_setfit.json"
    if config.is_file():
        config.write_text(json.dumps(json.loads(config.read_text()), sort_keys=True, indent=2) + "\n")
    if (Path(path) / "README.md").is_file():
        model.model_card_data.model_id = None
        model.create_model_card(path=str(path), model_name="SetFit Model")  # not a folder: no id is inferred


def texts(table: pd.DataFrame, rows: Sequence[int], sep: str) -> list[str]:
    """The rows' texts; a sentence pair (MRPC) becomes one text joined by the tokenizer's separator."""
    part = table.iloc[list(rows)]
    if is_pair_table(table):
        return [f"{a} {sep} {b}" for a, b in zip(part["text"], part["text_pair"], strict=True)]
    return part["text"].tolist()


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """SetFit's own log lines, each undone afterwards: its per-step dicts and banner (our progress lines say
    the step, the loss and the time), "model_head.pkl not found ... random weights" (the trainer fits the
    head), sentence-transformers' "No `loss` passed, using CoSENTLoss" (SetFit passes CosineSimilarityLoss
    after that message), datasets' map bars and torch's pin_memory warning (there is no accelerator)."""
    import datasets

    names = ("setfit", "sentence_transformers", "transformers.trainer")
    levels = {name: logging.getLogger(name).level for name in names}
    bars = datasets.is_progress_bar_enabled()
    try:
        for name in names:
            logging.getLogger(name).setLevel(logging.ERROR)
        datasets.disable_progress_bars()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*pin_memory.*")
            yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        if bars:
            datasets.enable_progress_bars()


def load_setfit(train: TrainParams, directory: str | None, device: torch.device) -> Any:
    """A ``SetFitModel`` of ``train.model`` (``directory``: already resolved by :mod:`fewshot_dml.model.ref`)."""
    setfit = _import_setfit()
    directory = resolve(train.model).directory if directory is None else directory
    with quiet_libraries():
        model = setfit.SetFitModel.from_pretrained(directory, device=device.type)
    model.model_body.max_seq_length = train.max_length
    return model


def fit_setfit(
    train: TrainParams,
    loss: LossParams,
    table: pd.DataFrame,
    split: Mapping[str, Any],
    num_classes: int,
    device: torch.device,
    phases: Phases | None = None,
    model: Any = None,
) -> dict[str, Any]:
    """Train SetFit on ``split['train']``; embed and score the eval, dev and train rows.
    ``model`` is a fresh :func:`load_setfit` model (trained in place), or None to load one here.

    Returns the pieces ``training.train_run`` writes: ``curve``, ``arrays``, ``model`` and
    ``embedding_size``. Logits are the head's log-probabilities (argmax = its prediction).
    """
    phases = Phases() if phases is None else phases
    with phases("load"):
        setfit = _import_setfit()
        from datasets import Dataset

        hp, seed = loss.hparams, int(split["seed"])
        model = load_setfit(train, None, device) if model is None else model
    sep = model.model_body.tokenizer.sep_token or "[SEP]"
    labels = table["label"].to_numpy(np.int64)
    rows = {part: list(split[part]) for part in ("train", "dev", "eval")}
    data = Dataset.from_dict({"text": texts(table, rows["train"], sep), "label": labels[rows["train"]].tolist()})
    with phases("fit"), tempfile.TemporaryDirectory(prefix="setfit-") as scratch:
        args = setfit.TrainingArguments(
            output_dir=scratch,
            batch_size=hp["batch_size"],
            num_epochs=hp["num_epochs"],
            # n pairs per example and epoch (the paper's few-shot recipe: 20), or the library's oversampling (0)
            num_iterations=hp["num_iterations"] or None,
            body_learning_rate=hp["body_lr"],
            max_length=train.max_length,
            seed=seed,
            save_strategy="no",
            report_to="none",
            logging_steps=1,
            show_progress_bar=False,
        )
        callbacks = [_progress_callback(loss.name)]
        if rows["dev"] and train.dev_checkpoints > 1:
            dev = (texts(table, rows["dev"], sep), labels[rows["dev"]])
            checkpoints = _CheckpointCallback(model, (data["text"], labels[rows["train"]]), dev, train)
            callbacks.append(checkpoints.callback())
        else:
            checkpoints = None
        with quiet_libraries():
            trainer = setfit.Trainer(model=model, args=args, train_dataset=data, callbacks=callbacks)
            for printer in _printer_callbacks():  # a bar and a dict per step: our progress lines instead
                trainer.st_trainer.remove_callback(printer)
            trainer.train()
            if checkpoints is not None and checkpoints.tracker is not None and checkpoints.tracker.restore():
                trainer.train_classifier(data["text"], data["label"])  # the head of the chosen body, as train() fits it
        history = trainer.st_trainer.state.log_history
    curve = [
        {
            "step": int(h["step"]),
            "lr": float(h.get("learning_rate", 0.0)),
            "loss": float(h["embedding_loss"]),
            "cce": None,
            "dml": float(h["embedding_loss"]),
            "pairs_ok": True,
        }
        for h in history
        if "embedding_loss" in h
    ]
    arrays = {}
    with phases("embed"):
        for part in ("train", "dev", "eval"):  # train first: it is never empty and gives an empty part its width
            indices = rows[part]
            emb = _encode(
                model, texts(table, indices, sep), train.eval_batch_size, arrays["train"]["embeddings"].shape[1] if part != "train" else 0
            )
            arrays[part] = {"embeddings": emb, "labels": labels[indices], "indices": np.asarray(indices, np.int64)}
            if part != "train":
                arrays[part]["logits"] = _log_proba(model, emb, num_classes)
    arrays = {part: arrays[part] for part in ("eval", "dev", "train")}
    record = (
        checkpoints.tracker.record()
        if checkpoints is not None and checkpoints.tracker is not None
        else {"selected_step": len(curve), "dev_checkpoints": []}
    )
    return {
        "curve": curve,
        "arrays": arrays,
        "checkpoints": record,
        "model": model,
        "embedding_size": int(arrays["eval"]["embeddings"].shape[1]),
    }


class _CheckpointCallback:
    """The pair fine-tuning's checkpoints scored on the development set: at each, a copy of the head
    (scikit-learn's ``clone``: SetFit's unfitted LogisticRegression) is fitted on the training
    embeddings, as ``Trainer.train_classifier`` fits the real one, and its development accuracy is the
    checkpoint's score (:class:`~fewshot_dml.train.checkpoints.BestCheckpoint` keeps the best body)."""

    def __init__(self, model: Any, train_set: tuple[list[str], np.ndarray], dev_set: tuple[list[str], np.ndarray], train: TrainParams):
        self.model, self.train_set, self.dev_set, self.train = model, train_set, dev_set, train
        self.tracker: BestCheckpoint | None = None

    def score(self) -> float:
        from sklearn.base import clone

        head = clone(self.model.model_head)
        head.fit(_encode(self.model, list(self.train_set[0]), self.train.eval_batch_size, 0), self.train_set[1])
        predicted = head.predict(_encode(self.model, self.dev_set[0], self.train.eval_batch_size, 0))
        self.model.model_body.train()  # encode() leaves the body in eval mode; training goes on
        return float(np.mean(np.asarray(predicted) == self.dev_set[1]))

    def callback(self) -> Any:
        from transformers import TrainerCallback

        outer = self

        class _Checkpoints(TrainerCallback):
            def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                steps = checkpoint_steps(int(state.max_steps), outer.train.dev_checkpoints)
                outer.tracker = BestCheckpoint(steps, outer.score, {"body": outer.model.model_body})

            def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                if outer.tracker is not None:
                    outer.tracker(int(state.global_step))

        return _Checkpoints()


def _printer_callbacks() -> tuple[type, ...]:
    from transformers import PrinterCallback, ProgressCallback

    return PrinterCallback, ProgressCallback


def _progress_callback(name: str) -> Any:
    """A transformers callback that logs :class:`~fewshot_dml.core.logs.Progress` lines of the pair fine-tuning."""
    from transformers import TrainerCallback

    class _Progress(TrainerCallback):
        progress: Progress | None = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.progress = Progress(logger, f"train {name}", int(state.max_steps))

        def on_log(self, args: Any, state: Any, control: Any, logs: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
            if self.progress is not None and logs and "embedding_loss" in logs:
                self.progress.update(int(state.global_step), loss=float(logs["embedding_loss"]))

    return _Progress()


def encode_and_score(model: Any, table: pd.DataFrame, batch_size: int, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(log-probabilities (N, C), embeddings (N, D)) of every row of ``table``, as the arm scores its evaluation set."""
    emb = _encode(model, texts(table, range(len(table)), model.model_body.tokenizer.sep_token or "[SEP]"), batch_size, 0)
    return _log_proba(model, emb, num_classes), emb


def _encode(model: Any, batch: list[str], batch_size: int, width: int) -> np.ndarray:
    if not batch:
        return np.zeros((0, width), np.float32)
    # What SetFitModel.predict feeds its head (SetFitModel.encode without its tensor round trip).
    emb = model.model_body.encode(
        batch, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False, normalize_embeddings=model.normalize_embeddings
    )
    return np.asarray(emb, np.float32)


def _log_proba(model: Any, emb: np.ndarray, num_classes: int) -> np.ndarray:
    """(N, C) log-probabilities of the head; a class absent from training gets -inf -> a floor."""
    out = np.full((len(emb), num_classes), np.log(np.float32(1e-12)), np.float32)
    if len(emb):
        proba = model.model_head.predict_proba(emb)
        out[:, model.model_head.classes_.astype(np.int64)] = np.log(np.maximum(proba, 1e-12))
    return out
