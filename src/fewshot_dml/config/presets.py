"""Presets: named sets of params applied to an experiment without editing ``params.yaml``.

A preset is a partial params file under ``presets/`` holding only the keys it changes (nested as in
``params.yaml``). :func:`set_args` turns one or more presets, composed left to right, into DVC's
``-S key=value`` arguments, so that::

    dvc exp run -n studies $(fewshot-dml preset studies)

runs the studies' protocol as a DVC experiment and leaves ``params.yaml`` as committed. Every key of a
preset must exist in ``params.yaml`` (a typo is refused, naming the key), and the composed params must
load strictly; both are checked before anything is printed.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from fewshot_dml.config.params import parse_params
from fewshot_dml.core.strict import load_yaml_file

PRESETS_DIR = "presets"


def available(root: Path) -> list[str]:
    """The preset names under ``root/presets``."""
    return sorted(p.stem for p in (Path(root) / PRESETS_DIR).glob("*.yaml"))


def read_preset(root: Path, name: str) -> dict[str, Any]:
    """The keys ``presets/<name>.yaml`` sets."""
    path = Path(root) / PRESETS_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"preset {name!r}: no file {path}; expected one of {available(root)}")
    data = load_yaml_file(path)
    if not isinstance(data, Mapping) or not data:
        raise ValueError(f"{path}: expected a mapping of params to set, got {data!r}")
    return dict(data)


def leaves(tree: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(dotted.key, value)`` of every leaf; a list or an empty mapping is a leaf (DVC sets it whole)."""
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield from leaves(value, f"{path}.")
        else:
            yield path, value


def compose(base: Mapping[str, Any], presets: Sequence[tuple[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """``base`` with each preset's leaves set in order; a key absent from ``base`` is refused."""
    out = copy.deepcopy(dict(base))
    for name, preset in presets:
        for key, value in leaves(preset):
            node = out
            *parents, last = key.split(".")
            for part in parents:
                if not isinstance(node.get(part), Mapping):
                    raise ValueError(f"preset {name!r}: {key} is not a key of params.yaml; expected an existing key")
                node = node[part]
            if last not in node:
                raise ValueError(f"preset {name!r}: {key} is not a key of params.yaml; expected an existing key")
            node[last] = copy.deepcopy(value)
    return out


def _value(value: Any) -> str:
    """A value as DVC's ``-S`` reads it back (YAML flow style; floats always with a dot and an exponent
    sign, so that no YAML reader takes them for strings)."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float):
        text = repr(value)
        return text if "." in text or "e" not in text else text.replace("e", ".0e")
    if isinstance(value, list):
        return "[" + ",".join(_value(v) for v in value) + "]"
    return str(value)


def set_args(root: Path, names: Sequence[str]) -> list[str]:
    """The ``-S`` arguments of the presets ``names`` composed over ``root/params.yaml``, after checking
    that the result loads strictly (later presets win where two set one key)."""
    if not names:
        raise ValueError(f"name at least one preset; expected some of {available(root)}")
    presets = [(name, read_preset(root, name)) for name in names]
    base = load_yaml_file(Path(root) / "params.yaml")
    parse_params(compose(base, presets))  # refuses what the stages would refuse
    final: dict[str, Any] = {}
    for _, preset in presets:
        final.update(leaves(preset))
    args = []
    for key, value in final.items():
        args += ["-S", f"{key}={_value(value)}"]
    return args


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """``fewshot-dml preset NAME [NAME ...]``: print the ``-S`` arguments, for ``dvc exp run``."""
    import argparse

    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="+", help="presets under presets/, composed left to right")
    ap.add_argument("--root", type=Path, default=Path("."), help="the workspace (params.yaml and presets/)")
    args = ap.parse_args(argv)
    out = set_args(args.root, args.names)
    spaced = [a for a in out if any(c.isspace() for c in a)]
    if spaced:  # `$(...)` splits on spaces and keeps quotes: such a value cannot pass through it
        raise ValueError(f"{spaced[0]!r} has a space; expected preset values without spaces")
    print(" ".join(out))
    return 0
