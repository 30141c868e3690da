"""dvc.yaml, params.yaml, the loss registry, the file layout, README and CI agree with each other."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from code_deps import PIPELINE_FILES, import_closure, stage_code_deps
from dvc_helpers import CHECK
from fewshot_dml.config.params import load_params
from fewshot_dml.core import layout
from fewshot_dml.losses import all_specs

LOSSES = all_specs()

ROOT = Path(__file__).resolve().parents[1]
PARAMS = load_params(ROOT / "params.yaml")


@pytest.fixture(scope="module")
def stages() -> dict:
    """The resolved pipeline: stage name -> (cmd, deps, outs, params) as DVC itself expands it."""
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        out = {}
        for stage in repo.index.stages:
            params = [key for dep in stage.deps if hasattr(dep, "params") for key in dep.params]
            out[stage.addressing] = {  # check/dvc.yaml's stage is `check/dvc.yaml:check`
                "cmd": stage.cmd,
                "deps": [dep.def_path for dep in stage.deps if not hasattr(dep, "params")],
                "outs": [o.def_path for o in stage.outs],
                "params": params,
            }
        return out


@pytest.mark.parametrize("name", ["params.yaml"])
def test_every_registered_loss_has_a_params_section(name: str) -> None:
    raw = yaml.safe_load((ROOT / name).read_text(encoding="utf-8"))
    assert sorted(n for n in raw["losses"] if "variant_of" not in raw["losses"][n]) == sorted(LOSSES)


def test_matrix_expands_to_readable_names_from_the_grid(stages: dict) -> None:
    p = PARAMS
    pairs = [(d, s) for d in p.datasets for s in p.sample_sizes]
    expected = {f"fetch@{d}" for d in p.datasets}
    expected |= {f"sample@{layout.split_group(*c)}" for c in pairs}
    expected |= {f"train@{layout.run_group(*c, arm)}" for c in pairs for arm in p.arms}
    expected |= {CHECK, "infer", "aggregate", "explain", "analyze"}
    assert set(stages) == expected


def test_paths_follow_the_layout(stages: dict) -> None:
    d, s = PARAMS.datasets[0], PARAMS.sample_sizes[0]
    splits = f"data/splits/{layout.split_group(d, s)}"
    assert stages[f"fetch@{d}"]["outs"] == [f"data/raw/{d}{layout.TABLE_SUFFIX}", f"data/raw/{d}{layout.CARD_SUFFIX}"]
    assert stages[f"sample@{layout.split_group(d, s)}"]["outs"] == [splits]
    for arm in PARAMS.arms:
        group = layout.run_group(d, s, arm)
        assert stages[f"train@{group}"]["outs"] == [f"data/runs/{group}"]
        assert splits in stages[f"train@{group}"]["deps"]
    # One run of the group is data/runs/<run_id>, its inference data/infer/<run_id>.json.
    assert layout.run_id(d, s, 3, "cce") == f"{layout.run_group(d, s, 'cce')}/3"
    assert layout.split_id(d, s, 3) + layout.SPLIT_SUFFIX == f"{layout.split_group(d, s)}/3.json"
    assert stages["infer"]["outs"] == ["data/infer"] and "data/runs" in stages["infer"]["deps"]
    assert {"data/runs", "data/infer"} <= set(stages["aggregate"]["deps"])
    assert stages["explain"]["outs"] == ["data/explain"] and "data/runs" in stages["explain"]["deps"]
    assert {"data/runs", "data/raw", "data/explain"} <= set(stages["analyze"]["deps"])


def test_each_arm_depends_only_on_its_own_loss_section(stages: dict) -> None:
    group = layout.run_group(PARAMS.datasets[0], PARAMS.sample_sizes[0], "{}")
    assert stages["train@" + group.format("cce")]["params"] == ["seeds", "train", "losses.cce"]
    assert stages["train@" + group.format(PARAMS.loss)]["params"] == ["seeds", "train", f"losses.{PARAMS.loss}"]


def test_sampling_and_fetching_do_not_depend_on_training_params(stages: dict) -> None:
    for name, stage in stages.items():
        if name.startswith(("fetch@", "sample@")):
            assert not any(p.startswith(("train", "losses", "infer", "loss")) for p in stage["params"]), name


def test_declared_params_and_code_deps_exist(stages: dict) -> None:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    for name, stage in stages.items():
        for key in stage["params"]:
            node = raw
            for part in key.split("."):
                assert part in node, f"{name}: params key {key!r} not in params.yaml"
                node = node[part]
        for dep in stage["deps"]:
            if dep.startswith(("src/", "stages/")):
                assert (ROOT / dep).exists(), f"{name}: code dependency {dep} does not exist"


def _expand(dep: str) -> set[str]:
    path = ROOT / dep
    if path.is_dir():
        return {str(p.relative_to(ROOT)) for p in path.rglob("*.py")}
    return {dep}


def test_the_always_run_check_alone_has_a_dvc_yaml_and_lock_of_its_own() -> None:
    # DVC rewrites the lock beside the dvc.yaml of every stage it runs: with the always-run check in
    # dvc.yaml, every no-op `dvc repro` rewrote the study's whole dvc.lock (bench/results.md).
    study = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    check = yaml.safe_load((ROOT / "check/dvc.yaml").read_text(encoding="utf-8"))["stages"]
    assert list(check) == ["check"] and check["check"]["always_changed"] is True and check["check"]["wdir"] == ".."
    assert not any(stage.get("always_changed") for stage in study.values())
    locked = yaml.safe_load((ROOT / "check/dvc.lock").read_text(encoding="utf-8"))["stages"]
    assert list(locked) == ["check"] and "check" not in yaml.safe_load((ROOT / "dvc.lock").read_text(encoding="utf-8"))["stages"]


def test_code_deps_are_exactly_the_import_closure_of_each_stage_script(stages: dict) -> None:
    checked = set()
    for name, stage in stages.items():
        verb = name.split("@")[0].split(":")[-1]  # check/dvc.yaml:check -> check
        declared = {f for dep in stage["deps"] if dep.startswith("src/") for f in _expand(dep)}
        assert f"stages/{verb}.py" in stage["deps"], name
        expected = set(stage_code_deps(verb))
        assert declared == expected, (
            f"{name}: missing {sorted(expected - declared)}, extra {sorted(declared - expected)}; run `python tests/code_deps.py --write`"
        )
        checked.add(verb)
    assert checked == {p.stem for p in (ROOT / "stages").glob("*.py")}


def test_the_closure_follows_imports_inside_functions() -> None:
    # report.py imports aggregate inside a function; train reaches inference through training.
    assert "src/fewshot_dml/infer/inference.py" in import_closure(ROOT / "stages" / "train.py")
    assert "src/fewshot_dml/data/table.py" in import_closure(ROOT / "stages" / "sample.py")
    assert "src/fewshot_dml/train/run.py" not in import_closure(ROOT / "stages" / "infer.py")


def test_stage_scripts_are_thin_and_documented() -> None:
    for script in sorted((ROOT / "stages").glob("*.py")):
        text = script.read_text(encoding="utf-8")
        assert text.startswith('"""') and "->" in text.split('"""')[1], f"{script.name}: docstring 'inputs -> outputs'"
        assert "def main(argv: list[str] | None = None)" in text, script.name
        assert "    run_stage(main, started=STARTED)" in text, f"{script.name}: user errors must go through fewshot_dml.core.cli.run_stage"
        # STARTED is taken before the imports, so the stage's timing record counts them.
        assert text.index("STARTED = time.perf_counter()") < text.index("from fewshot_dml"), script.name
        # The package of this checkout, not an installed one (a queued experiment runs its own commit).
        assert 'sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))' in text, script.name
        assert len(text.splitlines()) < 60, f"{script.name} is not thin"


def test_ci_runs_exactly_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci_lines = [ln for ln in (ROOT / ".ci/run").read_text(encoding="utf-8").splitlines() if ln and not ln.startswith(("#", "set ", "cd "))]
    assert len(ci_lines) == 1
    assert re.search(re.escape(ci_lines[0]), readme), "README must show the exact command .ci/run runs"


@pytest.mark.parametrize("name", ["params.yaml", "presets/studies.yaml", "presets/roberta.yaml"])
def test_params_files_use_no_yaml_aliases(name: str) -> None:
    # `dvc exp run -S a.b=1` on a key reached through an alias (*x) edits the anchor's other users
    # too, or nothing: every value is written out where it applies.
    text = (ROOT / name).read_text(encoding="utf-8")
    assert not re.search(r"(^|\s)[&*][A-Za-z_]\w*", re.sub(r"#.*", "", text)), f"{name} uses a YAML anchor or alias"


def test_the_readme_writes_reports_outside_every_stage_output() -> None:
    # A file written into a stage's output folder (e.g. reports/figures) is deleted by the next `dvc repro`.
    outs = [
        next(iter(o)) if isinstance(o, dict) else o
        for name in PIPELINE_FILES
        for stage in yaml.safe_load((ROOT / name).read_text())["stages"].values()
        for o in stage.get("outs", [])
    ]
    readme = (ROOT / "README.md").read_text()
    written = re.findall(r"--(?:out|figure) (reports/\S+)", readme)
    assert written
    for path in written:
        assert not any(path == o or path.startswith(o.rstrip("/") + "/") for o in outs), (path, outs)


def test_each_stage_loads_exactly_the_params_sections_dvc_yaml_declares() -> None:
    # DVC reruns a stage when a declared key changes; a section the code reads but does not declare
    # would leave stale results, one it declares but never reads would rerun it for nothing. Each
    # script loads only SECTIONS (the others are None), so reading an undeclared one fails loudly.
    import importlib.util

    raw = {
        name: stage
        for path in PIPELINE_FILES
        for name, stage in yaml.safe_load((ROOT / path).read_text(encoding="utf-8"))["stages"].items()
    }
    for script in sorted((ROOT / "stages").glob("*.py")):
        spec = importlib.util.spec_from_file_location(f"stage_{script.stem}", script)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        if script.stem == "check":  # always runs; validates the whole file
            assert not hasattr(module, "SECTIONS") and "params" not in raw["check"]
            continue
        assert tuple(module.SECTIONS) == tuple(raw[script.stem]["params"]), script.name
