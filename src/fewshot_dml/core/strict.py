"""Strict loading of settings files into frozen dataclasses: the YAML loader and the dataclass kit.

Every key must be declared; unknown keys, missing keys, wrong types and out-of-range values raise
:class:`~fewshot_dml.core.errors.ParamsError` naming the key path, the bad value and what was expected.
A range is ``[low, high]``, or ``(low, high]`` with ``low_open`` (None = unbounded), for a
dataclass field (:func:`spec`) and a loss hyperparameter (``HParam``) alike.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import field
from pathlib import Path
from typing import Any, Literal

import yaml

from fewshot_dml.core.errors import ParamsError


class StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 floats and no duplicate keys.

    PyYAML implements YAML 1.1, whose float pattern needs a dot: ``1e-05`` (how DVC's ``-S`` writes
    0.00001) and ``1e-5`` load as strings. This loader resolves every YAML 1.2 float spelling
    (``1e-5``, ``1.0e+3``, ``.5``, ``.inf``) to a float and leaves everything else as SafeLoader does.
    A key given twice in one mapping (two datasets of one name) is an error: PyYAML keeps the last.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"found duplicate key {key!r}; expected each name once", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_FLOAT_TAG = "tag:yaml.org,2002:float"
StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _FLOAT_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
StrictLoader.add_implicit_resolver(
    _FLOAT_TAG,
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                 |[-+]?(?:[0-9][0-9_]*)[eE][-+]?[0-9]+
                 |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                 |[-+]?\.(?:inf|Inf|INF)
                 |\.(?:nan|NaN|NAN))$""",
        re.VERBOSE,
    ),
    list("-+0123456789."),
)


def read_yaml(text: str) -> Any:
    """Parse YAML text with :class:`StrictLoader` (floats in every spelling DVC or a person may write)."""
    return yaml.load(text, Loader=StrictLoader)


def load_yaml_file(path: str | Path) -> Any:
    """Read ``path`` with :func:`read_yaml`; a missing file or bad YAML is a :class:`ParamsError`."""
    path = Path(path)
    try:
        return read_yaml(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ParamsError(f"file not found: {path}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ParamsError(f"{where}: not valid YAML ({getattr(err, 'problem', None) or err})") from None


def spec(low: float | None = None, high: float | None = None, *, low_open: bool = False) -> Any:
    """A dataclass field whose numeric value must lie in [low, high] (or (low, high] if low_open)."""
    return field(metadata={"low": low, "high": high, "low_open": low_open})


def check_keys(values: Mapping[str, Any], declared: Mapping[str, Any], where: str) -> None:
    unknown = sorted(set(values) - set(declared))
    if unknown:
        raise ParamsError(f"{where}.{unknown[0]}: unknown key; expected one of {sorted(declared)}")
    missing = sorted(set(declared) - set(values))
    if missing:
        raise ParamsError(f"{where}.{missing[0]}: missing key; expected every one of {sorted(declared)} (the file declares every value)")


def build(cls: type, raw: Any, where: str) -> Any:
    here = where.rstrip(".") or "<root>"
    raw = mapping(raw, here)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    check_keys(raw, fields, here)
    kwargs = {}
    for name, f in fields.items():
        path = f"{where}{name}"
        kwargs[name] = convert(raw[name], hints[name], path, f.metadata)
    return cls(**kwargs)


def convert(value: Any, hint: Any, path: str, meta: Mapping[str, Any]) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return build(hint, value, f"{path}.")
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise ParamsError(f"{path}: {value!r} is not allowed; expected one of {list(choices)}")
        return value
    if origin is types.UnionType:  # e.g. ``bool | tuple[str, ...]``: the first form the value has
        for option in typing.get_args(hint):
            try:
                return convert(value, option, path, meta)
            except ParamsError:
                continue
        forms = " or ".join(
            "true/false"
            if o is bool
            else "a list"
            if typing.get_origin(o) is tuple
            else "null"
            if o is type(None)
            else "a non-empty string"
            if o is str
            else o.__name__
            for o in typing.get_args(hint)
        )
        raise ParamsError(f"{path}: {value!r} is not allowed; expected {forms}")
    if hint is type(None):
        if value is not None:
            raise ParamsError(f"{path}: {value!r} is not null")
        return None
    if origin is tuple:
        (item,) = {a for a in typing.get_args(hint) if a is not Ellipsis}
        if not isinstance(value, list):
            raise ParamsError(f"{path}: {value!r} is not a list")
        return tuple(convert(v, item, f"{path}[{i}]", {}) for i, v in enumerate(value))
    if hint is str:
        if not isinstance(value, str) or not value:
            raise ParamsError(f"{path}: {value!r} is not a non-empty string")
        return value
    if origin in (Mapping, dict) or hint is Mapping:
        return value
    kind = {bool: "bool", int: "int", float: "float"}[hint]
    return scalar(value, kind, meta.get("low"), meta.get("high"), path, meta.get("low_open", False))


def scalar(value: Any, kind: str, low: Any, high: Any, path: str, low_open: bool = False) -> Any:
    if kind == "bool":
        if not isinstance(value, bool):
            raise ParamsError(f"{path}: {value!r} is not a boolean (true/false)")
        return value
    if kind == "str":
        if not isinstance(value, str):
            raise ParamsError(f"{path}: {value!r} is not a string")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ParamsError(f"{path}: {value!r} is not a number; expected {kind}")
    if kind == "int" and not isinstance(value, int):
        raise ParamsError(f"{path}: {value!r} is not an integer")
    value = float(value) if kind == "float" else value
    too_low = low is not None and (value <= low if low_open else value < low)
    if too_low or (high is not None and value > high):
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        raise ParamsError(f"{path}: {value!r} is out of range; expected {'(' if low_open else '['}{lo}, {hi}]")
    return value


def mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ParamsError(f"{where}: expected a mapping, got {type(value).__name__} {value!r}")
    return value
