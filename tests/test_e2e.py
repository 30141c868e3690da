"""The whole pipeline through DVC itself, in a temporary repository, on tiny data and a tiny model.

check -> fetch -> sample -> train -> infer -> aggregate with `dvc repro`; a second `dvc repro` runs
only the always-run check; `dvc exp run -S loss=softtriple` retrains only the DML arm; `dvc metrics
diff` shows the change; a queued experiment runs offline with its own commit's code.
Beside a SentEval set, the grid holds a CSV and a JSON Lines dataset of your own, declared exactly
as the README's "Your own data" example declares them, and the model is a local directory named by a
path relative to the workspace: editing the CSV re-fetches it alone, editing a model file retrains,
and a missing model path stops `check` at once.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from dvc_helpers import CHECK, copy_project, init_repo, ran, run
from fewshot_dml.config.params import load_params

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "senteval"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SHARED.is_dir(), reason=f"local SentEval copy not found at {SHARED}"),
]


def readme_example() -> dict:
    """The YAML block of the README's "Your own data" section (its `datasets` and `own_datasets`)."""
    section = (ROOT / "README.md").read_text(encoding="utf-8").split("## Your own data", 1)[1]
    return yaml.safe_load(re.search(r"```yaml\n(.*?)```", section, re.S).group(1))


