"""Run the study's expensive stages on a Ray cluster, sharing results through a DVC remote.

    python -m fewshot_dml.cluster            # settings: cluster.yaml; each overridable by a flag

DVC has no multi-machine executor, but its run-cache lets any clone restore a stage that another
machine ran. So: the stages still to run (those the remote's run-cache cannot restore; see
:mod:`fewshot_dml.cluster.plan`) are split into shards, and each shard is one Ray task that clones
the commit, runs ``dvc repro --pull`` on its stages and pushes outputs and run-cache. Ray places
the tasks by their CPU/GPU request and retries a failed one; then ``dvc repro --pull`` here
restores every run and only the cheap downstream stages execute.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dvc.exceptions import DvcException

from fewshot_dml.cluster.plan import (
    CONFIG_FILE,
    LOCAL,
    ClusterError,
    ClusterParams,
    Plan,
    Shard,
    load_cluster_params,
    make_plan,
    must,
    ran_and_restored,
    run_tool,
    shards,
    tail,
    with_defaults,
)
from fewshot_dml.core import cli

log = logging.getLogger(__name__)


class ShardError(RuntimeError):
    """A shard's `dvc` command failed; carries what the report needs (it crosses Ray's pickling)."""

    def __init__(self, index: int, stages: tuple[str, ...], step: str, rc: int, output: str, clone: str) -> None:
        super().__init__(f"shard {index} ({', '.join(stages)}): `{step}` exited {rc}")
        self.index, self.stages, self.step, self.rc, self.output, self.clone = index, stages, step, rc, output, clone

    def __reduce__(self) -> tuple:
        return ShardError, (self.index, self.stages, self.step, self.rc, self.output, self.clone)


@dataclass(frozen=True)
class ShardJob:
    shard: Shard
    commit: str
    git_url: str
    workdir: str
    remote: str
    remote_settings: dict[str, Any]


def log_path(clone: Path) -> Path:
    """A shard clone's log, beside it (kept with it when the shard fails)."""
    return clone.with_name(f"{clone.name}.log")


def run_shard(job: ShardJob, attempt: int) -> dict[str, Any]:
    """Clone the commit, reproduce the shard's stages (pulling what they need), push the results.

    Runs on a Ray worker. The clone is removed when the shard succeeds and kept for inspection when
    it fails.
    """
    started = time.perf_counter()
    name = Path(job.git_url.rstrip("/")).name.removesuffix(".git")
    clone = Path(job.workdir) / f"{name}-{job.commit[:7]}-shard{job.shard.index}-try{attempt}"
    shutil.rmtree(clone, ignore_errors=True)
    log_file = log_path(clone)
    log_file.unlink(missing_ok=True)
    steps = [
        ["git", "clone", "--quiet", "--no-checkout", job.git_url, str(clone)],
        ["git", "-C", str(clone), "checkout", "--quiet", job.commit],
        ["dvc", "remote", "add", "--local", "--force", "--default", job.remote, job.remote_settings["url"]],
        *(["dvc", "remote", "modify", "--local", job.remote, key, value] for key, value in job.remote_settings.items() if key != "url"),
        ["dvc", "repro", "--pull", *job.shard.stages],
        ["dvc", "push", "--run-cache", *job.shard.stages],
    ]
    repro_output = ""
    for cmd in steps:
        rc, out = run_tool(cmd, clone if clone.is_dir() else Path(job.workdir), log_file)
        if rc != 0:
            raise ShardError(job.shard.index, job.shard.stages, " ".join(cmd[:3]), rc, out, str(clone))
        if cmd[:2] == ["dvc", "repro"]:
            repro_output = out
    shutil.rmtree(clone, ignore_errors=True)
    log_file.unlink(missing_ok=True)
    ran, restored = ran_and_restored(repro_output)
    return {
        "shard": job.shard.index,
        "stages": list(job.shard.stages),
        "attempt": attempt,
        "host": socket.gethostname(),
        "seconds": round(time.perf_counter() - started, 1),
        "ran": ran,
        "restored": restored,
    }


def _ray_tasks(params: ClusterParams) -> tuple[Any, Any]:
    """The Ray task and the attempt counter (an actor: a retried task runs anew, maybe elsewhere)."""
    import ray

    @ray.remote(num_cpus=0)
    class Attempts:
        def __init__(self) -> None:
            self.counts: dict[int, int] = {}

        def next(self, index: int) -> int:
            self.counts[index] = self.counts.get(index, 0) + 1
            return self.counts[index]

        def all(self) -> dict[int, int]:
            return dict(self.counts)

    def shard_task(job: ShardJob, attempts: Any) -> dict[str, Any]:
        return run_shard(job, ray.get(attempts.next.remote(job.shard.index)))

    task = ray.remote(shard_task).options(
        num_cpus=params.num_cpus, num_gpus=params.num_gpus, max_retries=params.max_retries, retry_exceptions=[ShardError]
    )
    return task, Attempts.remote()


def _start_ray(params: ClusterParams) -> None:
    import ray

    ray.init(
        address=None if params.address == LOCAL else params.address,
        include_dashboard=False,
        logging_level=logging.WARNING,
        log_to_driver=False,
    )
    total = ray.cluster_resources()
    for resource, wanted in (("CPU", params.num_cpus), ("GPU", params.num_gpus)):
        if wanted > total.get(resource, 0):
            raise ClusterError(
                f"num_{resource.lower()}s={wanted:g} per task, but the Ray cluster at {params.address!r} "
                f"has {total.get(resource, 0):g} {resource}s in all; no task could ever start"
            )


