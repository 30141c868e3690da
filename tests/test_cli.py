"""Stage scripts as a user runs them: one clear line for a user error, and this checkout's own code."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def stage(script: Path, *args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    inherited = {k: v for k, v in os.environ.items() if k != "FEWSHOT_DML_TRACEBACK"}
    full_env = inherited | {"FEWSHOT_DML_LOG": "WARNING"} | (env or {})
    return subprocess.run([sys.executable, str(script), *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def params_with(tmp_path: Path):
    """Write params.yaml (the shipped one, edited) into tmp_path; the SentEval copy by absolute path."""

    def write(edit) -> Path:
        raw = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
        raw["fetch"]["local_dir"] = str(ROOT.parent / "shared" / "senteval")
        edit(raw)
        path = tmp_path / "params.yaml"
        path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
        return path

    return write


def test_a_params_error_is_one_line_and_exit_2(tmp_path: Path, params_with) -> None:
    params = params_with(lambda raw: raw.update(trian={"lr": 1.0}))
    proc = stage(
        ROOT / "stages/check.py", "--params", str(params), "--out", "s.json", "--model-out", "m.json", "--arms-out", "arms", cwd=tmp_path
    )
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "error: <root>.trian: unknown key; expected one of ['aggregate', 'analyze', 'datasets', 'explain', "
        "'fetch', 'infer', 'loss', 'losses', 'own_datasets', 'sample', 'sample_sizes', 'seeds', "
        "'train']"
    ]
    assert not (tmp_path / "s.json").exists()


def test_an_unknown_loss_is_one_line_listing_the_valid_ones(tmp_path: Path, params_with) -> None:
    """What `dvc exp run -S loss=nosuchloss` shows: the check stage's one line, with the losses to choose from."""
    params = params_with(lambda raw: raw.update(loss="nosuchloss"))
    proc = stage(
        ROOT / "stages/check.py", "--params", str(params), "--out", "s.json", "--model-out", "m.json", "--arms-out", "arms", cwd=tmp_path
    )
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith(
        "error: losses.nosuchloss: missing section for the configured loss: 'nosuchloss' is neither a registered loss "
        "nor a variant declared under losses; expected loss set to one of ['arcface', 'circle', 'contrastive', 'contrastive-metrix', "
    ), proc.stderr


def test_a_typo_in_train_is_reported_by_train_not_by_fetch(tmp_path: Path, params_with) -> None:
    params = params_with(lambda raw: raw["train"].update(lrr=1e-5))
    fetch = stage(
        ROOT / "stages/fetch.py", "--dataset", "trec", "--table", "t.jsonl", "--card", "c.json", "--params", str(params), cwd=tmp_path
    )
    assert fetch.returncode == 0, fetch.stderr
    train = stage(
        ROOT / "stages/train.py",
        "--arm",
        "cce",
        "--table",
        "t.jsonl",
        "--card",
        "c.json",
        "--splits",
        "splits",
        "--out",
        "runs",
        "--params",
        str(params),
        cwd=tmp_path,
    )
    assert train.returncode == 2
    assert len(train.stderr.splitlines()) == 1 and train.stderr.startswith("error: train.lrr: unknown key")
    assert "Traceback" not in train.stderr


def test_a_data_error_is_one_line_and_a_traceback_only_on_request(tmp_path: Path, params_with) -> None:
    params = params_with(lambda raw: raw["fetch"].update(local_dir=str(tmp_path / "nowhere"), download=False))  # local only
    args = ("--dataset", "trec", "--table", "t.jsonl", "--card", "c.json", "--params", str(params))
    proc = stage(ROOT / "stages/fetch.py", *args, cwd=tmp_path)
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1
    assert proc.stderr.startswith(f"error: fetch.local_dir='{tmp_path / 'nowhere'}': no directory at")
    debug = stage(ROOT / "stages/fetch.py", *args, cwd=tmp_path, env={"FEWSHOT_DML_TRACEBACK": "1"})
    assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr


def test_a_stage_script_imports_the_package_of_its_own_checkout(tmp_path: Path) -> None:
    # A queued DVC experiment runs a copy of the commit in .dvc/tmp/exps/...; with the editable install
    # `import fewshot_dml` would load the workspace's src/, not the experiment's. The scripts put their
    # checkout's src/ first.
    copy = tmp_path / "checkout"
    for name in ("stages", "src"):
        shutil.copytree(ROOT / name, copy / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    logs = copy / "src/fewshot_dml/core/logs.py"
    logs.write_text(logs.read_text() + '\n\nprint("THIS-CHECKOUT", __file__)\n')
    proc = stage(copy / "stages/check.py", "--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"THIS-CHECKOUT {logs}" in proc.stdout


def test_a_missing_optional_library_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from fewshot_dml.core.cli import run_stage
    from fewshot_dml.train.setfit import _import_setfit

    monkeypatch.delenv("FEWSHOT_DML_TRACEBACK", raising=False)
    monkeypatch.setitem(sys.modules, "setfit", None)  # `import setfit` raises ImportError
    with pytest.raises(SystemExit) as exit_info:
        run_stage(lambda argv: _import_setfit())
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: the setfit arm needs the `setfit` library") and "pip install" in err
    assert "\n" not in err and "Traceback" not in err


def test_a_stage_appends_its_timing_record_only_when_asked(tmp_path: Path, params_with, monkeypatch: pytest.MonkeyPatch) -> None:
    """FEWSHOT_DML_TIMING (set by bench/pipeline.py): one JSON line per successful stage process."""
    import json

    params = params_with(lambda raw: None)
    args = ("--dataset", "trec", "--table", "t.jsonl", "--card", "c.json", "--params", str(params))
    timing = tmp_path / "timing.jsonl"
    monkeypatch.delenv("FEWSHOT_DML_TIMING", raising=False)  # this test decides; stage() inherits the environment
    assert stage(ROOT / "stages/fetch.py", *args, cwd=tmp_path).returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.json", "params.yaml", "t.jsonl"]  # no record
    env = {"FEWSHOT_DML_TIMING": str(timing)}
    assert stage(ROOT / "stages/fetch.py", *args, cwd=tmp_path, env=env).returncode == 0
    sample = stage(
        ROOT / "stages/sample.py",
        "--dataset",
        "trec",
        "--size",
        "8",
        "--table",
        "t.jsonl",
        "--card",
        "c.json",
        "--out",
        "splits",
        "--params",
        str(params),
        cwd=tmp_path,
        env=env,
    )
    assert sample.returncode == 0, sample.stderr
    failed = stage(
        ROOT / "stages/sample.py",
        "--dataset",
        "mr",
        "--size",
        "8",
        "--table",
        "t.jsonl",
        "--card",
        "c.json",
        "--out",
        "bad",
        "--params",
        str(params),
        cwd=tmp_path,
        env=env,
    )
    assert failed.returncode == 2  # a failed stage records nothing
    records = [json.loads(line) for line in timing.read_text().splitlines()]
    assert [r["stage"] for r in records] == ["fetch", "sample"]
    for r in records:
        assert 0 < r["imports_s"] < r["wall_s"] and r["phases"] == {}
    assert records[1]["argv"][:4] == ["--dataset", "trec", "--size", "8"]
    assert sorted(p.name for p in (tmp_path / "splits").iterdir()) == [f"{k}.json" for k in (0, 1, 2, 3, 4)]
