"""``tuning.md``: how the settings were chosen, from the very runs ``results.md`` reports.

With development checkpoints (the default), the development set chose each run's training length
(:mod:`fewshot_dml.train.checkpoints`): every arm scores the same number of checkpoints of its own training, so
every arm gets the same development budget; this report shows those budgets side by side and what the development
set chose. Without them (the studies' preset), it says that nothing was chosen. Either way it ends with the
held-out comparison, computed from the same tables as ``results.md`` (the two cannot disagree).
"""

from __future__ import annotations

from fewshot_dml.catalog.arms import BASELINE, SETFIT
from fewshot_dml.config.params import Params
from fewshot_dml.core.markdown import fmt_p, pct, pp, table
from fewshot_dml.report.protocol import chooses_on_dev
from fewshot_dml.report.tables import Tables


def _steps(points: list[int]) -> str:
    return ", ".join(str(s) for s in points)


def _budget_rows(tables: Tables) -> list[tuple]:
    """Per arm: checkpoints per run, the steps they sit at (per dataset where they differ), dev evaluations."""
    cp, rows = tables.checkpoints, []
    for arm in tables.arms:
        mine = cp[cp["arm"] == arm]
        runs = int((tables.runs["arm"] == arm).sum())
        if mine.empty:
            rows.append((f"`{arm}`", 1, "the last step only", runs, 0))
            continue
        by_dataset = {d: sorted(set(g["step"])) for d, g in mine.groupby("dataset", sort=False)}
        shapes = {tuple(v) for v in by_dataset.values()}
        if len(shapes) == 1:
            where = _steps(by_dataset[next(iter(by_dataset))])
        else:
            common = max(shapes, key=lambda s: sum(tuple(v) == s for v in by_dataset.values()))
            other = "; ".join(f"{d}: {_steps(v)}" for d, v in by_dataset.items() if tuple(v) != common)
            where = f"{_steps(list(common))} ({other})"
        rows.append((f"`{arm}`", int(mine["of"].max()), where, runs, len(mine)))
    return rows


def _chosen_rows(tables: Tables) -> list[tuple]:
    """Per arm and checkpoint: mean development accuracy (over datasets of the mean over seeds), and how
    often the development set kept it."""
    cp, rows = tables.checkpoints, []
    for arm in tables.arms:
        mine = cp[cp["arm"] == arm]
        n_runs = mine.groupby(["dataset", "size", "seed"]).ngroups
        for k, g in mine.groupby("k"):
            dev = g.groupby("dataset", sort=False)["dev_accuracy"].mean().mean()
            kept = int(g["chosen"].sum())
            rows.append((f"`{arm}`", f"{k} of {int(g['of'].max())}", f"{g['step'].mean():.0f}", pct(dev), f"{kept} ({kept / n_runs:.0%})"))
    return rows


def _held_out(tables: Tables, dev_words: str) -> str:
    cls = tables.accuracy[tables.accuracy["mode"] == "classifier"]
    datasets = list(dict.fromkeys(cls["dataset"]))
    rows = []
    for arm in tables.arms:
        mine = cls[cls["arm"] == arm]
        per = [pct(mine.loc[mine["dataset"] == d, "accuracy_mean"].mean()) for d in datasets]
        dev = mine.groupby("dataset", sort=False)["dev_mean"].mean().mean()
        rows.append((f"`{arm}`", pct(dev), *per, pct(mine.groupby("dataset", sort=False)["accuracy_mean"].mean().mean())))
    accuracy = table(("arm", "dev acc", *datasets, "mean"), rows)
    overall = tables.overall[tables.overall["mode"] == "classifier"]
    conf = f"{tables.confidence:.0%}"
    comparisons = table(
        ("comparison", "n pairs", f"gain (pp) [{conf} CI]", "Holm p", "degenerate runs", "verdict"),
        [
            (
                f"`{r.treated}` − `{r.baseline}`",
                r.n,
                f"{pp(r.gain_pp)} [{pp(r.ci_low_pp)}, {pp(r.ci_high_pp)}]",
                fmt_p(r.p_holm),
                f"{r.degenerate_treated} / {r.degenerate_baseline} of {r.runs_treated}",
                r.verdict,
            )
            for r in overall.itertuples()
        ],
    )
    return (
        "## Held-out comparison\n\n"
        f"Evaluation accuracy (%) of the classifier head, mean over seeds per dataset; the development accuracy is {dev_words}. "
        "These are the runs and the tests of [results.md](results.md), read from the same tables.\n\n" + accuracy + "\n\n" + comparisons
    )


