"""The DVC experiments of a repository as :class:`Experiment` records: which completed, their grid,
metrics and distinguishing params, and the configuration of each loss selected on development accuracy.

Rows come from ``dvc.api.exp_show``: one flat dict per experiment (params such as ``loss`` or
``losses.proxyanchor.alpha``, metrics as ``<dataset>.<field>``, prefixed ``<file>:`` when ambiguous).
"""

from __future__ import annotations

import ast
import json
import logging
import math
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from fewshot_dml.catalog.arms import PEERS
from fewshot_dml.config.params import Params
from fewshot_dml.config.sections import DATASETS
from fewshot_dml.core.errors import UserError
from fewshot_dml.report import schema

log = logging.getLogger(__name__)

METRICS_FILE = f"reports/{schema.METRICS_FILE}"
PARAMS_FILE = "params.yaml"
DONE_STATES = (None, "Success")  # None: `dvc exp run`; "Success": finished in the queue
FIELDS = schema.STUDY_FIELDS
_IGNORED = ("fetch.",)  # where the data came from is verified by its checksums, not a setting
_SECTIONS = frozenset(f.name for f in fields(Params))  # params.yaml's top-level keys


class ExperimentError(UserError, ValueError):
    """An experiment (or the revision asked for) that cannot be read as a study row: names it and the cause."""


@dataclass(frozen=True)
class Experiment:
    name: str
    loss: str
    metrics: Mapping[str, Mapping[str, float]]  # dataset | "overall" -> field -> value
    rev: str = ""  # the commit of the experiment (where its run outputs are recorded)
    variant_of: str | None = None  # the registered loss a variant (e.g. a Metrix one) modifies
    grid: tuple[tuple[str, int, int], ...] = ()  # (dataset, size, seed) of its runs
    params: Mapping[str, str] | None = None  # every param, as text


def _column(record: Mapping[str, Any], file: str, name: str) -> Any:
    """A column of an exp_show row, bare or ``<file>:<name>`` when dvc had to disambiguate it."""
    return record.get(name, record.get(f"{file}:{name}"))


def _groups(record: Mapping[str, Any]) -> set[str]:
    """The metric groups of an exp_show row: the built-in datasets, its grid's own datasets, ``overall``."""
    return {*DATASETS, *(d for d, _, _ in _grid(record)), "overall"}


