"""Token attributions with Integrated Gradients (Captum) for the runs that saved their weights.

For a fixed, seeded handful of evaluation sentences per dataset (drawn class by class from the first
seed's evaluation set, the same for every arm and seed) and every fine-tuned run that kept its weights
(``train.save_weights``), attributions to each word of the true class's log-softmax of two scores:

* ``classifier``: the classification head's logits (the log-probability of the true class);
* ``metric``: the DML side's own class scores, where the loss has centres the loss's scores
  (``LossSpec.class_scores``, e.g. Proxy-Anchor's alpha x cosine to each proxy, whose softmax is the
  loss's own posterior), else the cosines to the class prototypes (the normalised means of the run's
  few-shot training embeddings, as prototype inference scores).

Captum's ``LayerIntegratedGradients`` integrates along the straight path from a baseline, the same
token sequence with every non-special token replaced by padding, to the sentence, in the embedding
layer's output space; the token attributions are summed over the hidden dimension and then over each
word's sub-word tokens. Completeness (the attributions sum to F(x) − F(baseline)) is checked by the
convergence delta that is stored with each attribution. The SetFit arm (a sentence-transformers body
with a scikit-learn head) is not attributed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from fewshot_dml.analysis.explain_report import INDEX
from fewshot_dml.catalog.arms import KIND_SETFIT
from fewshot_dml.config.params import Params
from fewshot_dml.core import io, layout, rundir
from fewshot_dml.data.table import read_table
from fewshot_dml.losses import get_spec
from fewshot_dml.model.classifier import TextClassifier
from fewshot_dml.report.summary import roles
from fewshot_dml.train.loss_state import load_loss_module

logger = logging.getLogger(__name__)


def choose_sentences(labels: np.ndarray, n: int, seed: int) -> list[int]:
    """``n`` positions of the evaluation set, class by class in turn (class order, then a seeded shuffle)."""
    rng = np.random.default_rng(seed)
    pools = [list(rng.permutation(np.flatnonzero(labels == c))) for c in np.unique(labels)]
    chosen: list[int] = []
    while len(chosen) < min(n, len(labels)):
        for pool in pools:
            if pool and len(chosen) < n:
                chosen.append(int(pool.pop(0)))
    return chosen


def word_groups(encoding: Any, text: str, text_pair: str) -> tuple[list[str], list[list[int]]]:
    """The words of a (fast-tokenizer) encoding, each with its token positions; special tokens belong to none.
    The words of the first sentence come first (see :func:`first_words`)."""
    words: dict[tuple[int, int], list[int]] = {}
    for position, (sequence, word) in enumerate(zip(encoding.sequence_ids(), encoding.word_ids(), strict=True)):
        if word is not None:
            words.setdefault((sequence, word), []).append(position)
    names = []
    for sequence, word in words:
        span = encoding.word_to_chars(word, sequence_index=sequence)
        names.append((text if sequence == 0 else text_pair)[span.start : span.end])
    return names, list(words.values())


def first_words(encoding: Any) -> int:
    """How many of :func:`word_groups`' words belong to the first sentence (all, without a pair)."""
    return len({w for seq, w in zip(encoding.sequence_ids(), encoding.word_ids(), strict=True) if seq == 0 and w is not None})


