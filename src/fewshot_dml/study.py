"""The cross-loss study: one DVC experiment per ``loss``, side by side in ``reports/study.md``.

Queue the experiments (``dvc exp run --queue -S 'loss=softtriple,proxyanchor,...'``), run them
(``dvc queue start``), then ``python -m fewshot_dml.study --out reports/study.md``. The rows come
from ``dvc.api.exp_show``: one flat dict per experiment, params as ``loss`` and metrics as
``<dataset>.<field>`` (prefixed ``<file>:`` only when a name is ambiguous across files).

Selection rules, applied by the pure :func:`study_table`:

* the workspace row is skipped (uncommitted, possibly stale), and so is every experiment whose
  ``State`` is not a completed one (``Failed``, ``Queued``, ``Running``: dvc shows the metrics of
  their base commit for those, which would be another loss's numbers);
* experiments without metrics are skipped with a note;
* several experiments of one loss: the newest wins. ``exp_show`` lists a baseline's experiments
  newest first (sorted by commit time), and experiments are newer than the commit they derive
  from, so the first experiment row of a loss wins, then the commit row; the rest are listed.
"""

from __future__ import annotations

import argparse
import ast
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fewshot_dml import io
from fewshot_dml.logs import setup_logging
from fewshot_dml.params import BASELINE, DATASETS
from fewshot_dml.report import pct

log = logging.getLogger(__name__)

METRICS_FILE = "reports/metrics.json"
PARAMS_FILE = "params.yaml"
DONE_STATES = (None, "Success")  # None: `dvc exp run`; "Success": finished in the queue
FIELDS = ("cce", "dml", "dml_proxy", "gain_pp", "cce_std", "dml_std", "wins", "cells")
_SAME_BASELINE = 1e-4  # metrics are rounded to 4 decimals: identical baselines match exactly


@dataclass(frozen=True)
class Experiment:
    name: str
    loss: str
    metrics: Mapping[str, Mapping[str, float]]  # dataset | "overall" -> field -> value
    rev: str = ""  # the commit of the experiment (where its run outputs are recorded)
    variant_of: str | None = None  # the registered loss a variant (e.g. a Metrix one) modifies
    grid: tuple[tuple[str, int, int], ...] = ()  # (dataset, size, seed) of its runs


def _column(record: Mapping[str, Any], file: str, name: str) -> Any:
    """A column of an exp_show row, bare or ``<file>:<name>`` when dvc had to disambiguate it."""
    return record.get(name, record.get(f"{file}:{name}"))


