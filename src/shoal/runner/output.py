"""Where Console lines go: stdout, or the progress display, and the --log file.

Whole lines are written under one lock, so output from many commands and
nodes interleaves by line and never tears.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import TextIO

_lock = threading.Lock()
_printer: Callable[[str], None] | None = None
_tee: TextIO | None = None


def emit(line: str) -> None:
    emit_many([line])


def emit_many(lines: list[str]) -> None:
    with _lock:
        if _printer is not None:
            for line in lines:
                _printer(line)
        else:
            sys.stdout.write("\n".join(lines) + "\n")
            sys.stdout.flush()
        if _tee is not None:
            _tee.write("\n".join(lines) + "\n")


def route(printer: Callable[[str], None] | None, tee: TextIO | None = None) -> None:
    """Send lines to ``printer`` (None: stdout) and copy them to ``tee``."""
    global _printer, _tee
    with _lock:
        _printer, _tee = printer, tee
