"""Logging set-up for the stage scripts (called from ``main()``, never at import)."""

from __future__ import annotations

import logging
import os


def setup_logging() -> None:
    level = os.environ.get("FEWSHOT_DML_LOG", "INFO").upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
