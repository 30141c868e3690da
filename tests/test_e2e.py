"""The whole pipeline through DVC itself, in a temporary repository, on tiny data and a tiny model.

check -> fetch -> sample -> train -> infer -> aggregate with `dvc repro`; a second `dvc repro` runs
only the always-run check; `dvc exp run -S loss=softtriple` retrains only the DML arm; `dvc metrics
diff` shows the change; `--temp` and queued experiments run offline with their own commit's code.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from fewshot_dml.params import load_params

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "senteval"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SHARED.is_dir(), reason=f"local SentEval copy not found at {SHARED}"),
]


def run(cmd: list[str], cwd: Path) -> str:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    env.update(FEWSHOT_DML_LOG="WARNING", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{out[-6000:]}"
    return out


def ran(out: str) -> list[str]:
    """The stages a DVC command ran, in order."""
    return re.findall(r"Running stage '([^']+)'", out)


def tiny_params(model_dir: Path) -> dict:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    raw.update(datasets=["trec", "mrpc"], sample_sizes=[12], seeds=[0, 1], loss="proxyanchor")
    raw["sample"]["eval_max"] = 24
    raw["train"].update(model=str(model_dir), steps=2, batch_size=8, eval_batch_size=32, max_length=24, warmup_steps=1, threads=1,
                        save_weights=["mrpc"])  # the explain stage attributes MRPC's (sentence-pair) runs
    raw["explain"].update(sentences=2, steps=8)
    return raw


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path) -> Path:
    repo = tmp_path_factory.mktemp("study")
    # A copy of the two datasets' files (the test corrupts and restores one), by a relative path as
    # shipped: from .dvc/tmp/exps/... (temp and queued experiments) it must still resolve.
    copy = tmp_path_factory.mktemp("senteval-copy")
    for folder in ("TREC", "MRPC"):
        shutil.copytree(SHARED / folder, copy / folder)
    raw = tiny_params(tiny_bert_dir)
    raw["fetch"]["local_dir"] = os.path.relpath(copy, repo)
    for name in ("dvc.yaml", "pyproject.toml"):
        shutil.copy(ROOT / name, repo / name)
    for name in ("stages", "src"):
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (repo / ".gitignore").write_text((ROOT / ".gitignore").read_text())
    (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    load_params(repo / "params.yaml")  # the test's own params are valid
    run(["git", "init", "-q"], repo)
    run(["git", "config", "user.email", "ci@example.invalid"], repo)
    run(["git", "config", "user.name", "ci"], repo)
    run(["dvc", "init", "-q"], repo)
    run(["dvc", "config", "core.analytics", "false"], repo)
    return repo


def test_fetch_and_sample_then_noop(repo: Path) -> None:
    run(["dvc", "repro", "sample"], repo)
    for d in ("trec", "mrpc"):
        card = json.loads((repo / f"data/raw/{d}.card.json").read_text())
        assert card["n_examples"] == {"trec": 5452, "mrpc": 3668}[d]
    split = json.loads((repo / "data/splits/trec-12/0.json").read_text())
    assert len(split["train"]) == 12 and len(split["eval"]) == 24
    before = {p: p.read_bytes() for p in (repo / "data/splits").rglob("*.json")}
    out = run(["dvc", "repro", "sample"], repo)
    assert ran(out) == ["check"]  # the always-run check only
    assert before == {p: p.read_bytes() for p in (repo / "data/splits").rglob("*.json")}


def test_repro_writes_runs_inference_and_reports(repo: Path) -> None:
    run(["dvc", "repro"], repo)
    for arm in ("cce", "setfit", "proxyanchor"):
        run_dir = repo / f"data/runs/mrpc-12-{arm}/1"
        assert {"eval.npz", "dev.npz", "train.npz", "loss_state.pt", "curve.csv", "metrics.json", "run.json"} <= {
            p.name for p in run_dir.iterdir()}
        infer = json.loads((repo / f"data/infer/mrpc-12-{arm}/1.json").read_text())
        assert (infer["proxy"] is None) == (arm != "proxyanchor")
    metrics = json.loads((repo / "reports/metrics.json").read_text())
    assert set(metrics) >= {"trec", "mrpc", "overall"}
    assert ran(run(["dvc", "repro"], repo)) == ["check"]
    for name in ("results.md", "plots/gains.csv", "plots/accuracy_vs_size.csv", "plots/proxy_weight.csv",
                 "plots/loss_curves.csv", "figures/forest.png", "figures/confusion.png"):
        assert (repo / "reports" / name).is_file(), name
    # The analysis: geometry tests, maps, deciles, confusion, and MRPC's attributions (weights kept for MRPC only).
    analysis = repo / "reports/analysis"
    for name in ("analysis.md", "metrics.json", "plots/deciles_distance.csv", "plots/deciles_length.csv",
                 "figures/map-trec-12.png", "figures/map-mrpc-12.png", "figures/deciles-distance.png",
                 "figures/deciles-length.png", "figures/geometry-vs-accuracy.png",
                 "figures/attributions-mrpc-12.png"):
        assert (analysis / name).is_file(), name
    assert not (analysis / "figures/attributions-trec-12.png").exists()
    assert not (repo / "data/runs/trec-12-cce/0/model").exists() and (repo / "data/runs/mrpc-12-cce/0/model").is_dir()
    explained = json.loads((repo / "data/explain/mrpc-12.json").read_text())
    assert {(r["role"], r["kind"]) for r in explained["runs"]} == {("cce", "classifier"), ("cce", "prototype"),
                                                                   ("dml", "classifier"), ("dml", "proxy")}
    geometry = json.loads((analysis / "metrics.json").read_text())
    assert set(geometry["geometry"]) == {"cce", "setfit", "dml"} and "silhouette" in geometry["dml_minus_cce"]
    # `dvc plots show` renders one chart per question (no error, every definition present).
    shown = run(["dvc", "plots", "show", "--json"], repo)
    assert all(name in shown for name in ("gain_per_dataset", "accuracy_vs_size", "proxy_weight", "loss_components",
                                          "deciles_distance", "deciles_length"))


def test_a_changed_source_file_stops_the_pipeline_and_a_restored_one_runs_again(repo: Path) -> None:
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
        assert ran(proc.stdout) == ["check"]
    finally:
        source.write_bytes(original)
    assert ran(run(["dvc", "repro"], repo)) == ["check"]  # restored: verified again, nothing else changed


def test_exp_run_retrains_only_the_dml_arm(repo: Path) -> None:
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "study"], repo)
    out = run(["dvc", "exp", "run", "-S", "loss=softtriple"], repo)
    assert "Running stage 'train@trec-12-softtriple'" in out
    assert "Running stage 'train@trec-12-cce'" not in out and "Running stage 'train@trec-12-setfit'" not in out
    assert "Running stage 'sample@" not in out and "Running stage 'fetch@" not in out
    diff = run(["dvc", "metrics", "diff", "--json"], repo)
    changed = json.loads(diff)["reports/metrics.json"]
    assert any(key.startswith("trec.") for key in changed)
    shown = run(["dvc", "exp", "show", "--json"], repo)
    assert "softtriple" in shown


MARKER = "print('EXPERIMENT-CODE', __file__)"


def commit_marked_code(repo: Path) -> None:
    """Commit a change to the package that prints where it was imported from (every stage imports logs.py)."""
    logs = repo / "src/fewshot_dml/logs.py"
    if MARKER not in logs.read_text():
        logs.write_text(logs.read_text() + "\n\n" + MARKER + "\n")
        run(["git", "add", "-A"], repo)
        run(["git", "commit", "-qm", "marked code"], repo)


def test_temp_experiment_runs_offline_with_its_own_code_and_a_float_from_the_cli(repo: Path) -> None:
    commit_marked_code(repo)
    out = run(["dvc", "exp", "run", "--temp", "-S", "train.lr=0.00001", "-S", "datasets=[trec]", "-S", "seeds=[0]"], repo)
    assert "Running stage 'train@trec-12-cce'" in out and "mrpc" not in " ".join(ran(out))
    # The package came from the experiment's own copy of the commit, not from the workspace.
    assert re.search(r"EXPERIMENT-CODE \S*/\.dvc/tmp/exps/\S*/src/fewshot_dml/logs\.py", out), out[-3000:]
    shown = json.loads(run(["dvc", "exp", "show", "--json"], repo))
    assert "1e-05" in json.dumps(shown)


def test_queued_experiments_run_offline_with_their_own_code(repo: Path) -> None:
    commit_marked_code(repo)
    run(["dvc", "exp", "run", "--queue", "-S", "loss=supcon", "-S", "datasets=[trec]", "-S", "seeds=[0]",
         "--name", "queued-supcon"], repo)
    # seeds=[0] as the Metrix and token tests below: its cce and setfit groups (this commit's code,
    # default params) come to them from the run-cache, and only their DML arm trains.
    run(["dvc", "queue", "start", "-j", "1"], repo)
    deadline = time.monotonic() + 600
    status = ""
    while time.monotonic() < deadline:
        status = run(["dvc", "queue", "status"], repo)
        if not re.search(r"\b(Queued|Running)\b", status):
            break
        time.sleep(3)
    run(["dvc", "queue", "stop", "--kill"], repo) if re.search(r"\b(Queued|Running)\b", status) else None
    assert re.search(r"queued-supcon\s.*Success", status), status
    logs = run(["dvc", "queue", "logs", "queued-supcon"], repo)
    assert "Running stage 'train@trec-12-supcon'" in logs
    assert re.search(r"EXPERIMENT-CODE \S*/\.dvc/tmp/exps/\S*/src/fewshot_dml/logs\.py", logs), logs[-3000:]


@pytest.mark.parametrize("point", ["input", "feature", "embedding"])
def test_a_metrix_variant_runs_through_dvc_exp_run(repo: Path, point: str) -> None:
    out = run(["dvc", "exp", "run", "-S", "loss=proxyanchor-metrix", "-S", f"losses.proxyanchor-metrix.metrix.point={point}",
               "-S", "losses.proxyanchor-metrix.metrix.layer=1", "-S", "datasets=[trec]", "-S", "seeds=[0]"], repo)
    assert {"train@trec-12-proxyanchor-metrix", "infer", "aggregate"} <= set(ran(out))
    run_json = json.loads((repo / "data/runs/trec-12-proxyanchor-metrix/0/run.json").read_text())
    assert run_json["loss"]["metrix"] == {"point": point, "layer": 1, "alpha": 2.0, "weight": 0.4}
    assert json.loads((repo / "data/infer/trec-12-proxyanchor-metrix/0.json").read_text())["proxy"] is not None
    results = (repo / "reports/results.md").read_text()
    assert "a variant of `proxyanchor`" in results and "Metrix: mixing" in results


def test_token_level_dml_runs_through_dvc_exp_run(repo: Path) -> None:
    out = run(["dvc", "exp", "run", "-S", "loss=softtriple", "-S", "losses.softtriple.dml_on=tokens",
               "-S", "datasets=[trec]", "-S", "seeds=[0]"], repo)
    assert "train@trec-12-softtriple" in ran(out)
    assert json.loads((repo / "data/runs/trec-12-softtriple/0/run.json").read_text())["loss"]["dml_on"] == "tokens"
    assert "DML on every token" in (repo / "reports/results.md").read_text()


def test_the_study_lists_every_sweep_point_and_marks_the_dev_selected_one(repo: Path) -> None:
    # The Metrix-point tests above are a three-point sweep of losses.proxyanchor-metrix.metrix.point.
    run([sys.executable, "-m", "fewshot_dml.study", "--out", "reports/study.md"], repo)
    text = (repo / "reports/study.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| `proxyanchor-metrix`")]
    assert sorted(re.search(r"metrix\.point=(\w+)", r).group(1) for r in rows) == ["embedding", "feature", "input"]
    assert sum("✓" in r for r in rows) == 1
    assert "### Best arm per dataset" in text and "| trec |" in text


def test_the_tuning_report_reads_a_queued_sweep_through_dvc(repo: Path) -> None:
    # The queued experiment above (cce, setfit, supcon on trec, seed 0) is a one-point sweep.
    run([sys.executable, "-m", "fewshot_dml.tuning_report", "--out", "reports/tuning.md",
         "--figure", "reports/tuning.png", "--match", "queued-*"], repo)
    text = (repo / "reports/tuning.md").read_text()
    assert "`supcon` ✓" in text and "| `supcon` − `cce` | confirmatory |" in text
    assert "![tuning](tuning.png)" in text
    assert (repo / "reports/tuning.png").read_bytes()[:4] == b"\x89PNG"