def integrated_gradients(
    model: TextClassifier,
    score: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    batch: dict[str, torch.Tensor],
    special: torch.Tensor,
    pad_id: int,
    steps: int,
) -> tuple[np.ndarray, float, float, float]:
    """Per-token attributions (T,) of ``score(logits, pooled)`` for one encoded sentence, the convergence
    delta, F(x) and F(baseline). The baseline keeps the special tokens and pads everything else."""
    from captum.attr import LayerIntegratedGradients

    extra = {k: v for k, v in batch.items() if k not in ("input_ids", "attention_mask")}

    def forward(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        repeat = input_ids.shape[0]
        more = {k: v.expand(repeat, -1) for k, v in extra.items()}
        logits, pooled = model({"input_ids": input_ids, "attention_mask": attention_mask, **more})
        return score(logits, pooled)

    ids, mask = batch["input_ids"], batch["attention_mask"]
    baseline = torch.where(special, ids, torch.full_like(ids, pad_id))
    ig = LayerIntegratedGradients(forward, model.encoder.embeddings)
    attributions, delta = ig.attribute(
        ids, baselines=baseline, additional_forward_args=(mask,), n_steps=steps, return_convergence_delta=True
    )
    with torch.no_grad():
        at_x, at_base = float(forward(ids, mask)[0]), float(forward(baseline, mask)[0])
    return attributions.sum(dim=-1)[0].detach().numpy(), float(delta[0]), at_x, at_base


def metric_score(run_dir: Path, run: dict[str, Any]) -> tuple[str, Callable[[torch.Tensor], torch.Tensor]]:
    """``(kind, pooled -> (B, C) class scores)``: the loss's own scores where it has centres, else prototypes."""
    module = load_loss_module(run_dir, run)
    if module is not None:
        scores = get_spec(run["loss"]["base"]).class_scores
        return "proxy", lambda pooled: scores(module, pooled)
    train = rundir.read_npz(run_dir / rundir.TRAIN, ("embeddings", "labels"))
    emb = torch.nn.functional.normalize(torch.from_numpy(train["embeddings"].astype(np.float32)), dim=1)
    protos = torch.zeros(int(run["num_classes"]), emb.shape[1]).index_add_(0, torch.from_numpy(train["labels"]), emb)
    protos = torch.nn.functional.normalize(protos, dim=1)
    return "prototype", lambda pooled: torch.nn.functional.normalize(pooled, dim=1) @ protos.T


def explain_run(
    run_dir: Path, table: pd.DataFrame, rows: Sequence[int], steps: int
) -> tuple[list[tuple[list[str], int]], list[dict[str, Any]]]:
    """The words of ``rows`` of the table (with how many are the first sentence's), and the attributions
    of the true class's classifier logit and metric score to them."""
    from fewshot_dml.model.batching import collate

    run = io.read_json(rundir.require(run_dir / rundir.RUN))
    model, tokenizer = TextClassifier.load(run_dir / rundir.MODEL)
    model.requires_grad_(False)  # gradients are taken at the embedding layer's output only
    words = []
    kind, scores = metric_score(run_dir, run)
    out: dict[str, dict[str, Any]] = {"classifier": {"kind": "classifier"}, "metric": {"kind": kind}}
    for entry in out.values():
        entry.update(attributions=[], delta=[], score=[], baseline_score=[], predicted=[])
    for row in rows:
        text, pair, label = table["text"].iat[row], table["text_pair"].iat[row], int(table["label"].iat[row])
        enc = tokenizer(text, pair or None, truncation=True, max_length=int(run["train"]["max_length"]))
        batch = collate(tokenizer, [dict(enc)], torch.device("cpu"))
        special = torch.tensor(tokenizer.get_special_tokens_mask(enc["input_ids"], already_has_special_tokens=True), dtype=torch.bool)[None]
        names, groups = word_groups(enc, text, pair)
        words.append((names, first_words(enc)))
        with torch.no_grad():
            predicted = int(model(batch)[0].argmax(dim=1)[0])
        # Log-softmax, not the raw score: a word that raises every class's score alike says nothing about the class.
        targets = {
            "classifier": lambda logits, pooled, c=label: torch.log_softmax(logits, dim=1)[:, c],
            "metric": lambda logits, pooled, c=label: torch.log_softmax(scores(pooled), dim=1)[:, c],
        }
        for target, score in targets.items():
            tokens, delta, at_x, at_base = integrated_gradients(model, score, batch, special, tokenizer.pad_token_id, steps)
            entry = out[target]
            entry["attributions"].append([round(float(tokens[g].sum()), 6) for g in groups])
            entry["delta"].append(round(delta, 6))
            entry["score"].append(round(at_x, 6))
            entry["baseline_score"].append(round(at_base, 6))
            entry["predicted"].append(predicted)
    return words, [{"target": target, **entry} for target, entry in out.items()]


def explain_cell(params: Params, runs_dir: Path, raw_dir: Path, dataset: str, size: int) -> dict[str, Any] | None:
    """Attributions of every fine-tuned run of (dataset, size) that kept its weights; None if none did."""
    first = params.seeds[0]
    role = roles(params.loss)
    runs = [
        (seed, arm)
        for seed in params.seeds
        for arm in params.arms
        if get_spec(params.losses[arm].base).kind != KIND_SETFIT
        and (Path(runs_dir) / layout.run_id(dataset, size, seed, arm) / rundir.MODEL).is_dir()
    ]
    if not runs:
        return None
    table = read_table(Path(raw_dir) / f"{dataset}{layout.TABLE_SUFFIX}")
    first_run = Path(runs_dir) / layout.run_id(dataset, size, first, params.arms[0])
    ev = rundir.read_npz(first_run / rundir.EVAL, ("indices", "labels"))
    rows = [int(ev["indices"][i]) for i in choose_sentences(ev["labels"], params.explain.sentences, params.explain.seed)]
    label_names = io.read_json(first_run / rundir.RUN)["label_names"]
    explained, words = [], None
    for seed, arm in runs:
        run_dir = Path(runs_dir) / layout.run_id(dataset, size, seed, arm)
        train_rows = set(rundir.read_npz(run_dir / rundir.TRAIN, ("indices",))["indices"].tolist())
        if train_rows & set(rows):  # a sentence this run trained on explains nothing about generalisation
            logger.warning("%s: skipped, it trained on a chosen sentence", run_dir)
            continue
        logger.info("explain %s", run_dir)
        run_words, entries = explain_run(run_dir, table, rows, params.explain.steps)
        if words is not None and run_words != words:
            raise ValueError(
                f"{run_dir}: its tokenizer splits the sentences into other words than the "
                "cell's other runs; expected every arm of a cell to share the encoder's tokenizer"
            )
        words = run_words
        explained += [{"seed": seed, "arm": arm, "role": role[arm], **entry} for entry in entries]
    sentences = [
        {
            "row": row,
            "text": table["text"].iat[row],
            "text_pair": table["text_pair"].iat[row],
            "label": int(table["label"].iat[row]),
            "label_name": label_names[int(table["label"].iat[row])],
            "words": w,
            "first_words": first,
        }
        for row, (w, first) in zip(rows, words or [([], 0)] * len(rows), strict=True)
    ]
    return {"dataset": dataset, "size": size, "seed": first, "steps": params.explain.steps, "sentences": sentences, "runs": explained}


def run_explain(params: Params, runs_dir: Path, raw_dir: Path, out_dir: Path) -> list[str]:
    """Explain every (dataset, size) of the grid with saved weights; write ``out_dir`` (index + one JSON each)."""
    done = []
    with io.atomic_dir(out_dir) as tmp:
        for dataset in params.datasets:
            for size in params.sample_sizes:
                item = explain_cell(params, runs_dir, raw_dir, dataset, size)
                if item is not None:
                    name = f"{layout.split_group(dataset, size)}.json"
                    io.write_json(tmp / name, item)
                    done.append(name)
        io.write_json(tmp / INDEX, {"explained": done})
    return done
