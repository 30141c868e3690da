"""The loss registry: one module per loss in this folder, found by name.

A loss is one file, ``fewshot_dml/losses/<name>.py``, holding a :class:`LossSpec` named ``SPEC``
(its params schema with sources, its factory, and for a loss with proxies its class scores and
centres; for a Metrix-capable loss its soft-label form). :func:`get_spec` imports only the file of
the loss it is asked for, so a train stage loads its own arm's loss and nothing else; :func:`loss_names`
lists the files without importing them. Nothing here imports torch.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Mapping
from pathlib import Path

from fewshot_dml.catalog.loss_spec import LossSpec
from fewshot_dml.core.errors import ParamsError

LOSS_NAME = re.compile(r"[a-z][a-z0-9_]*")  # a loss file's name: a module name and part of file names


class UnknownLossError(ParamsError, KeyError):
    """:func:`get_spec` of a name no loss file defines: a user error (one ``error:`` line) naming the
    valid choices, and a KeyError for the callers that look a loss up."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def loss_names() -> tuple[str, ...]:
    """The names of every loss file in this folder, sorted (no import)."""
    return tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if LOSS_NAME.fullmatch(m.name)))


def loss_file(name: str) -> Path:
    """The file that defines loss ``name`` (a train stage's code dependency; see ``check``)."""
    return Path(__file__).with_name(f"{get_spec(name).name}.py")


def get_spec(name: str) -> LossSpec:
    """The spec of loss ``name``; :class:`UnknownLossError` (a KeyError) naming the valid choices otherwise."""
    if not isinstance(name, str) or name not in loss_names():
        raise UnknownLossError(f"unknown loss {name!r}; expected one of {list(loss_names())}")
    spec = getattr(importlib.import_module(f"{__name__}.{name}"), "SPEC", None)
    if not isinstance(spec, LossSpec) or spec.name != name:
        raise TypeError(f"{__name__}.{name} must define SPEC = LossSpec(name={name!r}, ...)")
    return spec


def all_specs() -> Mapping[str, LossSpec]:
    """Every loss, by name (imports every loss file: for validation of a whole params file and docs)."""
    return {name: get_spec(name) for name in loss_names()}


def describe() -> str:
    """A Markdown table of the registry (one row per loss), for the docs."""
    rows = ["| loss | proxies | needs pairs | Metrix | hyperparameters | what |", "| --- | --- | --- | --- | --- | --- |"]
    for spec in all_specs().values():
        hp = ", ".join(f"`{k}` ({h.kind})" for k, h in spec.hparams.items()) or "-"
        flags = ("yes" if spec.has_proxies else "no", "yes" if spec.needs_pairs else "no", "yes" if spec.has_metrix else "no")
        rows.append(f"| `{spec.name}` | {flags[0]} | {flags[1]} | {flags[2]} | {hp} | {spec.doc} |")
    return "\n".join(rows) + "\n"
