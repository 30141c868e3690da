"""What a cluster run has to do: its settings, the commit it runs, and the stages still to run.

The cluster command (:mod:`fewshot_dml.cluster.launch`) places DVC stages on Ray workers. This module is
the part that needs no Ray: it reads ``cluster.yaml``, checks that the workspace is the commit the
workers will clone, runs the cheap upstream stages here (and pushes them, so every worker restores
them instead of recomputing), and asks DVC's run-cache which of the expensive stages (``train`` by
default) are still to run. Shards are then a pure function of that list.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from fewshot_dml.core import locations
from fewshot_dml.core.errors import ParamsError, UserError
from fewshot_dml.core.strict import build, load_yaml_file, spec

log = logging.getLogger(__name__)

CONFIG_FILE = "cluster.yaml"
LOCAL = "local"
RAN = re.compile(r"Running stage '([^']+)'")
RESTORED = re.compile(r"Stage '([^']+)' is cached - skipping run")
# Remote types whose run-cache DVC can push and pull (DVC refuses `--run-cache` over http(s)).
RUN_CACHE_REMOTES = ("local directory", "ssh", "s3", "gs", "azure", "hdfs", "webhdfs", "oss", "gdrive", "webdav")


class ClusterError(UserError, RuntimeError):
    """A set-up problem of the cluster command: one line, exit status 2."""


@dataclass(frozen=True)
class ClusterParams:
    address: str  # "local" (a Ray instance on this machine), "auto", or ray://host:port
    remote: str | None  # the DVC remote every machine shares; None = the repository's default remote
    stages: tuple[str, ...]  # the stage groups (dvc.yaml names) that run on the cluster
    shard_size: int = spec(1)  # stages per Ray task
    num_cpus: float = spec(0)  # per task
    num_gpus: float = spec(0)  # per task; a fraction packs several tasks on one GPU
    max_retries: int = spec(0)  # per task, before it is reported as failed
    workdir: str | None  # where tasks clone the commit; None = the workspace's parent directory
    git_url: str | None  # where tasks clone from; None = the workspace itself


def load_cluster_params(path: Path, overrides: dict[str, Any] | None = None) -> ClusterParams:
    """Read ``cluster.yaml`` strictly (every key, typed, ranged), then apply command-line overrides.

    Bad YAML, a file that is no mapping, an unknown or missing key and a mistyped or out-of-range value
    are each a :class:`ClusterError` naming the file, the key and what was expected.
    """
    keys = sorted(f.name for f in fields(ClusterParams))
    if not path.is_file():
        raise ClusterError(f"cluster settings not found: {path}" + (" (a directory)" if path.is_dir() else ""))
    try:
        raw = load_yaml_file(path)
    except ParamsError as err:
        raise ClusterError(f"{err}; expected a YAML mapping of the settings {keys}") from None
    if raw is None:
        raw = {}  # an empty file: every key must come from a flag
    if not isinstance(raw, dict):
        raise ClusterError(f"{path}: holds a YAML {type(raw).__name__}; expected a mapping of the settings {keys}")
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    try:
        params = build(ClusterParams, {**raw, **overrides}, "")
    except ParamsError as err:
        raise ClusterError(f"{path}: {err}") from None
    if not params.stages:
        raise ClusterError(f"{path}: stages is empty; expected the dvc.yaml stage groups to run, e.g. [train]")
    return params


@dataclass(frozen=True)
class Shard:
    """One Ray task's work: stages that no other shard runs."""

    index: int
    stages: tuple[str, ...]


def shards(stages: Sequence[str], size: int) -> list[Shard]:
    """Split ``stages`` (in their order) into consecutive, non-overlapping shards of ``size``."""
    return [Shard(i, tuple(stages[start : start + size])) for i, start in enumerate(range(0, len(stages), size))]


def tool_env() -> dict[str, str]:
    """This environment with this interpreter's tools (dvc, python) first on PATH."""
    return dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")


