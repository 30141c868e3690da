"""``python -m fewshot_dml.cluster``: see :mod:`fewshot_dml.cluster.launch`."""

from __future__ import annotations

from fewshot_dml.cluster.launch import command

command()
