"""The one user-error type: an expected failure the user fixes, printed as one ``error:`` line.

A bad param, a bad or missing input file, a failed download, an unusable model reference: each is a
:class:`UserError` (and keeps the builtin base its callers may already catch). The stage and tool
runner (:mod:`fewshot_dml.core.cli`) prints it without a traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """An expected failure that names the bad value and what was expected."""


class ParamsError(UserError, ValueError):
    """A value in params.yaml (or another settings file) is unknown, missing, mistyped or out of range."""


class FetchError(UserError, RuntimeError):
    """A dataset could not be read: names the file or URL and what was wrong with it."""


class ModelError(UserError, ValueError):
    """``train.model`` cannot be resolved: names the reference and what was wrong with it."""