def run_tool(cmd: Sequence[str], cwd: Path, log_file: Path | None = None) -> tuple[int, str]:
    """Run a git/dvc command; its exit status and output (stdout and stderr, in order)."""
    proc = subprocess.run(list(cmd), cwd=cwd, env=tool_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if log_file is not None:
        with log_file.open("a", encoding="utf-8") as fh:
            fh.write(f"$ {' '.join(cmd)}\n{proc.stdout}")
    return proc.returncode, proc.stdout


def must(cmd: Sequence[str], cwd: Path) -> str:
    rc, out = run_tool(cmd, cwd)
    if rc != 0:
        raise ClusterError(f"`{' '.join(cmd)}` exited {rc}: {out.strip().splitlines()[-1] if out.strip() else ''}")
    return out


def ran_and_restored(output: str) -> tuple[list[str], list[str]]:
    """The stages a `dvc repro` ran, and those it restored from the run-cache, from its output."""
    return RAN.findall(output), RESTORED.findall(output)


def committed_head(root: Path, repo: Any) -> str:
    """HEAD's commit, after checking that the workspace's tracked inputs are that commit's.

    ``dvc.lock`` and the stages' outputs (reports tracked by git) may differ: no task reads them.
    ``repo`` is the workspace's open ``dvc.repo.Repo``.
    """
    head = must(["git", "rev-parse", "HEAD"], root).strip()
    changed = [line[3:] for line in must(["git", "status", "--porcelain", "--untracked-files=no"], root).splitlines()]
    outputs = [str(out.def_path).rstrip("/") for stage in repo.index.stages for out in stage.outs]
    changed = [p for p in changed if p != "dvc.lock" and not any(p == o or p.startswith(o + "/") for o in outputs)]
    if changed:
        raise ClusterError(
            f"the workers clone commit {head[:7]}, but these tracked files differ from it: {', '.join(changed)}; commit them first"
        )
    return head


def shared_remote(repo: Any, name: str | None) -> tuple[str, dict[str, Any]]:
    """The shared DVC remote (the default one): its name and its settings for the workers' clones."""
    default = repo.config["core"].get("remote")
    remotes = dict(repo.config["remote"])
    if name is None and default is None and remotes:
        raise ClusterError(
            f"no default DVC remote: this repository has the remotes {sorted(remotes)} but none is the default, and "
            "`dvc repro --pull` restores from the default one; set it with `dvc remote default <name>` (e.g. "
            f"`dvc remote default {sorted(remotes)[0]}`) and commit .dvc/config"
        )
    if name is None and default is None:
        raise ClusterError(
            "no DVC remote: add one every machine can reach, e.g. `dvc remote add -d shared "
            "s3://bucket/fewshot-dml`, and commit .dvc/config"
        )
    name = name or default
    if name not in remotes:
        raise ClusterError(f"remote={name!r} is not a DVC remote of this repository; expected one of {sorted(remotes)}")
    if name != default:
        raise ClusterError(
            f"remote={name!r} is not the default remote ({default!r}); `dvc repro --pull` restores "
            f"from the default one: run `dvc remote default {name}`"
        )
    settings = {k: str(v) for k, v in remotes[name].items()}
    if settings["url"].startswith(("http://", "https://")):
        raise ClusterError(
            f"remote {name!r} ({settings['url']}) is http(s), which cannot hold DVC's run-cache; "
            f"expected one of: {', '.join(RUN_CACHE_REMOTES)}"
        )
    return name, settings


def untracked_inputs(root: Path, params_file: str = "params.yaml") -> list[str]:
    """A warning for each local input of ``params.yaml`` that git does not track, so that the workers'
    clones of the commit (``git clone``) lack it: ``train.model`` as a directory in the workspace, and
    each ``own_datasets.<name>.source`` that is a local file. Aliases, hub ids (``name@revision``),
    paths outside the workspace (a filesystem every worker may share) and missing paths (the ``check``
    stage reports those) are left alone; so is a params file that does not parse (``check`` again).
    """
    from fewshot_dml.config.sections import OWN_FORMATS
    from fewshot_dml.model.ref import ALIASES

    try:
        raw = load_yaml_file(root / params_file)
    except ParamsError:
        return []
    raw = raw if isinstance(raw, dict) else {}
    train = raw.get("train") if isinstance(raw.get("train"), dict) else {}
    own = raw.get("own_datasets") if isinstance(raw.get("own_datasets"), dict) else {}
    named: list[tuple[str, str]] = []
    model = train.get("model")
    if isinstance(model, str) and model and model not in ALIASES and "@" not in model:
        named.append(("train.model", model))
    for name, section in own.items():
        source = section.get("source") if isinstance(section, dict) else None
        if isinstance(source, str) and Path(source).suffix.lower() in OWN_FORMATS:
            named.append((f"own_datasets.{name}.source", source))
    warnings = []
    for key, value in named:
        path = locations.resolve(value, root).resolve()
        if not path.exists() or not path.is_relative_to(root.resolve()):
            continue
        rel = path.relative_to(root.resolve()).as_posix() or "."
        rc, untracked = run_tool(["git", "ls-files", "--others", "--", rel], root)
        rc_tracked, tracked = run_tool(["git", "ls-files", "--", rel], root)
        files = untracked.split()
        if rc != 0 or rc_tracked != 0 or (tracked.strip() and not files):  # not a git repository, or wholly tracked
            continue
        what = "directory" if path.is_dir() else "file"
        some = f" ({len(files)} untracked files, e.g. {files[0]})" if path.is_dir() and files else ""
        warnings.append(
            f"{key}={value!r} is a local {what} that git does not track{some} (untracked or git-ignored): the workers' "
            "clones of the commit will not have it; commit it, or name it by an absolute path every worker can read"
        )
    for warning in warnings:
        log.warning("%s", warning)
    return warnings


def cluster_stages(repo: Any, groups: Sequence[str]) -> tuple[list[str], list[str]]:
    """The stages of ``groups`` (e.g. every ``train@...``) and the stages upstream of them, by name."""
    names = [s.addressing for s in repo.index.stages]
    unknown = sorted(set(groups) - {n.split("@")[0] for n in names})
    if unknown:
        raise ClusterError(
            f"stages={list(groups)}: {unknown[0]!r} is not a stage of dvc.yaml; expected some of {sorted({n.split('@')[0] for n in names})}"
        )
    chosen = [n for n in names if n.split("@")[0] in groups]
    upstream = {s.addressing for n in chosen for s in repo.stage.collect(n, with_deps=True)} - set(chosen)
    return chosen, [n for n in names if n in upstream]


def restorable(root: Path, stages: Sequence[str]) -> dict[str, bool]:
    """Per stage, whether DVC's run-cache holds a run of it with its current deps, params and command.

    DVC has no public "is this stage in the run-cache?" (``dvc repro --dry`` does not ask it), so
    this computes the run-cache key the way ``dvc repro`` does (``dvc.stage.cache``); its deps must
    be in the workspace (the upstream stages ran first).
    """
    from dvc.repo import Repo
    from dvc.stage.cache import _can_hash

    out = {}
    with Repo(str(root)) as repo:
        by_name = {s.addressing: s for s in repo.index.stages}
        for name in stages:
            stage = by_name[name]
            stage.save_deps()
            out[name] = bool(_can_hash(stage) and repo.stage_cache._load(stage))
    return out


@dataclass(frozen=True)
class Plan:
    commit: str
    remote: str
    remote_settings: dict[str, Any]
    stages: tuple[str, ...]  # the cluster stages of the grid
    to_run: tuple[str, ...]  # those the run-cache cannot restore


def make_plan(root: Path, params: ClusterParams) -> Plan:
    """Check the workspace, run and push the upstream stages here, and list what is still to run."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:  # one read of the pipeline and config for the checks
        commit = committed_head(root, repo)
        remote, settings = shared_remote(repo, params.remote)
        chosen, upstream = cluster_stages(repo, params.stages)
    untracked_inputs(root)  # warnings only: the shard clones lack these inputs
    log.info("running the %d upstream stages here (check, fetch, sample, ...) and pushing them", len(upstream))
    # --pull first brings every run-cache entry of the remote (small files), then restores or runs.
    rc, out = run_tool(["dvc", "repro", "--pull", *upstream], root)
    if rc != 0:
        raise ClusterError(f"the upstream stages failed here (`dvc repro --pull`, exit {rc}):\n{tail(out)}")
    must(["dvc", "push", "--run-cache", *upstream], root)
    cached = restorable(root, chosen)
    return Plan(commit, remote, settings, tuple(chosen), tuple(n for n in chosen if not cached[n]))


def tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def with_defaults(params: ClusterParams, root: Path) -> ClusterParams:
    """Fill ``workdir`` (beside the workspace, so a relative ``../shared`` resolves the same) and ``git_url``."""
    return replace(params, workdir=str(Path(params.workdir or root.parent).resolve()), git_url=params.git_url or str(root))
