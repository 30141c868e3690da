"""The `fewshot-dml` console command: its subcommands, their help, one-line errors, the entry point."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from fewshot_dml.console.main import COMMANDS, main

ROOT = Path(__file__).resolve().parents[1]


def test_the_entry_point_is_declared() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"fewshot-dml": "fewshot_dml.console.main:main"}


def test_help_lists_every_tool(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: fewshot-dml") and all(name in out for name in COMMANDS)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_tool_names_itself_by_the_command(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0 and capsys.readouterr().out.startswith(f"usage: fewshot-dml {command} ")


def test_a_tool_error_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["study", "--out", str(tmp_path / "study.md"), "--repo", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert done.value.code == 2 and err.startswith("error: ") and len(err.splitlines()) == 1, err
    with pytest.raises(SystemExit) as done:
        main(["nope"])
    assert done.value.code == 2 and "invalid choice: 'nope'" in capsys.readouterr().err
