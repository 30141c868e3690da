"""The package's architecture: subpackages by role, each importing only those beneath it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "fewshot_dml"
# Lowest first; a subpackage may import its own modules and those of a lower rank. `cluster` orchestrates
# DVC and Ray and needs only the plumbing and the strict loader.
LAYERS: dict[str, int] = {
    "core": 0,
    "catalog": 1,
    "losses": 2,
    "config": 3,
    "data": 4,
    "model": 4,
    "infer": 5,
    "train": 6,
    "report": 7,
    "analysis": 8,
    "api": 7,
    "studies": 9,
    "cluster": 9,
    "console": 10,
}
TORCH_FREE = ("core", "catalog", "losses", "config")
MAX_LINES = 320  # "~300": a module that grows past this is split by concern


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py"))


def imports(path: Path) -> list[tuple[str, list[str], bool]]:
    """(module, names, at module level) for every ``import``/``from ... import`` in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            out.append((node.module or "", [a.name for a in node.names], id(node) in top))
        elif isinstance(node, ast.Import):
            out += [(a.name, [], id(node) in top) for a in node.names]
    return out


def subpackage(path: Path) -> str | None:
    rel = path.relative_to(PACKAGE).parts
    return rel[0] if len(rel) > 1 else None


def test_every_module_lives_in_a_subpackage_with_a_layer() -> None:
    for path in modules():
        sub = subpackage(path)
        assert sub is not None or path.name == "__init__.py", f"{path.name} sits in the package root"
        assert sub is None or sub in LAYERS, f"{sub}/ has no layer in this test: add it to LAYERS"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_upward_import_and_no_private_name_across_modules(path: Path) -> None:
    sub = subpackage(path)
    if sub is None:
        return
    for module, names, _ in imports(path):
        parts = module.split(".")
        if parts[0] != "fewshot_dml" or len(parts) < 2:
            continue
        target = parts[1]
        if target != sub:
            assert LAYERS[target] < LAYERS[sub] or (sub == "cluster" and target in ("core", "config")), (
                f"{path.relative_to(PACKAGE)} imports {module}: {target}/ is not below {sub}/"
            )
        private = [n for n in names if n.startswith("_") and n != "__version__"]
        assert not private, f"{path.relative_to(PACKAGE)} imports private names {private} from {module}"


@pytest.mark.parametrize("sub", TORCH_FREE)
def test_the_lower_layers_never_import_torch_at_module_level(sub: str) -> None:
    for path in (PACKAGE / sub).rglob("*.py"):
        heavy = [m for m, _, top in imports(path) if top and m.split(".")[0] in ("torch", "pytorch_metric_learning", "transformers")]
        assert not heavy, f"{path.relative_to(PACKAGE)} imports {heavy} at module level"


def test_no_module_is_over_the_size_budget() -> None:
    long = {str(p.relative_to(PACKAGE)): n for p in modules() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these by concern: {long}"