def _precision(precision: str) -> str:
    if precision == "fp32":
        return (
            "training runs in fp32 (bf16 is ≈ 1.5× faster per CPU step, bench/results.md, but was not compared on the "
            "development set, so the default keeps the precision of its earlier results)"
        )
    return (
        f"the fine-tuned arms train at `train.precision: {precision}` (not compared with fp32 on the development set); "
        "SetFit's trainer runs in fp32"
    )


def _dev_column(params: Params) -> str:
    """What the held-out table's development accuracy is."""
    if params.sample.dev_ratio == 0:
        return "not measured (`sample.dev_ratio: 0`: no development set)"
    if chooses_on_dev(params):
        return "that of the kept checkpoints (chosen on it, so optimistic)"
    return "that of the final models (not used for any choice)"


def render_tuning(params: Params, tables: Tables) -> str:
    """The whole ``tuning.md``: with development checkpoints, what they chose under equal budgets; without, that
    nothing was chosen (every run keeps its final model)."""
    t, sf = params.train, params.losses[SETFIT].hparams
    dml = tables.dml_arm
    chosen = chooses_on_dev(params)
    if chosen:
        choice = (
            "**Chosen on the development set, run by run: the training length.** Every arm scores the development set "
            f"at {t.dev_checkpoints} evenly spaced checkpoints of its own training and keeps the best (ties to the later; "
            f"LM-BFF's rule, `train.dev_checkpoints`): `{BASELINE}` and `{dml}` over their {t.steps} steps, `{SETFIT}` "
            f"over its pair steps ({sf['num_iterations'] or 'the library default'} pair rounds, its head refitted at each "
            "checkpoint). So every arm has the same number of dev-evaluated configurations per run."
        )
    else:
        choice = (
            "**Nothing chosen on the development set:** every run keeps its final model (`train.dev_checkpoints: "
            f"{t.dev_checkpoints}`, `sample.dev_ratio: {params.sample.dev_ratio:g}`): `{BASELINE}` and `{dml}` after "
            f"{t.steps} steps, `{SETFIT}` after its pair steps ({sf['num_iterations'] or 'the library default'} pair rounds)."
        )
    intro = (
        "# How the settings were chosen\n\n"
        f"Every number here comes from the runs of [results.md](results.md) ({len(params.datasets)} datasets × "
        f"{len(params.seeds)} seeds, `{params.sample.protocol}` protocol, size {', '.join(map(str, params.sample_sizes))}). "
        "Nothing was chosen on the evaluation set.\n\n"
        + choice
        + "\n\n**Fixed in advance:** every other setting, each with its source in params.yaml (or in the preset that set "
        "it): SetFit's recipe is its paper's; the settings marked `[tuning]` in params.yaml (the default's DML loss among "
        "them) were chosen by an earlier development sweep on the studies' k-fold draw at 20 steps "
        f"(docs/results-history.md); {_precision(t.precision)}."
    )
    if not chosen:
        return intro + "\n\n" + _held_out(tables, _dev_column(params)) + "\n"
    budgets = table(("arm", "checkpoints per run", "steps scored", "runs", "dev evaluations"), _budget_rows(tables))
    picked = table(("arm", "checkpoint", "mean step", "mean dev acc", "kept in runs"), _chosen_rows(tables))
    return (
        intro
        + "\n\n## Development budget per arm\n\n"
        + budgets
        + "\n\n## What the development set chose\n\n"
        + "Mean development accuracy (%) at each checkpoint (over datasets of the mean over seeds), and in how many "
        "runs it was kept. A budget whose last checkpoint is kept most often may be too short; one whose earliest "
        "is kept most often, too long.\n\n" + picked + "\n\n" + _held_out(tables, _dev_column(params)) + "\n"
    )
