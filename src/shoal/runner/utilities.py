"""``sleep`` and ``log`` for experiment functions."""

from __future__ import annotations

import logging
import time

_log = logging.getLogger("shoal.runner.experiment")


def sleep(seconds: float) -> None:
    """Sleep while command output keeps flowing (it is read on another thread)."""
    time.sleep(seconds)


def log(*args: object) -> None:
    """Log a message from an experiment (shown with -vv, and in --log files)."""
    _log.info(" ".join(str(a) for a in args))