def tiny_params() -> dict:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    example = readme_example()
    assert example["datasets"] == ["intents", "answers"], "the README example changed: update the tests"
    raw.update(
        datasets=["trec", *example["datasets"]], own_datasets=example["own_datasets"], sample_sizes=[12], seeds=[0, 1], loss="proxyanchor"
    )
    raw["sample"].update(protocol="kfold", eval_max=24)  # 12 examples in all: the own sets have 3 and 2 classes of few rows
    raw["train"].update(
        model="models/tiny", steps=2, batch_size=8, eval_batch_size=32, max_length=24, warmup_steps=1, threads=1, save_weights=["answers"]
    )  # the explain stage attributes the own sentence-pair set's runs
    raw["explain"].update(sentences=2, steps=8)
    return raw


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path) -> Path:
    repo = tmp_path_factory.mktemp("study")
    # A copy of the two datasets' files (the test corrupts and restores one), by a relative path as
    # shipped: from .dvc/tmp/exps/... (temp and queued experiments) it must still resolve.
    copy = tmp_path_factory.mktemp("senteval-copy")
    for folder in ("TREC",):
        shutil.copytree(SHARED / folder, copy / folder)
    raw = tiny_params()
    raw["fetch"]["local_dir"] = os.path.relpath(copy, repo)
    # A local model, untracked, named relative to the workspace (temp and queued experiments find it there).
    copy_project(ROOT, repo, ("stages", "src", "tests/data/own"), model=tiny_bert_dir)
    (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    load_params(repo / "params.yaml")  # the test's own params are valid
    init_repo(repo)
    shutil.copy(ROOT / ".dvcignore", repo / ".dvcignore")  # after `dvc init`, which writes its own
    return repo


# Every test runs what it needs itself (these fixtures, each once per module), so a test passes alone,
# in any order, or beside the others: `pytest tests/test_e2e.py -k csv` reproduces only what it reads.
@pytest.fixture(scope="module")
def reproduced(repo: Path) -> str:
    """The whole pipeline reproduced and committed (the baseline of the experiments); dvc repro's output."""
    out = run(["dvc", "repro"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "study", "--allow-empty"], repo)
    return out


@pytest.fixture(scope="module")
def softtriple_experiment(reproduced: str, repo: Path) -> str:
    """`dvc exp run -S loss=softtriple` up to aggregate, on the full grid; its output."""
    return run(["dvc", "exp", "run", "aggregate", "-S", "loss=softtriple"], repo)


def test_fetch_and_sample_then_noop(repo: Path) -> None:
    run(["dvc", "repro", "sample"], repo)
    assert json.loads((repo / "data/raw/trec.card.json").read_text())["n_examples"] == 5452
    split = json.loads((repo / "data/splits/trec-12/0.json").read_text())
    assert len(split["train"]) == 12 and len(split["eval"]) == 24
    before = {p: p.read_bytes() for p in (repo / "data/splits").rglob("*.json")}
    out = run(["dvc", "repro", "sample"], repo)
    assert ran(out) == [CHECK]  # the always-run check only
    assert before == {p: p.read_bytes() for p in (repo / "data/splits").rglob("*.json")}


def test_repro_writes_runs_inference_and_reports(repo: Path, reproduced: str) -> None:
    for arm in ("cce", "setfit", "proxyanchor"):
        run_dir = repo / f"data/runs/answers-12-{arm}/1"
        assert {"eval.npz", "dev.npz", "train.npz", "loss_state.pt", "curve.csv", "metrics.json", "run.json"} <= {
            p.name for p in run_dir.iterdir()
        }
        infer = json.loads((repo / f"data/infer/answers-12-{arm}/1.json").read_text())
        assert (infer["proxy"] is None) == (arm != "proxyanchor")
    metrics = json.loads((repo / "reports/metrics.json").read_text())
    assert set(metrics) >= {"trec", "intents", "answers", "overall"}
    assert "| intents |" in (repo / "reports/results.md").read_text()
    intents = json.loads((repo / "data/raw/intents.card.json").read_text())
    assert intents["label_names"] == ["account", "billing", "shipping"] and intents["format"] == "csv"
    answers = json.loads((repo / "data/raw/answers.card.json").read_text())
    assert answers["pair"] is True and answers["format"] == "json"
    run_json = json.loads((repo / "data/runs/intents-12-cce/0/run.json").read_text())
    assert run_json["label_names"] == intents["label_names"]
    assert run_json["model"]["kind"] == "local" and run_json["model"]["source"] == "models/tiny"
    assert ran(run(["dvc", "repro"], repo)) == [CHECK]
    for name in (
        "results.md",
        "plots/gains.csv",
        "plots/accuracy_vs_size.csv",
        "plots/proxy_weight.csv",
        "plots/loss_curves.csv",
        "plots/confusion.csv",
        "figures/forest.png",
        "figures/confusion.png",
    ):
        assert (repo / "reports" / name).is_file(), name
    # The analysis: geometry tests, maps, deciles, confusion, and the answers set's attributions (weights kept for it only).
    analysis = repo / "reports/analysis"
    for name in (
        "analysis.md",
        "metrics.json",
        "plots/deciles_distance.csv",
        "plots/deciles_length.csv",
        "figures/map-trec-12.png",
        "figures/map-answers-12.png",
        "figures/deciles-distance.png",
        "figures/deciles-length.png",
        "figures/geometry-vs-accuracy.png",
        "figures/attributions-answers-12.png",
    ):
        assert (analysis / name).is_file(), name
    assert not (analysis / "figures/attributions-trec-12.png").exists()
    assert not (repo / "data/runs/trec-12-cce/0/model").exists() and (repo / "data/runs/answers-12-cce/0/model").is_dir()
    explained = json.loads((repo / "data/explain/answers-12.json").read_text())
    assert {(r["role"], r["kind"]) for r in explained["runs"]} == {
        ("cce", "classifier"),
        ("cce", "prototype"),
        ("dml", "classifier"),
        ("dml", "proxy"),
    }
    geometry = json.loads((analysis / "metrics.json").read_text())
    assert set(geometry["geometry"]) == {"cce", "setfit", "dml"} and "silhouette" in geometry["dml_minus_cce"]
    # `dvc plots show` renders one chart per question (no error, every definition present).
    shown = run(["dvc", "plots", "show", "--json"], repo)
    assert all(
        name in shown
        for name in ("gain_per_dataset", "accuracy_vs_size", "proxy_weight", "loss_components", "deciles_distance", "deciles_length")
    )


def test_a_changed_source_file_stops_the_pipeline_and_a_restored_one_runs_again(repo: Path, reproduced: str) -> None:
    raw = yaml.safe_load((repo / "params.yaml").read_text())
    source = (repo / raw["fetch"]["local_dir"] / "TREC/trec.tsv").resolve()
    original = source.read_bytes()
    first, rest = original.split(b"\n", 1)
    source.write_bytes(first[:-1] + (b"0" if first.endswith(b"1") else b"1") + b"\n" + rest)  # one label changed
    try:
        env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
        proc = subprocess.run(["dvc", "repro"], cwd=repo, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode != 0
        assert re.search(r"error: \S*TREC/trec\.tsv: sha256 [0-9a-f]{64} does not match the pinned 19ec27d2", proc.stdout + proc.stderr)
        assert ran(proc.stdout) == [CHECK]
    finally:
        source.write_bytes(original)
    assert ran(run(["dvc", "repro"], repo)) == [CHECK]  # restored: verified again, nothing else changed


def test_an_edited_csv_is_fetched_again_and_only_its_dataset_reruns(repo: Path) -> None:
    run(["dvc", "repro", "sample@intents-12"], repo)
    csv = repo / "tests/data/own/intents.csv"
    original = csv.read_bytes()  # bytes: the csv module ends lines with \r\n
    split = (repo / "data/splits/intents-12/0.json").read_bytes()
    csv.write_bytes(original.replace(b"wrong address,shipping", b"wrong address,account", 1))
    try:
        assert ran(run(["dvc", "repro", "sample@intents-12"], repo)) == [CHECK, "fetch@intents", "sample@intents-12"]
        card = json.loads((repo / "data/raw/intents.card.json").read_text())
        assert card["class_counts"] == {"account": 37, "billing": 42, "shipping": 41}
    finally:
        csv.write_bytes(original)
    assert ran(run(["dvc", "repro", "sample@intents-12"], repo)) == [CHECK]  # restored from the run-cache
    assert (repo / "data/splits/intents-12/0.json").read_bytes() == split
    assert json.loads(run(["dvc", "status", "--json", "sample@intents-12"], repo)) == {}  # up to date (a target leaves out check)


def test_a_train_stage_killed_with_sigkill_leaves_dvc_lock_as_a_clean_run(repo: Path, reproduced: str) -> None:
    lock = (repo / "dvc.lock").read_bytes()
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", HF_HUB_OFFLINE="1")
    proc = subprocess.Popen(
        ["dvc", "repro", "-f", "-s", "train@trec-12-cce"], cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    runs = repo / "data/runs"
    deadline = time.monotonic() + 300
    while not list(runs.glob(".trec-12-cce.*.tmp")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    stage = subprocess.run(
        ["pgrep", "-f", "stages/train.py --arm cce --table data/raw/trec"], capture_output=True, text=True
    ).stdout.split()
    assert list(runs.glob(".trec-12-cce.*.tmp")) and stage, "the train stage did not start writing its run"
    for pid in stage:  # what the kernel's OOM killer does: no cleanup runs
        os.kill(int(pid), 9)
    proc.wait(timeout=120)
    assert list(runs.glob(".trec-12-cce.*.tmp"))  # the killed stage's temporary directory is still there
    run(["dvc", "repro"], repo)
    assert (repo / "dvc.lock").read_bytes() == lock  # the stray directory is in no hash (.dvcignore)
    assert list(json.loads(run(["dvc", "status", "--json"], repo))) == [CHECK]
    run(["dvc", "repro", "-f", "-s", "train@trec-12-cce"], repo)  # the next write of that run removes it
    assert not list(runs.glob(".*.tmp")) and (repo / "dvc.lock").read_bytes() == lock


def test_an_edited_local_model_file_retrains(repo: Path, reproduced: str) -> None:
    config = repo / "models/tiny/config.json"
    original = config.read_bytes()
    config.write_bytes(original.replace(b"{", b'{\n  "edited": true,', 1))
    try:
        run(["dvc", "repro", CHECK], repo)
        status = json.loads(run(["dvc", "status", "--json"], repo))
        assert {s for s in status if s.startswith("train@")} == {
            f"train@{d}-12-{a}" for d in ("trec", "intents", "answers") for a in ("cce", "setfit", "proxyanchor")
        }
        assert not any(s.startswith(("fetch@", "sample@")) for s in status)
        assert "data/raw/model.json" in json.dumps(status["train@intents-12-cce"])
    finally:
        config.write_bytes(original)
    run(["dvc", "repro", CHECK], repo)
    assert list(json.loads(run(["dvc", "status", "--json"], repo))) == [CHECK]


def test_a_missing_local_model_path_fails_in_check_at_once(repo: Path) -> None:
    params = repo / "params.yaml"
    original = params.read_bytes()
    params.write_bytes(original.replace(b"model: models/tiny", b"model: ./models/tiny-typo"))
    try:
        started = time.perf_counter()
        out = run(["dvc", "repro"], repo, ok=False)
        assert time.perf_counter() - started < 60
        assert ran(out) == [CHECK]
        assert re.search(
            r"error: train.model='./models/tiny-typo'.*; there is no directory at "
            r"\S*/models/tiny-typo",
            out,
        ), out[-2000:]
    finally:
        params.write_bytes(original)


# The experiments run up to `aggregate` (a target of `dvc exp run`): what they test is how DVC runs
# them; the analysis and explain stages ran in `dvc repro` above, and cost ~16 s per experiment.
def test_exp_run_retrains_only_the_dml_arm(repo: Path, softtriple_experiment: str) -> None:
    out = softtriple_experiment
    assert "Running stage 'train@trec-12-softtriple'" in out
    assert "Running stage 'train@trec-12-cce'" not in out and "Running stage 'train@trec-12-setfit'" not in out
    assert "Running stage 'sample@" not in out and "Running stage 'fetch@" not in out
    assert "train@intents-12-softtriple" in ran(out) and "train@answers-12-cce" not in ran(out)
    diff = run(["dvc", "metrics", "diff", "--json"], repo)
    changed = json.loads(diff)["reports/metrics.json"]
    assert any(key.startswith("trec.") for key in changed)
    shown = run(["dvc", "exp", "show", "--json"], repo)
    assert "softtriple" in shown


def test_the_readme_command_shows_every_experiment_s_answer_on_one_screen(repo: Path, softtriple_experiment: str) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    command = next(line for line in readme.splitlines() if line.startswith("dvc exp show --drop"))
    shown = run([*shlex.split(command), "--csv"], repo)
    header, *rows = [line for line in shown.splitlines() if line.strip()]
    columns = header.split(",")
    # (a p-value column appears only where some experiment has one: two seeds of a tiny model may give none)
    assert columns[:2] == ["Experiment", "Created"] and len(columns) <= 14, columns
    assert {
        "loss_name",
        "acc_cce",
        "acc_setfit",
        "acc_loss",
        "loss_vs_cce_pp",
        "loss_vs_cce_verdict",
        "cells_won",
    } <= set(columns)
    names = {row.split(",")[columns.index("loss_name")] for row in rows}
    assert {"proxyanchor", "softtriple"} <= names, shown  # the baseline and the experiment, in the same columns


MARKER = "print('EXPERIMENT-CODE', __file__)"


def commit_marked_code(repo: Path) -> None:
    """Commit a change to the package that prints where it was imported from (every stage imports logs.py)."""
    logs = repo / "src/fewshot_dml/core/logs.py"
    if MARKER not in logs.read_text():
        logs.write_text(logs.read_text() + "\n\n" + MARKER + "\n")
        run(["git", "add", "-A"], repo)
        run(["git", "commit", "-qm", "marked code"], repo)


@pytest.fixture(scope="module")
def queued_experiment(reproduced: str, repo: Path) -> tuple[str, str]:
    """A queued softtriple experiment on trec, seed 0, lr 1e-5, run by `dvc queue start`: (queue status, its logs)."""
    commit_marked_code(repo)
    # DVC writes 0.00001 into params.yaml as 1e-05, which YAML 1.1 would read as a string.
    run(
        [
            "dvc",
            "exp",
            "run",
            "aggregate",
            "--queue",
            "-S",
            "loss=softtriple",
            "-S",
            "train.lr=0.00001",
            "-S",
            "datasets=[trec]",
            "-S",
            "seeds=[0]",
            "--name",
            "queued-lr",
        ],
        repo,
    )
    run(["dvc", "queue", "start", "-j", "1"], repo)
    deadline = time.monotonic() + 600
    status = ""
    while time.monotonic() < deadline:
        status = run(["dvc", "queue", "status"], repo)
        if not re.search(r"\b(Queued|Running)\b", status):
            break
        time.sleep(3)
    run(["dvc", "queue", "stop", "--kill"], repo) if re.search(r"\b(Queued|Running)\b", status) else None
    logs = run(["dvc", "queue", "logs", "queued-lr"], repo) if re.search(r"queued-lr\s.*Success", status) else ""
    return status, logs


def test_a_queued_experiment_runs_offline_with_its_own_code_and_a_float_from_the_cli(
    repo: Path, queued_experiment: tuple[str, str]
) -> None:
    status, logs = queued_experiment
    assert re.search(r"queued-lr\s.*Success", status), status
    assert {"train@trec-12-cce", "train@trec-12-softtriple"} <= set(ran(logs))  # train.lr: both arms it drives
    assert "intents" not in " ".join(ran(logs))
    # The package came from the experiment's own copy of the commit, not from the workspace.
    assert re.search(r"EXPERIMENT-CODE \S*/\.dvc/tmp/exps/\S*/src/fewshot_dml/core/logs\.py", logs), logs[-3000:]
    assert "1e-05" in run(["dvc", "exp", "show", "--json"], repo)


def test_the_study_reads_every_experiment_and_marks_the_dev_selected_one(
    repo: Path, softtriple_experiment: str, queued_experiment: tuple[str, str]
) -> None:
    # Two grids: the full one (the committed softtriple run) and trec/seed 0 (the queued softtriple run).
    run([sys.executable, "-m", "fewshot_dml.studies.study", "--out", "reports/experiments/study.md"], repo)
    text = (repo / "reports/experiments/study.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| `softtriple`")]
    assert len(rows) == 2 and all("✓" in r for r in rows), rows  # one per grid, each its grid's dev-selected one
    assert any("`queued-lr`" in r for r in rows), rows
    assert "geometry." not in text  # the analysis's metrics are no params
    assert "### Best arm per dataset" in text and "| trec |" in text and "| intents |" in text


def test_the_tuning_report_reads_a_queued_sweep_through_dvc(repo: Path, queued_experiment: tuple[str, str]) -> None:
    # The queued experiment above (cce, setfit, softtriple on trec, seed 0) is a one-point sweep.
    run(
        [
            sys.executable,
            "-m",
            "fewshot_dml.studies.tuning_report",
            "--out",
            "reports/experiments/sweep.md",
            "--figure",
            "reports/experiments/sweep.png",
            "--match",
            "queued-*",
        ],
        repo,
    )
    text = (repo / "reports/experiments/sweep.md").read_text()
    assert "`softtriple` ✓" in text and "| `softtriple` − `cce` | confirmatory |" in text
    assert "![tuning](sweep.png)" in text
    assert (repo / "reports/experiments/sweep.png").read_bytes()[:4] == b"\x89PNG"
