"""Presets (presets/*.yaml) applied through DVC's own `-S` code path, params.yaml untouched."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from dvc.utils.hydra import apply_overrides

from fewshot_dml.config import presets
from fewshot_dml.config.params import load_params
from fewshot_dml.console.main import main as console

ROOT = Path(__file__).resolve().parents[2]


def _applied(tmp_path: Path, names: list[str]) -> Path:
    """params.yaml in a scratch folder with the presets' `-S` arguments applied as `dvc exp run -S` applies them."""
    target = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", target)
    args = presets.set_args(ROOT, names)
    apply_overrides(target, [a for a in args if a != "-S"])
    return target


@pytest.mark.parametrize("names", [["studies"], ["studies", "roberta"], ["roberta"]])
def test_a_preset_set_through_dvc_gives_exactly_its_values_and_loads_strictly(tmp_path: Path, names: list[str]) -> None:
    params = load_params(_applied(tmp_path, names))
    applied = yaml.safe_load((tmp_path / "params.yaml").read_text())
    for name in names:
        for key, value in presets.leaves(presets.read_preset(ROOT, name)):
            node = applied
            for part in key.split("."):
                node = node[part]
            # DVC writes 1.0e-05 back as `1e-05`, which PyYAML reads as a string; the params loader reads it as a float.
            assert (float(node) if isinstance(value, float) else node) == value, key
    if "studies" in names:
        assert (params.sample.protocol, params.sample_sizes, params.train.steps, params.loss) == ("kfold", (20,), 120, "proxyanchor")
        assert params.losses["proxyanchor"].hparams["alpha"] == 0.1 and params.losses["proxyanchor"].dml_on == "tokens"
        assert params.train.lr == 1e-5 and params.train.dev_checkpoints == 1
    base = load_params(ROOT / "params.yaml")
    assert params.datasets == base.datasets and params.fetch == base.fetch  # what no preset names stays


def test_the_studies_preset_agrees_with_the_studies_code() -> None:
    """The issue's list: ProxyAnchor alpha 0.1, beta 0.4, lr 1e-5, 120 full-batch steps, max length 64, 20 examples,
    k-fold, token-level DML."""
    study = presets.read_preset(ROOT, "studies")
    pa, train = study["losses"]["proxyanchor"], study["train"]
    assert (pa["alpha"], pa["beta"], pa["dml_on"]) == (0.1, 0.4, "tokens")
    assert (train["lr"], train["steps"], train["max_length"]) == (1e-5, 120, 64)
    assert train["batch_size"] >= study["sample_sizes"][0] == 20 and study["sample"]["protocol"] == "kfold"


def test_a_key_params_yaml_lacks_is_refused_naming_it(tmp_path: Path) -> None:
    (tmp_path / "presets").mkdir()
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "presets" / "typo.yaml").write_text("train:\n  stpes: 100\n")
    with pytest.raises(ValueError, match=r"preset 'typo': train.stpes is not a key of params.yaml"):
        presets.set_args(tmp_path, ["typo"])
    (tmp_path / "presets" / "bad.yaml").write_text("train:\n  steps: 0\n")
    with pytest.raises(ValueError, match="train.steps"):
        presets.set_args(tmp_path, ["bad"])
    with pytest.raises(ValueError, match=r"preset 'nope': no file .*; expected one of \['bad', 'typo'\]"):
        presets.set_args(tmp_path, ["nope"])


def test_the_console_prints_one_line_of_set_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert console(["preset", "studies", "--root", str(ROOT)]) == 0
    line = capsys.readouterr().out.strip()
    assert "\n" not in line and line.startswith("-S ") and " -S train.lr=1.0e-05 " in line
