"""The code dependencies of each stage: the package files its script imports, transitively.

``dvc.yaml`` lists them per stage (a contract test compares); ``python tests/code_deps.py --write``
rewrites those lists from the scripts, so that a moved or new module never needs 150 lines of hand edits.
Loss files are found by name at run time (:mod:`fewshot_dml.losses`), not by import: a train stage
depends on its arm's loss file through ``data/raw/arms/<arm>.json``, ``check`` on every loss file.
"""

from __future__ import annotations

import argparse
import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "fewshot_dml"
PIPELINE_FILES = ("dvc.yaml", "check/dvc.yaml")  # the study, and the always-run check apart (check/dvc.yaml says why)


def _module_file(name: str) -> Path | None:
    base = ROOT / "src" / Path(*name.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def package_imports(path: Path) -> set[Path]:
    """Files of ``fewshot_dml`` that ``path`` imports anywhere (module level or inside functions),
    with the ``__init__.py`` of every package on the way (importing a module runs them)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import; the closure reads absolute ones"
            names |= {node.module or ""} | {f"{node.module}.{alias.name}" for alias in node.names}
    files = set()
    for name in names:
        parts = name.split(".")
        if parts[0] == "fewshot_dml":
            files |= {f for i in range(1, len(parts) + 1) if (f := _module_file(".".join(parts[:i])))}
    return files


def import_closure(script: Path) -> set[str]:
    """Repository-relative paths of every package file that ``script`` imports, transitively."""
    seen: set[Path] = set()
    todo = [script]
    while todo:
        for found in package_imports(todo.pop()) - seen:
            seen.add(found)
            todo.append(found)
    return {p.relative_to(ROOT).as_posix() for p in seen}


def loss_files() -> set[str]:
    """Every loss file (one module per loss in ``fewshot_dml/losses``, found by name at run time)."""
    return {p.relative_to(ROOT).as_posix() for p in (PACKAGE / "losses").glob("*.py") if p.name != "__init__.py"}


def stage_code_deps(verb: str) -> list[str]:
    """What ``dvc.yaml`` lists for ``stages/<verb>.py``: its import closure; ``check`` validates every
    loss section, so it also lists every loss file."""
    files = import_closure(ROOT / "stages" / f"{verb}.py") - loss_files()
    if verb == "check":
        files |= loss_files()
    return sorted(files)


def write(dvc_yaml: Path = ROOT / "dvc.yaml") -> bool:
    """Rewrite each stage's block of ``- src/...`` deps; True if anything changed."""
    text = dvc_yaml.read_text(encoding="utf-8")
    out, verb = [], None
    lines = text.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        line = lines[i]
        if m := re.match(r"^  ([a-z_]+):\s*$", line):
            verb = m.group(1)
        if m := re.match(r"^(\s+)- src/fewshot_dml/", line):
            indent = m.group(1)
            while i < len(lines) and re.match(r"^\s+- src/fewshot_dml/", lines[i]):
                i += 1
            out += [f"{indent}- {dep}\n" for dep in stage_code_deps(verb)]
            continue
        out.append(line)
        i += 1
    new = "".join(out)
    if new != text:
        dvc_yaml.write_text(new, encoding="utf-8")
    return new != text


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--write", action="store_true", help="rewrite dvc.yaml's code dependency lists")
    args = ap.parse_args()
    if args.write:
        for path in PIPELINE_FILES:
            print(f"{path} updated" if write(ROOT / path) else f"{path} already up to date")
    else:
        for verb in sorted(p.stem for p in (ROOT / "stages").glob("*.py")):
            print(verb, *stage_code_deps(verb), sep="\n  ")