def _metrics(record: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for key, value in record.items():
        file, _, name = key.rpartition(":")
        group, _, field = name.partition(".")
        if file not in ("", METRICS_FILE) or group not in (*DATASETS, "overall") or field not in FIELDS:
            continue
        # dvc reports errors as "!" and absent values as None; keep finite numbers only.
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out.setdefault(group, {})[field] = float(value)
    return out


def select_experiments(records: Sequence[Mapping[str, Any]]) -> tuple[list[Experiment], list[str]]:
    """The newest completed experiment of each loss, and a note for every row left out."""
    notes: list[str] = []
    ranked = [r for r in records if r.get("typ") != "baseline"] + [
        r for r in records if r.get("typ") == "baseline" and r.get("rev") != "workspace"
    ]
    chosen: dict[str, Experiment] = {}
    for record in ranked:
        name = record.get("Experiment") or str(record.get("rev"))
        loss, state = _column(record, PARAMS_FILE, "loss"), record.get("State")
        metrics = _metrics(record)
        if state not in DONE_STATES:
            notes.append(f"`{name}` ({loss}): state {state}, skipped")
        elif not isinstance(loss, str) or loss == BASELINE:
            notes.append(f"`{name}`: no DML `loss` param ({loss!r}), skipped")
        elif not any(g in metrics and "dml" in metrics[g] for g in DATASETS):
            notes.append(f"`{name}` ({loss}): no metrics in {METRICS_FILE}, skipped")
        elif loss in chosen:
            notes.append(f"`{name}` ({loss}): superseded by the newer `{chosen[loss].name}`")
        else:
            chosen[loss] = Experiment(name, loss, metrics, str(record.get("rev", "")),
                                      _column(record, PARAMS_FILE, f"losses.{loss}.variant_of"), _grid(record))
    return list(chosen.values()), notes


def _grid(record: Mapping[str, Any]) -> tuple[tuple[str, int, int], ...]:
    # dvc.api.exp_show gives list params as their text ("[0, 1, 2]"); read them back as literals.
    values = [_column(record, PARAMS_FILE, key) for key in ("datasets", "sample_sizes", "seeds")]
    values = [ast.literal_eval(v) if isinstance(v, str) else v for v in values]
    if not all(isinstance(v, list) for v in values):
        return ()
    return tuple((d, size, seed) for d in values[0] for size in values[1] for seed in values[2])


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (family-wise error). By hand: scipy offers only
    Benjamini-Hochberg (``false_discovery_control``), and five lines do not warrant statsmodels."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def variant_section(experiments: Sequence[Experiment], accuracy: Mapping[tuple[str, str, int, int], float]) -> str:
    """Each variant against its clean loss, paired by (dataset, size, seed): the mean difference,
    a Student-t interval over the pairs, a two-sided Wilcoxon signed-rank test, Holm-corrected.

    ``accuracy[(experiment, dataset, size, seed)]`` is the DML arm's classifier accuracy of that run.
    """
    from scipy import stats

    by_loss = {e.loss: e for e in experiments}
    pairs = [(e, by_loss[e.variant_of]) for e in experiments if e.variant_of in by_loss]
    if not pairs:
        return ""
    rows, p_values = [], []
    for variant, clean in sorted(pairs, key=lambda pair: pair[0].loss):
        cells = [c for c in variant.grid if c in set(clean.grid)]
        if not cells:
            continue
        diffs = [100 * (accuracy[(variant.name, *c)] - accuracy[(clean.name, *c)]) for c in cells]
        n, mean = len(diffs), sum(diffs) / len(diffs)
        sem = stats.sem(diffs) if n > 1 else math.nan
        low, high = stats.t.interval(0.95, n - 1, loc=mean, scale=sem) if n > 1 and sem > 0 else (math.nan,) * 2
        p = float(stats.wilcoxon(diffs).pvalue) if any(diffs) and n > 1 else 1.0
        wins = sum(d > 0 for d in diffs)
        rows.append([f"`{variant.loss}`", f"`{clean.loss}`", str(n), f"{mean:+.2f}", f"[{low:+.2f}, {high:+.2f}]",
                     f"{wins}/{n}", f"{p:.3g}"])
        p_values.append(p)
    if not rows:
        return ""
    for row, adjusted in zip(rows, holm(p_values), strict=True):
        row.append(f"{adjusted:.3g}")
    header = ("| variant | clean loss | n pairs | mean diff (pp) | 95% t-interval | pairs better | Wilcoxon p "
              "| Holm p |\n|" + "---|" * 8 + "\n")
    return ("## Variants against their clean loss\n\nPaired by dataset × size × seed (the same split, batches and "
            "CCE start in both experiments): the DML arm's classifier accuracy of the variant minus that of its "
            "clean loss, in pp. The interval is Student's t over the pairs (n − 1 df); the test is the two-sided "
            "Wilcoxon signed-rank test over the same pairs (pairs without a difference are dropped, scipy's default), "
            "Holm-corrected across the rows.\n\n" + header
            + "\n".join("| " + " | ".join(row) + " |" for row in rows) + "\n")


def read_accuracies(experiments: Sequence[Experiment], repo: str, runs_dir: str) -> dict:
    """The DML arm's accuracy of every run of every experiment, read at the experiment's commit."""
    from dvc.api import DVCFileSystem

    from fewshot_dml import layout, rundir

    out = {}
    for e in experiments:
        fs = DVCFileSystem(repo, rev=e.rev or None)
        for d, size, seed in e.grid:
            path = f"{runs_dir}/{layout.run_id(d, size, seed, e.loss)}/{rundir.METRICS}"
            out[(e.name, d, size, seed)] = json.loads(fs.read_text(path))["accuracy"]
    return out


def _baseline(experiments: Sequence[Experiment], datasets: Sequence[str]) -> tuple[dict, list[str]]:
    """CCE per dataset from the newest experiment; a note wherever experiments disagree."""
    base: dict[str, dict[str, float]] = {}
    notes = []
    for dataset in [*datasets, "overall"]:
        values = {e.name: e.metrics[dataset] for e in experiments if "cce" in e.metrics.get(dataset, {})}
        if not values:
            continue
        base[dataset] = next(iter(values.values()))
        if max(v["cce"] for v in values.values()) - min(v["cce"] for v in values.values()) > _SAME_BASELINE:
            seen = ", ".join(f"`{n}` {pct(v['cce'])}" for n, v in values.items())
            notes.append(f"CCE differs across experiments on {dataset} ({seen}): they ran different "
                         "settings and are not comparable")
    return base, notes


def _cell(m: Mapping[str, float] | None, arm: str) -> str:
    if not m or arm not in m:
        return "–"
    text = pct(m[arm]) + (f" ± {pct(m[f'{arm}_std'])}" if f"{arm}_std" in m else "")
    extra = []
    if arm == "dml" and "gain_pp" in m:
        extra.append(f"{m['gain_pp']:+.2f} pp")
    if arm == "dml" and {"wins", "cells"} <= set(m):
        extra.append(f"{int(m['wins'])}/{int(m['cells'])} won")
    return text + (f" ({', '.join(extra)})" if extra else "")


def _best(experiments: Sequence[Experiment], group: str) -> str:
    scored = [(e.metrics[group]["dml"], e.loss) for e in experiments if "dml" in e.metrics.get(group, {})]
    if not scored:
        return "–"
    top = max(s for s, _ in scored)
    return ", ".join(f"`{loss}`" for s, loss in scored if s == top) + f" ({pct(top)})"


def study_table(records: Sequence[Mapping[str, Any]]) -> str:
    """Markdown study of ``dvc.api.exp_show`` rows: losses x datasets, CCE row, best loss."""
    experiments, notes = select_experiments(records)
    if not experiments:
        raise ValueError("no completed experiment with metrics among the "
                         f"{len(records)} rows of `dvc exp show`" + "".join(f"\n  {n}" for n in notes))
    datasets = [d for d in DATASETS if any(d in e.metrics for e in experiments)]
    base, base_notes = _baseline(experiments, datasets)
    experiments.sort(key=lambda e: (-e.metrics.get("overall", {}).get("gain_pp", -math.inf), e.loss))
    groups = [*datasets, "overall"]
    rows = [(f"`{BASELINE}` (baseline)", "–", *(_cell(base.get(g), "cce") for g in groups))]
    rows += [(f"`{e.loss}`", f"`{e.name}`", *(_cell(e.metrics.get(g), "dml") for g in groups)) for e in experiments]
    rows.append(("**best**", "", *(_best(experiments, g) for g in groups)))
    header = ("| loss | experiment | " + " | ".join(groups) + " |\n|" + "---|" * (len(groups) + 2) + "\n")
    table = header + "\n".join("| " + " | ".join(row) + " |" for row in rows)
    text = [
        "# Cross-loss study", "",
        "One DVC experiment per DML loss (`loss` param), each trained beside the same CCE baseline. Accuracy "
        "in % on the held-out evaluation set: mean ± std over seeds, averaged over few-shot sizes "
        f"(from `{METRICS_FILE}`); in brackets the DML arm's gain over CCE in percentage points and the "
        "dataset × size cells it won. Rows are ordered by overall gain.", "",
        "The baseline is not retrained per experiment: its stages do not depend on `loss`, so DVC's "
        "run-cache restores the same CCE runs in every experiment.", "",
        table,
    ]
    all_notes = base_notes + notes
    if all_notes:
        text += ["", "Notes:", "", *(f"- {n}" for n in all_notes)]
    return "\n".join(text) + "\n"


def study(records: Sequence[Mapping[str, Any]], accuracy: Mapping[tuple[str, str, int, int], float]) -> str:
    """The study table, then each variant against its clean loss (when both were run)."""
    experiments, _ = select_experiments(records)
    section = variant_section(experiments, accuracy)
    return study_table(records) + ("\n" + section if section else "")


def main(argv: list[str] | None = None) -> None:
    """Collect the experiments of ``--repo`` with dvc.api and write the study to ``--out``."""
    ap = argparse.ArgumentParser(description="Write the cross-loss study from the DVC experiments.")
    ap.add_argument("--out", type=Path, required=True, help="markdown file to write, e.g. reports/study.md")
    ap.add_argument("--repo", default=".", help="DVC repository (default: the current one)")
    ap.add_argument("--rev", default=None, help="baseline commit of the experiments (default: HEAD)")
    ap.add_argument("--runs", default="data/runs", help="the run directories' folder (as in dvc.yaml)")
    args = ap.parse_args(argv)
    setup_logging()
    import dvc.api  # heavy: imported only when the command runs

    records = dvc.api.exp_show(repo=args.repo, revs=args.rev)
    experiments, _ = select_experiments(records)
    with_variants = [e for e in experiments if e.variant_of] + [
        e for e in experiments if any(v.variant_of == e.loss for v in experiments)]
    accuracy = read_accuracies(with_variants, args.repo, args.runs)
    io.write_text(args.out, study(records, accuracy))
    log.info("wrote %s from %d rows of dvc exp show", args.out, len(records))


if __name__ == "__main__":
    main()