def run_shards(plan: Plan, work: list[Shard], params: ClusterParams) -> tuple[list[dict[str, Any]], list[tuple[ShardError | str, int]]]:
    """Run every shard of ``work`` as a Ray task; the results of those that succeeded, and each failure
    with its attempts."""
    import ray
    from tqdm import tqdm

    _start_ray(params)
    try:
        task, attempts = _ray_tasks(params)
        jobs = [ShardJob(s, plan.commit, params.git_url, params.workdir, plan.remote, plan.remote_settings) for s in work]
        pending = {task.remote(job, attempts): job for job in jobs}
        results, failures = [], []
        with tqdm(total=len(jobs), desc="shards", unit="shard") as bar:
            while pending:
                (ref,), _ = ray.wait(list(pending), num_returns=1)
                job = pending.pop(ref)
                try:
                    results.append(ray.get(ref))
                except ShardError as err:  # Ray re-raises it as a subclass of the task's exception
                    failures.append((job.shard.index, err))
                except ray.exceptions.RayError as err:  # the worker died, the node left, ...
                    failures.append((job.shard.index, f"shard {job.shard.index} ({', '.join(job.shard.stages)}): {err}"))
                bar.update()
        counts = ray.get(attempts.all.remote())
    finally:
        ray.shutdown()
    return sorted(results, key=lambda r: r["shard"]), [(f, counts.get(i, 0)) for i, f in sorted(failures, key=lambda x: x[0])]


def report_failure(failure: ShardError | str, attempts: int) -> str:
    if isinstance(failure, str):
        return f"FAILED {failure}"
    return (
        f"FAILED shard {failure.index} ({', '.join(failure.stages)}) after {attempts} attempt(s): "
        f"`{failure.step}` exited {failure.rc}; clone kept at {failure.clone}, log at {log_path(Path(failure.clone))}; "
        "its last lines:\n"
        f"{tail(failure.output)}"
    )


def bring_home(root: Path) -> tuple[list[str], list[str]]:
    """``dvc repro --pull`` here (every stage the cluster ran is restored), then push what ran here
    too, so that ``dvc pull`` in any clone gets the whole study once ``dvc.lock`` is committed."""
    rc, out = run_tool(["dvc", "repro", "--pull"], root)
    if rc != 0:
        raise ClusterError(f"`dvc repro --pull` here exited {rc}:\n{tail(out)}")
    must(["dvc", "push", "--run-cache"], root)
    return ran_and_restored(out)


def cluster_run(root: Path, params: ClusterParams, plan_only: bool = False, home: bool = True) -> int:
    """The whole command; its exit status (0: done, 1: a shard failed)."""
    params = with_defaults(params, root)
    plan = make_plan(root, params)
    print(
        f"commit {plan.commit[:7]}, remote {plan.remote!r}: {len(plan.stages)} {'/'.join(params.stages)} stages, "
        f"{len(plan.stages) - len(plan.to_run)} restorable from the run-cache, {len(plan.to_run)} to run"
    )
    work = shards(plan.to_run, params.shard_size)
    for shard in work:
        print(f"  shard {shard.index}: {', '.join(shard.stages)}")
    if plan_only:
        return 0
    if plan.to_run:
        results, failures = run_shards(plan, work, params)
        for r in results:
            print(
                f"  shard {r['shard']} done on {r['host']} in {r['seconds']} s (attempt {r['attempt']}): "
                f"ran {len(r['ran'])} stages, restored {len(r['restored'])}"
            )
        if failures:
            for failure, attempts in failures:
                print(report_failure(failure, attempts), file=sys.stderr)
            print(f"{len(failures)} of {len(results) + len(failures)} shards failed; nothing was brought home", file=sys.stderr)
            return 1
    if home:
        ran, restored = bring_home(root)
        print(f"home: restored {len(restored)} stages from the run-cache; ran {len(ran)}: {', '.join(ran) or '-'}")
        print("pushed; commit dvc.lock, and `dvc pull` in any clone of that commit gets every output")
        trained = sorted(set(ran) & set(plan.stages))
        if trained:
            print(f"warning: {len(trained)} cluster stages ran here instead of being restored: {', '.join(trained)}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog or "python -m fewshot_dml.cluster", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, default=Path("."), help="the workspace (default: here)")
    parser.add_argument("--config", type=Path, help=f"the settings (default: <repo>/{CONFIG_FILE})")
    for name, kind in (
        ("address", str),
        ("remote", str),
        ("shard_size", int),
        ("num_cpus", float),
        ("num_gpus", float),
        ("max_retries", int),
        ("workdir", str),
        ("git_url", str),
    ):
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, type=kind, help=f"overrides {name}")
    parser.add_argument("--stages", nargs="+", help="overrides stages")
    parser.add_argument("--plan", action="store_true", help="list the stages still to run, run nothing on the cluster")
    parser.add_argument("--no-home", action="store_true", help="do not restore the results here afterwards")
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if k in {f for f in ClusterParams.__dataclass_fields__}}
    params = load_cluster_params(args.config or args.repo / CONFIG_FILE, overrides)
    return cluster_run(args.repo.resolve(), params, plan_only=args.plan, home=not args.no_home)


def command(argv: list[str] | None = None) -> None:
    """The command: a set-up problem (ClusterError) or a pipeline DVC cannot read is one ``error:`` line."""
    sys.exit(cli.run_tool(main, argv, errors=(DvcException,)))


if __name__ == "__main__":
    command()
