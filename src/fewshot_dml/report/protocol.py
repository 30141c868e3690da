"""The "What was run" table of ``results.md``: every setting of the study, in words, from the params."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from fewshot_dml.catalog.arms import BASELINE, SETFIT
from fewshot_dml.config.params import Params
from fewshot_dml.core.markdown import table


def _protocol(params: Params) -> str:
    s = params.sample
    draw = (
        "`per_class`: the size is examples of every class (SetFit's and LM-BFF's balanced draw)"
        if s.protocol == "per_class"
        else f"`kfold`: {s.folds} folds, one held out for evaluation, the size drawn uniformly from the rest (the studies' draw)"
    )
    return (
        f"{draw}; evaluation set capped at {s.eval_max if s.eval_max else 'no limit'}; development set of "
        f"{s.dev_ratio:g}× the training set, disjoint from both"
    )


def chooses_on_dev(params: Params) -> bool:
    """Whether the development set chose each run's checkpoint (more than one checkpoint, and a development set)."""
    return params.train.dev_checkpoints > 1 and params.sample.dev_ratio > 0


def _checkpoints(params: Params) -> str:
    n = params.train.dev_checkpoints
    if not chooses_on_dev(params):
        return "the final model is kept (no development checkpoints)"
    return (
        f"the development set is scored at {n} evenly spaced checkpoints and the best is kept, ties to the later "
        "(LM-BFF's rule; SetFit likewise over its pair steps)"
    )


def _setfit_recipe(hp: Mapping[str, Any]) -> str:
    n = hp["num_iterations"]
    if n == 20 and hp["num_epochs"] == 1 and hp["batch_size"] == 16:
        return "SetFit's published few-shot recipe: 20 pair rounds"
    return f"{n} pair rounds" if n else "the setfit library's default pair oversampling"


def what_was_run(params: Params, dml: str) -> str:
    t, inf, agg = params.train, params.infer, params.aggregate
    loss, sf = params.losses[dml], params.losses[SETFIT]
    extra = [f"proxy lr {loss.proxy_lr:g}"] if loss.proxy_lr is not None else []
    extra += [f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in sorted(loss.hparams.items())]
    if loss.base != loss.name:
        extra.insert(0, f"a variant of `{loss.base}`")
    if loss.dml_on == "tokens":
        extra.append("DML on every token's hidden state (the studies' protocol)")
    if loss.metrix is not None:
        m = loss.metrix
        where = f"after encoder layer {m.layer}" if m.point == "feature" else f"at the {m.point}"
        extra.append(f"Metrix: mixing {where}, λ ~ Beta({m.alpha:g}, {m.alpha:g}), mixed loss weight {m.weight:g}")
    beta = loss.beta if loss.beta is not None else math.nan
    n_seeds = len(params.seeds)
    rows = [
        ("model", f"`{t.model}` ({t.pooling} pooling, max length {t.max_length})"),
        ("datasets", ", ".join(params.datasets)),
        ("few-shot sizes", ", ".join(map(str, params.sample_sizes))),
        ("seeds", f"{', '.join(map(str, params.seeds))} (n = {n_seeds})"),
        ("protocol", _protocol(params)),
        (
            "training",
            f"{f'{t.epochs} epochs' if t.epochs else f'{t.steps} steps'}, batch {t.batch_size} "
            f"({t.sampler} sampler), lr {t.lr:g} (head {t.head_lr:g}"
            f"{f', layer-wise decay {t.llrd:g}' if t.llrd < 1 else ''}), {t.scheduler} schedule with "
            f"{t.warmup_steps} warm-up steps, weight decay {t.weight_decay:g}, dropout {t.dropout:g}, "
            f"max grad norm {t.max_grad_norm:g}, `{t.precision}` precision"
            f"{'' if t.precision == 'fp32' else ' (SetFit trains in fp32)'}"
            f"{f', top {t.reinit_layers} layer(s) re-initialised' if t.reinit_layers else ''}; " + _checkpoints(params),
        ),
        (
            "arms",
            f"`{BASELINE}` (cross-entropy); `{SETFIT}` ({_setfit_recipe(sf.hparams)}; batch "
            f"{sf.hparams['batch_size']}, {sf.hparams['num_epochs']} epoch(s), body lr {sf.hparams['body_lr']:g}, "
            f"logistic-regression head); `{dml}`: {beta:g}·CCE + {1 - beta:g}·{dml}" + (f" ({', '.join(extra)})" if extra else ""),
        ),
        (
            "inference",
            f"classifier head; proxy mix w·softmax(classifier) + (1−w)·softmax(proxies) at "
            f"w = {inf.proxy_weight:g}; prototype (nearest class mean); kNN with k = {inf.knn_k}",
        ),
        (
            "statistics",
            f"paired by seed; {agg.confidence:.0%} Student-t intervals (n − 1 df); exact two-sided "
            "sign-flip permutation test of the mean difference; Holm's correction over every per-cell "
            "test of this report (one family) and over the overall tests (another); a cell is won or "
            f"lost only if its Holm p < {agg.alpha:g}. Overall: mean of the cell means, randomised-block "
            "t-interval (cells as blocks, variance pooled within cells) and the sign-flip test "
            "stratified by cell",
        ),
        (
            "tuning",
            "none on the evaluation set: every setting is the params.yaml of this run (a default names its source there; "
            "a preset or `-S` override changes it); "
            + (
                "the development set chose each run's checkpoint ([tuning.md](tuning.md): what it chose, and how the default was set)"
                if chooses_on_dev(params)
                else "nothing was chosen on the development set ([tuning.md](tuning.md))"
            ),
        ),
    ]
    return "## What was run\n\n" + table(("setting", "value"), rows)
