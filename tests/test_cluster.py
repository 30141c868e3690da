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

from dvc_helpers import CHECK, copy_pipeline, init_repo, ran, run
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


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace("address: local", "address: [local"), r"cluster.yaml:\d+: not valid YAML \(.*\); expected a YAML mapping"),
        (lambda t: t + "address: auto\n", r"cluster.yaml:\d+: not valid YAML \(found duplicate key 'address'"),
        (lambda t: "- train\n", r"cluster.yaml: holds a YAML list; expected a mapping of the settings \['address', "),
        (lambda t: t + "gpus: 1\n", r"cluster.yaml: <root>.gpus: unknown key; expected one of \['address', "),
        (lambda t: t.replace("num_cpus: 1 ", "num_cpu: 1 "), r"cluster.yaml: <root>.num_cpu: unknown key"),
        (lambda t: "", r"cluster.yaml: <root>.address: missing key; expected every one of \['address', "),
        (lambda t: t.replace("shard_size: 4", "shard_size: four"), r"cluster.yaml: shard_size: 'four' is not a number; expected int"),
        (lambda t: t.replace("stages: [train]", "stages: train"), r"cluster.yaml: stages: 'train' is not a list"),
        (lambda t: t.replace("num_gpus: 0 ", "num_gpus: -1 "), r"cluster.yaml: num_gpus: -1.0 is out of range; expected \[0, inf\]"),
    ],
)
def test_a_bad_cluster_yaml_is_one_line_naming_the_file_the_key_and_what_was_expected(tmp_path: Path, capsys, edit, message: str) -> None:
    from fewshot_dml.cluster.launch import command

    bad = tmp_path / "cluster.yaml"
    bad.write_text(edit((ROOT / "cluster.yaml").read_text()))
    with pytest.raises(ClusterError, match=message):
        load_cluster_params(bad)
    with pytest.raises(SystemExit) as exit_:
        command(["--repo", str(tmp_path), "--plan"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and len(err.strip().splitlines()) == 1 and err.startswith(f"error: {bad}"), err


def test_remotes_without_a_default_one_are_named_with_how_to_set_it() -> None:
    from types import SimpleNamespace

    from fewshot_dml.cluster.plan import shared_remote

    repo = SimpleNamespace(config={"core": {}, "remote": {"store": {"url": "/x"}, "backup": {"url": "/y"}}})
    with pytest.raises(
        ClusterError,
        match=r"no default DVC remote: this repository has the remotes \['backup', 'store'\] but none.*`dvc remote default <name>`",
    ):
        shared_remote(repo, None)
    with pytest.raises(ClusterError, match=r"^no DVC remote: add one"):
        shared_remote(SimpleNamespace(config={"core": {}, "remote": {}}), None)
    with pytest.raises(ClusterError, match=r"remote='store' is not the default remote \(None\).*dvc remote default store"):
        shared_remote(repo, "store")


def test_local_inputs_git_does_not_track_are_warned_about(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from fewshot_dml.cluster.plan import untracked_inputs

    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / ".gitignore").write_text("models/\n")
    for path in ("models/tiny/config.json", "models/tiny/model.safetensors", "data/mine.csv", "data/kept.csv", "kept/config.json"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("x")
    subprocess.run(["git", "add", ".gitignore", "data/kept.csv", "kept"], cwd=tmp_path, check=True)

    def params(model: str) -> None:
        own = {name: {"source": f"data/{name}.csv"} for name in ("mine", "kept")} | {"hub": {"source": "org/set"}}
        (tmp_path / "params.yaml").write_text(yaml.safe_dump({"train": {"model": model}, "own_datasets": own}))

    params("models/tiny")
    with caplog.at_level(logging.WARNING, logger="fewshot_dml.cluster.plan"):
        warnings = untracked_inputs(tmp_path)
    assert len(warnings) == 2, warnings
    assert warnings[0].startswith(
        "train.model='models/tiny' is a local directory that git does not track (2 untracked files, e.g. models/tiny/"
    )
    assert warnings[1].startswith("own_datasets.mine.source='data/mine.csv' is a local file that git does not track")
    assert all("clones of the commit will not have it" in w for w in warnings)
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == warnings
    for model in ("kept", "minilm", "org/model@v1", str(tmp_path.parent), "models/nowhere"):  # tracked, alias, hub id, outside, missing
        params(model)
        assert [w for w in untracked_inputs(tmp_path) if w.startswith("train.model")] == [], model


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
    copy_pipeline(ROOT, repo)
    for name in ("pyproject.toml", "cluster.yaml"):
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


@pytest.fixture(scope="module")
def clustered(repo: Path) -> tuple[str, str]:
    """The grid planned, then run on Ray and brought home, once per module: (plan output, run output).
    The tests that need the cluster's results ask for it, so each passes alone or in any order."""
    planned = cluster(repo, "--plan")  # lists, runs nothing on the cluster
    assert not (repo / "data/runs").exists()
    return planned, cluster(repo)


@pytest.mark.slow
def test_the_grid_runs_on_ray_and_comes_home_without_training(repo: Path, clustered: tuple[str, str]) -> None:
    planned, out = clustered
    assert "3 train stages, 0 restorable from the run-cache, 3 to run" in planned, planned[-3000:]
    assert "home:" not in planned
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
def test_a_fresh_clone_restores_every_run_without_training(repo: Path, clustered: tuple[str, str], tmp_path: Path) -> None:
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
    assert ran(run(["dvc", "repro"], locked)) == [CHECK]
    assert (locked / "reports/metrics.json").read_bytes() == (repo / "reports/metrics.json").read_bytes()


@pytest.mark.slow
def test_a_second_run_trains_nothing(repo: Path, clustered: tuple[str, str]) -> None:
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
    copy_pipeline(ROOT, repo)
    shutil.copy(ROOT / "params.yaml", repo / "params.yaml")
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