def _metrics(record: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    groups = _groups(record)
    for key, value in record.items():
        file, _, name = key.rpartition(":")
        group, _, field = name.partition(".")
        if file not in ("", METRICS_FILE) or group not in groups or field not in FIELDS:
            continue
        # dvc reports errors as "!" and absent values as None; keep finite numbers only.
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out.setdefault(group, {})[field] = float(value)
    return out


def _params(record: Mapping[str, Any]) -> dict[str, str]:
    """The params of an exp_show row: the columns under a top-level section of ``params.yaml``.

    Not its metrics (another metrics file's bare ``geometry.cce.inter`` is no param), and not its
    deps (file paths with their hashes).
    """
    keys = [k for k in record if k.startswith(f"{PARAMS_FILE}:") or k.partition(".")[0] in _SECTIONS]
    return {k.removeprefix(f"{PARAMS_FILE}:"): _text(record[k]) for k in keys}


def _text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _grid(record: Mapping[str, Any]) -> tuple[tuple[str, int, int], ...]:
    # dvc.api.exp_show gives list params as their text ("[0, 1, 2]"); read them back as literals.
    values = [_column(record, PARAMS_FILE, key) for key in ("datasets", "sample_sizes", "seeds")]
    values = [ast.literal_eval(v) if isinstance(v, str) else v for v in values]
    if not all(isinstance(v, list) for v in values):
        return ()
    return tuple((d, size, seed) for d in values[0] for size in values[1] for seed in values[2])


def select_experiments(records: Sequence[Mapping[str, Any]]) -> tuple[list[Experiment], list[str]]:
    """Every completed experiment with metrics (newest first), and a note for every row left out."""
    notes: list[str] = []
    ranked = [r for r in records if r.get("typ") != "baseline"] + [
        r for r in records if r.get("typ") == "baseline" and r.get("rev") != "workspace"
    ]
    chosen: list[Experiment] = []
    seen: dict[tuple, str] = {}
    for record in ranked:
        name = record.get("Experiment") or str(record.get("rev"))
        loss, state = _column(record, PARAMS_FILE, "loss"), record.get("State")
        metrics = _metrics(record)
        if state not in DONE_STATES:
            notes.append(f"`{name}` ({loss}): state {state}, skipped")
        elif not isinstance(loss, str) or loss in PEERS:
            notes.append(f"`{name}`: no DML `loss` param ({loss!r}), skipped")
        elif not any("dml" in values and "dev_dml" in values for g, values in metrics.items() if g != "overall"):
            notes.append(f"`{name}` ({loss}): no metrics (with development accuracy) in {METRICS_FILE}, skipped")
        else:
            params = _params(record)
            key = (tuple(sorted((k, v) for k, v in params.items() if not k.startswith(_IGNORED))), json.dumps(metrics, sort_keys=True))
            if key in seen:  # e.g. a sweep point equal to the committed default, restored from the run-cache
                notes.append(f"`{name}` ({loss}): the same params and metrics as `{seen[key]}`, listed once")
                continue
            seen[key] = name
            chosen.append(
                Experiment(
                    name,
                    loss,
                    metrics,
                    str(record.get("rev", "")),
                    _column(record, PARAMS_FILE, f"losses.{loss}.variant_of"),
                    _grid(record),
                    params,
                )
            )
    return chosen, notes


def distinguishing(experiments: Sequence[Experiment]) -> dict[str, str]:
    """Per experiment, the params whose values differ across ``experiments`` (its own loss's only)."""
    keys = sorted({k for e in experiments for k in (e.params or {})})
    varying = [k for k in keys if not k.startswith(_IGNORED) and len({(e.params or {}).get(k) for e in experiments}) > 1]
    out = {}
    for e in experiments:
        shown = [k for k in varying if k == "loss" or not k.startswith("losses.") or k.startswith(f"losses.{e.loss}.")]
        out[e.name] = ", ".join(f"`{k}={(e.params or {}).get(k)}`" for k in shown if k != "loss") or "defaults"
    return out


def dev_selected(experiments: Sequence[Experiment]) -> dict[str, Experiment]:
    """Per loss, the experiment whose DML arm has the highest mean development accuracy."""
    best: dict[str, Experiment] = {}
    for e in experiments:
        dev = e.metrics.get("overall", {}).get("dev_dml", -math.inf)
        if e.loss not in best or dev > best[e.loss].metrics.get("overall", {}).get("dev_dml", -math.inf):
            best[e.loss] = e
    return best


def one_grid(experiments: Sequence[Experiment]) -> tuple:
    """The grid (dataset, size, seed) all ``experiments`` share; an error if they do not."""
    grids = {e.grid for e in experiments}
    if len(grids) != 1:
        raise ValueError(
            f"the experiments span {len(grids)} grids (datasets x sizes x seeds); a tuning study "
            "compares one grid: select its experiments with --match"
        )
    return next(iter(grids))


def rev_label(e: Experiment) -> str:
    """How messages name the commit of ``e`` (its outputs are read there; no commit: the workspace)."""
    return e.rev or "workspace"


def exp_show(repo: str, revs: Sequence[str] | None) -> list[dict[str, Any]]:
    """``dvc.api.exp_show`` of ``repo`` from ``revs`` (HEAD when None); one error naming the revisions otherwise."""
    import dvc.api
    from dvc.exceptions import DvcException

    try:
        return dvc.api.exp_show(repo=repo, revs=list(revs) if revs else None)
    except DvcException as err:
        raise ExperimentError(f"{_where(repo, revs)}: cannot list the experiments ({err}); {_EXPECTED_REV}") from err


def params_show(repo: str, rev: str) -> dict[str, Any]:
    """``dvc.api.params_show`` of ``repo`` at ``rev``; one error naming the revision otherwise."""
    import dvc.api
    from dvc.exceptions import DvcException

    try:
        return dvc.api.params_show(repo=repo, rev=rev)
    except DvcException as err:
        raise ExperimentError(f"{_where(repo, [rev])}: cannot read the params ({err}); {_EXPECTED_REV}") from err


_EXPECTED_REV = "expected a DVC repository (--repo) and a commit, branch or tag of it (--rev; see `git log`)"


def _where(repo: str, revs: Sequence[str] | None) -> str:
    return f"--repo {repo} --rev {', '.join(revs)}" if revs else f"--repo {repo} (HEAD)"


def read_errors() -> tuple[type[BaseException], ...]:
    """What reading an experiment's output through ``DVCFileSystem`` raises when DVC's cache lacks it
    (a missing or damaged directory object, a missing file object) or holds a damaged copy."""
    from dvc.exceptions import DvcException
    from dvc_data.index import DataIndexError

    return (DvcException, DataIndexError, OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile)


def unreadable(e: Experiment, path: str, err: BaseException) -> ExperimentError:
    """The error for an output of ``e`` that cannot be read from DVC's cache: names the experiment, the file and the cause."""
    cause = " ".join(str(err).split()) or "no detail"
    return ExperimentError(
        f"experiment {e.name!r} (rev {rev_label(e)}): cannot read {path} ({type(err).__name__}: {cause}); expected the "
        "experiment's outputs in DVC's cache, complete: fetch them (`dvc exp pull <remote> <experiment>` or `dvc pull`) "
        "or run the experiment again"
    )


def _metric_stages(opened: Any) -> list[Any]:
    """``aggregate`` and every stage upstream of it (DVC's graph points from a stage to its dependencies)."""
    import networkx

    graph = opened.index.graph
    aggregate = [s for s in graph.nodes if getattr(s, "name", None) == "aggregate"]
    return [n for a in aggregate for n in (a, *networkx.descendants(graph, a))]


def check_locks(repo: str, experiments: Sequence[Experiment]) -> None:
    """Refuse an experiment whose commit's ``params.yaml`` and ``dvc.lock`` disagree.

    Its metrics and runs are those ``dvc.lock`` records, made with other params than the row would show
    (e.g. params.yaml edited and committed without ``dvc repro``). Compared as ``dvc status`` does: every
    param a stage's lock entry records against the params file at that commit; a stage that never ran
    (no lock entry) records nothing. Only the stages the tools read from count (``aggregate`` and what it
    depends on): an experiment run up to ``aggregate`` keeps the base commit's entries for the analysis.
    """
    from dvc.dependency.param import ParamsDependency
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    for e in experiments:
        differ: list[str] = []
        try:
            with Repo.open(repo, rev=e.rev or None) as opened:
                for stage in _metric_stages(opened):
                    for dep in stage.deps:
                        if not isinstance(dep, ParamsDependency) or not dep.hash_info or not dep.hash_info.value:
                            continue
                        for file, status in dep.workspace_status().items():
                            if isinstance(status, str):  # the whole file: "deleted"
                                differ.append(f"{file} ({status} since stage {stage.name} ran)")
                                continue
                            differ += [f"{k} ({v} since stage {stage.name} ran)" for k, v in status.items() if v in ("modified", "deleted")]
        except DvcException as err:
            raise ExperimentError(f"experiment {e.name!r} (rev {rev_label(e)}): cannot read its pipeline ({err})") from err
        if differ:
            more = f" and {len(differ) - 3} more" if len(differ) > 3 else ""
            raise ExperimentError(
                f"experiment {e.name!r} (rev {rev_label(e)}): params.yaml and dvc.lock disagree on {', '.join(differ[:3])}{more}, "
                "so its outputs were made with other params than it shows; expected a commit whose dvc.lock matches its "
                "params.yaml: run `dvc repro` there and commit dvc.lock (or leave that revision out)"
            )
