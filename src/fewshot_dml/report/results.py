"""``results.md``: what was run, what it shows and how sure we are, in the order a reader asks."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fewshot_dml.catalog.arms import BASELINE, SETFIT
from fewshot_dml.config.params import Params
from fewshot_dml.core.markdown import fmt_p, pct, pp, table
from fewshot_dml.report.protocol import what_was_run
from fewshot_dml.report.stats import detectable_note
from fewshot_dml.report.summary import MAX_DEGENERATE, NOT_CALLED
from fewshot_dml.report.tables import Tables

CITATIONS = (
    "Witold Sosnowski, Anna Wróblewska, Karolina Seweryn, Piotr Gawrysiak. *Revisiting Distance Metric Learning "
    "for Few-Shot Natural Language Classification.* arXiv:2211.15202, 2022 (CCE + ProxyAnchor: +3.27 pp).",
    "Witold Sosnowski, Karolina Seweryn, Anna Wróblewska, Piotr Gawrysiak. *Distance Metric Learning Loss Functions "
    "in Few-Shot Scenarios of Supervised Language Models Fine-Tuning.* arXiv:2211.15195, 2022 (CCE + SoftTriple: "
    "+2.89 pp).",
    "Witold Sosnowski, Anna Wróblewska, Piotr Gawrysiak. *Applying SoftTriple Loss for Supervised Language Model "
    "Fine Tuning* (TripleEntropy). arXiv:2112.08462, 2021.",
    "Shashanka Venkataramanan, Bill Psomas, Ewa Kijak, Laurent Amsaleg, Konstantinos Karantzalos, Yannis Avrithis. "
    "*It Takes Two to Tango: Mixup for Deep Metric Learning* (Metrix). ICLR 2022, arXiv:2106.04990.",
    "Lewis Tunstall, Nils Reimers, Unso Eun Seo Jo, Luke Bates, Daniel Korat, Moshe Wasserblat, Oren Pereg. "
    "*Efficient Few-Shot Learning Without Prompts* (SetFit). arXiv:2209.11055, 2022.",
    "Tianyu Gao, Adam Fisch, Danqi Chen. *Making Pre-trained Language Models Better Few-shot Learners* (LM-BFF: "
    "a development set as large as the training set). ACL 2021, arXiv:2012.15723.",
)
# Published gains of CCE + DML over CCE alone (RoBERTa-large, the studies' k-fold protocol); quoted, never computed.
REFERENCE = (("CCE+ProxyAnchor", "proxyanchor", 3.27, "up to +10.38"), ("CCE+SoftTriple", "softtriple", 2.89, "+0.04 to +13.48"))


def _degenerate_words(r: Any) -> str:
    """How many runs of each arm are degenerate, and why that stops the verdict."""
    share = max(r.degenerate_treated / r.runs_treated, r.degenerate_baseline / r.runs_baseline)
    return (
        f"{r.degenerate_treated} of {r.runs_treated} `{r.treated}` runs and {r.degenerate_baseline} of {r.runs_baseline} "
        f"`{r.baseline}` runs are degenerate, {share:.0%} in one arm: the difference would measure the collapse, not the method"
    )


def _degenerate_note(r: Any) -> str:
    counts = [(r.degenerate_treated, r.runs_treated, r.treated), (r.degenerate_baseline, r.runs_baseline, r.baseline)]
    flagged = [f"{d} of {n} `{arm}` runs" for d, n, arm in counts if d]
    return f" (degenerate: {' and '.join(flagged)}, kept in the means)" if flagged else ""


def _bound(r: Any, dml: str, conf: str) -> str:
    """Where no gain is shown, what the data do say: the largest average gain the interval leaves open."""
    if r.verdict != "not shown" or not math.isfinite(r.ci_high_pp):
        return ""
    if r.ci_high_pp <= 0:
        return f"No gain: the {conf} interval lies at or below zero. "
    return (
        f"In plain words, `{dml}` does not measurably help here: the {conf} interval bounds its average gain over "
        f"`{r.baseline}` at {pp(r.ci_high_pp)} pp. "
    )


def _verdict(params: Params, tables: Tables) -> str:
    """The plain-language answer, derived only from the Holm-corrected blocked tests."""
    o = {(r.treated, r.baseline): r for r in tables.overall[tables.overall["mode"] == "classifier"].itertuples()}
    dml, conf = tables.dml_arm, f"{tables.confidence:.0%}"
    n_overall = int(tables.overall["p_holm"].notna().sum())

    def say(treated: str, baseline: str) -> str:
        r = o[(treated, baseline)]
        shown = r.verdict in ("won", "lost")
        if r.verdict == NOT_CALLED:
            head = f"we do not call `{treated}` against `{baseline}` ({_degenerate_words(r)})"
        elif shown:
            head = f"`{treated}` {'beats' if r.gain_pp > 0 else 'trails'} `{baseline}`" + _degenerate_note(r)
        else:
            head = f"we cannot tell `{treated}` from `{baseline}`" + _degenerate_note(r)
        # The interval is not corrected for multiplicity; the Holm-corrected test decides.
        excludes_zero = r.ci_low_pp > 0 or r.ci_high_pp < 0
        caveat = (
            f"; its uncorrected interval excludes zero, but the test does not reach p < {tables.alpha:g} after "
            f"Holm's correction over the {n_overall} overall tests"
            if not shown and excludes_zero
            else ""
        )
        return (
            f"{head}: {pp(r.gain_pp)} pp on average over {r.cells} dataset × size cells ({conf} CI "
            f"[{pp(r.ci_low_pp)}, {pp(r.ci_high_pp)}], blocked over {r.n} seed pairs; Holm p = "
            f"{fmt_p(r.p_holm)}{caveat})"
        )

    g = tables.gains[(tables.gains["treated"] == dml) & (tables.gains["baseline"] == BASELINE) & (tables.gains["mode"] == "classifier")]
    won, lost = int((g["verdict"] == "won").sum()), int((g["verdict"] == "lost").sum())
    positive = int((g["gain_pp"] > 0).sum())
    return (
        "## Verdict\n\n"
        f"On these {len(params.datasets)} datasets with `{params.train.model}`, {say(dml, BASELINE)}. "
        + _bound(o[(dml, BASELINE)], dml, conf)
        + f"For context, {say(SETFIT, BASELINE)}; and {say(dml, SETFIT)}. "
        f"Per dataset, `{dml}` won {won} and lost {lost} of {len(g)} cells after Holm's correction "
        f"(raw count of positive point estimates, not a test: {positive}/{len(g)}). "
        f'"Cannot tell" means the Holm-corrected test does not reach p < {tables.alpha:g}: these data do not '
        "establish a difference, nor (where the interval includes zero) rule out one of the interval's size. "
        f'A comparison is "not called" where more than {MAX_DEGENERATE:.0%} of either arm\'s runs are degenerate. '
        "The intervals treat the datasets as fixed; the overall table also gives the wider interval for "
        "generalising to other datasets."
    )


def _power(params: Params, tables: Tables) -> str:
    tests = int(tables.gains["dataset"].size)
    n = len(params.seeds)
    return (
        "## What this protocol can detect\n\n"
        + detectable_note(n, tests, params.aggregate.alpha)
        + f" The {tests} per-cell tests (every comparison, mode and cell of this report) form one Holm family. "
        "The blocked overall test pools every seed pair of a comparison, so it is the one that can show an "
        "average gain."
    )


def _accuracy_section(tables: Tables) -> str:
    acc = tables.accuracy
    cls = acc[acc["mode"] == "classifier"]
    rows = []
    for (dataset, size), g in cls.groupby(["dataset", "size"], sort=False):
        by_arm = {r.arm: r for r in g.itertuples()}
        cells = [
            f"{pct(by_arm[a].accuracy_mean)} ± {pct(by_arm[a].accuracy_std)}" + (f" ⚠{by_arm[a].flagged}" if by_arm[a].flagged else "")
            for a in tables.arms
        ]
        f1 = [pct(by_arm[a].macro_f1_mean) for a in tables.arms]
        dev = [pct(by_arm[a].dev_mean) for a in tables.arms]
        rows.append((dataset, size, pct(g["majority_mean"].iloc[0]), *cells, *f1, " / ".join(dev)))
    arms = [f"`{a}`" for a in tables.arms]
    header = (
        "dataset",
        "size",
        "majority",
        *(f"{a} acc" for a in arms),
        *(f"{a} F1" for a in arms),
        "dev acc (" + " / ".join(tables.arms) + ")",
    )
    other = acc[acc["mode"] != "classifier"]
    other_rows = [
        (r.dataset, r.size, f"`{r.arm}`", r.mode, f"{pct(r.accuracy_mean)} ± {pct(r.accuracy_std)}", pct(r.macro_f1_mean))
        for r in other.itertuples()
    ]
    return (
        "## Accuracy and macro-F1 (%)\n\nClassifier head, evaluation set: mean ± sample sd over seeds (n = "
        f"{int(cls['n'].max())}); `majority` always predicts the dataset's most frequent class; ⚠k marks k "
        "degenerate runs kept in the cell. The development accuracy is the one to tune on.\n\n"
        + table(header, rows)
        + "\n\nOther inference modes (proxy: w·classifier + (1−w)·proxies; prototype: nearest class mean; "
        "kNN over the training embeddings):\n\n" + table(("dataset", "size", "arm", "mode", "accuracy", "macro-F1"), other_rows)
    )


def _gains_section(tables: Tables) -> str:
    g = tables.gains
    conf = f"{tables.confidence:.0%} t-interval"
    parts = []
    for (treated, baseline), rows in g.groupby(["treated", "baseline"], sort=False):
        lines = [
            (
                r.dataset,
                r.size,
                r.mode if r.mode == r.baseline_mode else f"{r.mode} vs {r.baseline_mode}",
                pp(r.gain_pp),
                f"[{pp(r.ci_low_pp)}, {pp(r.ci_high_pp)}]",
                r.n,
                fmt_p(r.p_value),
                fmt_p(r.p_min),
                fmt_p(r.p_holm),
                r.verdict,
            )
            for r in rows.itertuples()
        ]
        parts.append(
            f"### `{treated}` − `{baseline}`\n\n"
            + table(("dataset", "size", "mode", "gain (pp)", conf, "n", "exact p", "min p", "Holm p", "verdict"), lines)
        )
    return (
        f"## Gains per dataset (pp)\n\nPaired by seed. `exact p`: two-sided sign-flip test over all 2^n sign "
        f"patterns; `min p`: the smallest p that test can give with this n; `Holm p`: adjusted over all "
        f"{len(g)} per-cell tests below. The verdict is `won`/`lost` only if Holm p < {tables.alpha:g}.\n\n" + "\n\n".join(parts)
    )


def _overall_section(params: Params, tables: Tables) -> str:
    conf = f"{tables.confidence:.0%}"
    rows = [
        (
            f"`{r.treated}` − `{r.baseline}`",
            r.mode,
            r.cells,
            r.n,
            pp(r.gain_pp),
            f"[{pp(r.ci_low_pp)}, {pp(r.ci_high_pp)}] ({r.df} df)",
            fmt_p(r.p_value) + ("" if r.exact else " (MC)"),
            fmt_p(r.p_holm),
            r.verdict,
            f"[{pp(r.across_low_pp)}, {pp(r.across_high_pp)}] ({r.across_df} df)",
        )
        for r in tables.overall.itertuples()
    ]
    refs = [
        f"- {name} (published, RoBERTa-large, the studies' protocol): +{gain:.2f} pp on average ({span} pp)"
        + (" — the same loss as this report's DML arm" if params.losses[tables.dml_arm].base == loss else "")
        for name, loss, gain, span in REFERENCE
    ]
    return (
        "## Overall gain (pp)\n\nThe mean over dataset × size cells of the per-cell mean gains (every dataset "
        "counts once, as in the studies' averages). `blocked CI`: randomised-block t-interval over all seed "
        f"pairs, cells as fixed blocks; `p`: sign-flip test stratified by cell (exact up to 16 pairs, else "
        f"20 000 Monte Carlo flips, MC); `Holm p` over the {len(rows)} rows. `across datasets`: the {conf} "
        "t-interval of the cell means, the one to quote for datasets not in this study.\n\n"
        + table(("comparison", "mode", "cells", "pairs", "gain", f"{conf} blocked CI", "p", "Holm p", "verdict", "across datasets"), rows)
        + "\n\nPublished references (context, not a target: another model and protocol):\n\n"
        + "\n".join(refs)
    )


def _degenerate_section(tables: Tables, n_runs: int) -> str:
    deg = tables.degenerate
    head = (
        "## Degenerate runs\n\nEvery run is checked for a training loss that ended above twice its start, "
        "predictions collapsed to one class, and embeddings with no variance (`fewshot_dml.train.health`). A "
        "flagged run stays in every mean and paired test (it is what that configuration produced; dropping "
        "it would flatter the arm that failed) and is marked ⚠ in the accuracy table.\n\n"
    )
    if deg.empty:
        return head + f"None of the {n_runs} runs was flagged."
    runs = deg.groupby(["dataset", "size", "seed", "arm"], sort=False)["symptom"].agg("; ".join).reset_index()
    counts = ", ".join(f"`{arm}`: {n}" for arm, n in runs.groupby("arm", sort=False).size().items())
    rows = [(r.dataset, r.size, r.seed, f"`{r.arm}`", r.symptom) for r in runs.itertuples()]
    return (
        head
        + f"{len(runs)} of the {n_runs} runs were flagged ({counts}).\n\n"
        + table(("dataset", "size", "seed", "arm", "evidence"), rows)
    )


def _proxy_section(tables: Tables) -> str:
    curve = tables.proxy_curve
    head = "## Proxy-weight curve (%)\n\n"
    if curve.empty:
        return head + f"`{tables.dml_arm}` has no proxies, so there is no proxy inference."
    columns = list(dict.fromkeys(zip(curve["dataset"], curve["size"], strict=True)))
    wide = {(r.dataset, r.size, r.weight): r.accuracy_mean for r in curve.itertuples()}
    rows = [(f"{w:g}", *(pct(wide.get((d, s, w), math.nan)) for d, s in columns)) for w in sorted(curve["weight"].unique())]
    return (
        head + "Accuracy of w·softmax(classifier) + (1−w)·softmax(proxies), mean over seeds "
        "(w = 1: classifier alone, w = 0: proxies alone).\n\n" + table(("w", *(f"{d}/{s}" for d, s in columns)), rows)
    )


def render_results(params: Params, tables: Tables, figures: Sequence[str]) -> str:
    """The full ``results.md``; ``figures`` are paths relative to the reports directory."""
    n_runs = len(tables.runs)
    figs = "## Figures\n\n" + "\n\n".join(f"![{Path(f).stem}]({f})" for f in figures)
    sources = "## Sources\n\n" + "\n".join(f"- {c}" for c in CITATIONS)
    parts = [
        f"# Results: `{BASELINE}`, `{SETFIT}` and `{BASELINE}` + `{tables.dml_arm}`",
        _verdict(params, tables),
        what_was_run(params, tables.dml_arm),
        _power(params, tables),
        _accuracy_section(tables),
        _overall_section(params, tables),
        _gains_section(tables),
        _degenerate_section(tables, n_runs),
        _proxy_section(tables),
        figs,
        sources,
    ]
    return "\n\n".join(parts) + "\n"
