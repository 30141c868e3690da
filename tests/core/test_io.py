"""Atomic writes: a failure or a SIGKILL never leaves something DVC would hash or trust."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fewshot_dml.core import io


def test_a_failed_block_leaves_neither_the_output_nor_a_temporary(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="boom"), io.atomic_dir(tmp_path / "run") as tmp:
        (tmp / "x").write_text("partial")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_a_sigkilled_writer_leaves_a_temporary_that_the_next_write_removes(tmp_path: Path) -> None:
    # SIGKILL runs no cleanup: the temporary directory stays, named with the dead writer's pid.
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(Path(io.__file__).parents[2])!r})
        from fewshot_dml.core import io
        with io.atomic_dir({str(tmp_path / "run")!r}) as tmp:
            (tmp / "weights").write_bytes(b"0" * 1000)
            print("writing", flush=True)
            time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
    live = list(tmp_path.glob(".run.*.tmp"))
    assert [p.name.split(".")[2] for p in live] == [str(proc.pid)]
    assert io.remove_stale_tmp(tmp_path / "run") == []  # a live writer's directory is never touched
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert list(tmp_path.glob(".run.*.tmp")) == live
    with io.atomic_dir(tmp_path / "run") as tmp:
        (tmp / "weights").write_bytes(b"1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"] and (tmp_path / "run/weights").read_bytes() == b"1"


def test_every_temporary_name_is_one_dvcignore_hides(tmp_path: Path) -> None:
    import pathspec

    patterns = (Path(__file__).resolve().parents[2] / ".dvcignore").read_text().splitlines()
    spec = pathspec.PathSpec.from_lines("gitwildmatch", patterns)
    seen = []
    with io.atomic_dir(tmp_path / "runs" / "trec-16-cce") as tmp:
        seen.append(tmp.relative_to(tmp_path).as_posix())
        with io.atomic_path(tmp_path / "reports" / "results.md") as file:
            seen.append(file.relative_to(tmp_path).as_posix())
            file.write_text("x")
    assert seen and all(spec.match_file(path) for path in seen), seen
    assert not spec.match_file("runs/trec-16-cce/0/eval.npz") and not spec.match_file("reports/results.md")
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["trec-16-cce"]
