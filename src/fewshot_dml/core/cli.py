"""Running a stage script or a ``python -m`` tool: logging set-up, and a user error as one clear line.

A bad param, a bad or missing input file, a failed download or a diverged run is the user's to fix,
and a 20-line traceback hides the one line that says what to fix. Those errors print
``error: <message>`` on stderr and exit with status 2; ``FEWSHOT_DML_TRACEBACK=1`` re-raises them
with the traceback. Anything else (a bug) keeps Python's traceback.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from fewshot_dml.core.errors import UserError
from fewshot_dml.core.logs import setup_logging
from fewshot_dml.core.timing import record_stage

TRACEBACK_ENV = "FEWSHOT_DML_TRACEBACK"
# Every UserError (core.errors); besides, a bad value found by a library is a ValueError, a missing file an
# OSError, a diverged run a FloatingPointError, a missing optional library an ImportError saying what to install.
USER_ERRORS: tuple[type[BaseException], ...] = (UserError, ValueError, OSError, FloatingPointError, ImportError)
EXIT_USER_ERROR = 2


def run_stage(
    main: Callable[[list[str] | None], Mapping[str, float] | None], argv: list[str] | None = None, started: float | None = None
) -> None:
    """Call ``main(argv)`` with logging set up; a user error exits 2 with one line on stderr.

    ``started`` (``time.perf_counter()`` before the script's imports) and the phase seconds that
    ``main`` may return go to the stage's timing record (:mod:`fewshot_dml.core.timing`).
    """
    main_started = time.perf_counter()
    phases = run_tool(main, argv)
    record_stage(main_started if started is None else started, main_started, phases if isinstance(phases, Mapping) else None)


def run_tool(main: Callable[[list[str] | None], Any], argv: list[str] | None = None, errors: tuple[type[BaseException], ...] = ()) -> Any:
    """Call ``main(argv)`` with logging set up; a user error (or one of ``errors``) exits 2 with one line
    on stderr, unless ``FEWSHOT_DML_TRACEBACK=1``. The stages and every ``python -m`` tool run through it."""
    setup_logging()
    try:
        return main(argv)
    except (*USER_ERRORS, *errors) as err:
        if os.environ.get(TRACEBACK_ENV, "") not in ("", "0"):
            raise
        message = " ".join(str(err).split()) or type(err).__name__
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR) from None
