"""The cluster command for real on one machine: a local Ray instance, a local-directory DVC remote,
the tiny test model, and the README's CSV dataset (no SentEval copy needed).

The grid's three train stages run as Ray tasks in their own clones and come home through the
remote's run-cache; a fresh clone then restores them with `dvc pull --run-cache && dvc repro`; a
second run trains nothing; a stage that always fails is retried by Ray and then reported.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dvc_helpers import init_repo, ran, run
from fewshot_dml.cluster.plan import ClusterError, Shard, load_cluster_params, shards

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ["train@intents-12-cce", "train@intents-12-setfit", "train@intents-12-proxyanchor"]


def test_shards_cover_every_stage_once_in_order() -> None:
    names = [f"s{i}" for i in range(7)]
    got = shards(names, 3)
    assert got == [Shard(0, ("s0", "s1", "s2")), Shard(1, ("s3", "s4", "s5")), Shard(2, ("s6",))]
    assert shards([], 3) == []


def test_settings_are_strict_and_flags_override_them(tmp_path: Path) -> None:
    params = load_cluster_params(ROOT / "cluster.yaml", {"num_gpus": 0.5, "stages": ["train", "explain"]})
    assert params.num_gpus == 0.5 and params.stages == ("train", "explain") and params.address == "local"
    with pytest.raises(ClusterError, match=r"shard_size: 0 is out of range; expected \[1, inf\]"):
        load_cluster_params(ROOT / "cluster.yaml", {"shard_size": 0})
    bad = tmp_path / "cluster.yaml"
    bad.write_text((ROOT / "cluster.yaml").read_text() + "gpus: 1\n")
    with pytest.raises(ClusterError, match=r"cluster.yaml: <root>.gpus: unknown key"):
        load_cluster_params(bad)
    with pytest.raises(ClusterError, match=r"cluster settings not found: \S*nowhere.yaml"):
        load_cluster_params(tmp_path / "nowhere.yaml")


ray = pytest.importorskip("ray")  # installed by the dev extra (README's test command)


def cluster(repo: Path, *flags: str, ok: bool = True) -> str:
    return run([sys.executable, "-m", "fewshot_dml.cluster", "--shard-size", "2", *flags], repo, ok=ok)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path) -> Path:
    repo = tmp_path_factory.mktemp("lab") / "study"
    repo.mkdir()
    raw = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    section = (ROOT / "README.md").read_text(encoding="utf-8").split("## Your own data", 1)[1]
    example = yaml.safe_load(re.search(r"```yaml\n(.*?)```", section, re.S).group(1))
    raw.update(
        datasets=["intents"], own_datasets={"intents": example["own_datasets"]["intents"]}, sample_sizes=[12], seeds=[0], loss="proxyanchor"
    )
    raw["sample"]["eval_max"] = 24
    # The model by absolute path: the workers' clones hold no untracked files.
    raw["train"].update(
        model=str(tiny_bert_dir), steps=2, batch_size=8, eval_batch_size=32, max_length=24, warmup_steps=1, threads=1, save_weights=[]
    )
    for name in ("dvc.yaml", "pyproject.toml", "cluster.yaml"):
        shutil.copy(ROOT / name, repo / name)
    for name in ("stages", "src", "tests/data/own"):
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(ROOT / ".gitignore", repo / ".gitignore")
    (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    init_repo(repo)
    run(["dvc", "remote", "add", "-d", "shared", str(repo.parent / "remote")], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "study"], repo)
    return repo


@pytest.mark.slow
def test_the_grid_runs_on_ray_and_comes_home_without_training(repo: Path) -> None:
    planned = cluster(repo, "--plan")  # lists, runs nothing on the cluster
    assert "3 train stages, 0 restorable from the run-cache, 3 to run" in planned, planned[-3000:]
    assert "home:" not in planned and not (repo / "data/runs").exists()
    out = cluster(repo)
    assert "3 train stages, 0 restorable from the run-cache, 3 to run" in out, out[-3000:]
    assert re.search(r"shard 0: train@intents-12-cce, train@intents-12-setfit\n\s*shard 1: train@intents-12-proxyanchor", out)
    assert len(re.findall(r"shard \d done on \S+ in [\d.]+ s \(attempt 1\)", out)) == 2, out[-3000:]
    home = re.search(r"home: restored (\d+) stages from the run-cache; ran \d+: (.*)", out)
    assert home and int(home.group(1)) >= 3 and not any(s in home.group(2) for s in TRAIN), out[-3000:]
    assert "warning" not in out
    assert json.loads((repo / "data/runs/intents-12-proxyanchor/0/run.json").read_text())["loss"]["name"] == "proxyanchor"
    assert "intents" in json.loads((repo / "reports/metrics.json").read_text())
    assert not list(repo.parent.glob("study-*-shard*"))  # every clone removed


@pytest.mark.slow
def test_a_fresh_clone_restores_every_run_without_training(repo: Path, tmp_path: Path) -> None:
    # Any clone of the commit the cluster ran: `dvc repro --pull` restores from the run-cache.
    fresh = tmp_path / "fresh"
    subprocess.run(["git", "clone", "-q", str(repo), str(fresh)], check=True)
    out = run(["dvc", "repro", "--pull"], fresh)
    assert not any(s.startswith("train@") for s in ran(out)), ran(out)
    for stage in TRAIN:
        assert f"Stage '{stage}' is cached - skipping run" in out
    assert (fresh / "data/runs/intents-12-cce/0/metrics.json").read_bytes() == (
        repo / "data/runs/intents-12-cce/0/metrics.json"
    ).read_bytes()
    # Once the home step's dvc.lock and reports are committed: `dvc pull --run-cache && dvc repro` runs only check.
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "the cluster's results"], repo)
    locked = tmp_path / "locked"
    subprocess.run(["git", "clone", "-q", str(repo), str(locked)], check=True)
    run(["dvc", "pull", "--run-cache"], locked)
    assert ran(run(["dvc", "repro"], locked)) == ["check"]
    assert (locked / "reports/metrics.json").read_bytes() == (repo / "reports/metrics.json").read_bytes()


@pytest.mark.slow
def test_a_second_run_trains_nothing(repo: Path) -> None:
    # A changed output tracked by git (a report) is no reason to refuse: no task reads it.
    results = repo / "reports/results.md"
    results.write_text(results.read_text() + "\nnotes\n")
    out = cluster(repo)
    assert "3 train stages, 3 restorable from the run-cache, 0 to run" in out, out[-3000:]
    home = re.search(r"home: restored \d+ stages from the run-cache; ran \d+: (.*)", out)
    assert "shard 0" not in out and home and "train@" not in home.group(1), out[-3000:]
    assert results.read_text().endswith("notes\n") is False  # the home step reproduced the report


@pytest.mark.slow
def test_a_failing_shard_is_retried_by_ray_then_reported(repo: Path) -> None:
    # An injected stage that always fails, run on the cluster instead of train.
    dvc_yaml = yaml.safe_load((repo / "dvc.yaml").read_text())
    dvc_yaml["stages"]["broken"] = {
        "cmd": "python -c \"import sys; print('injected failure'); sys.exit(3)\"",
        "deps": ["data/splits/intents-12"],
        "outs": ["data/broken"],
    }
    (repo / "dvc.yaml").write_text(yaml.safe_dump(dvc_yaml, sort_keys=False))
    run(["git", "commit", "-qam", "a broken stage"], repo)
    try:
        out = cluster(repo, "--stages", "broken", "--max-retries", "1", ok=False)
        assert "1 broken stages, 0 restorable from the run-cache, 1 to run" in out, out[-3000:]
        assert re.search(
            r"FAILED shard 0 \(broken\) after 2 attempt\(s\): `dvc repro --pull` exited \d+; "
            r"clone kept at \S+-shard0-try2, log at \S+-shard0-try2\.log",
            out,
        ), out[-3000:]
        assert "injected failure" in out and "1 of 1 shards failed; nothing was brought home" in out
        assert "home:" not in out
    finally:
        run(["git", "reset", "-q", "--hard", "HEAD~1"], repo)
        for kept in repo.parent.glob("study-*-shard*"):
            shutil.rmtree(kept) if kept.is_dir() else kept.unlink()


def test_an_unclean_workspace_or_a_missing_remote_is_one_line(tmp_path: Path) -> None:
    repo = tmp_path / "r"
    repo.mkdir()
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(ROOT / name, repo / name)
    init_repo(repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "x"], repo)
    out = cluster(repo, "--config", str(ROOT / "cluster.yaml"), ok=False)
    assert re.search(r"error: no DVC remote: add one every machine can reach", out), out
    (repo / "dvc.yaml").write_text((repo / "dvc.yaml").read_text() + "\n")
    out = cluster(repo, "--config", str(ROOT / "cluster.yaml"), ok=False)
    assert "error: the workers clone commit" in out and "these tracked files differ from it: dvc.yaml; commit them first" in out
    run(["git", "checkout", "dvc.yaml"], repo)
    run(["dvc", "remote", "add", "other", "/tmp/x"], repo)
    run(["dvc", "remote", "add", "-d", "web", "https://example.invalid/store"], repo)
    run(["git", "commit", "-qam", "remotes"], repo)
    out = cluster(repo, "--config", str(ROOT / "cluster.yaml"), "--remote", "other", ok=False)
    assert "error: remote='other' is not the default remote ('web')" in out
    out = cluster(repo, "--config", str(ROOT / "cluster.yaml"), ok=False)
    assert "is http(s), which cannot hold DVC's run-cache" in out
