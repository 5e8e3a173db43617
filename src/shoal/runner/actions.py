"""What an experiment function may return, and what a command's ``wait()`` may."""

from __future__ import annotations

from enum import Enum


class Action(Enum):
    """Return ``Action.RESTART`` to run the experiment again (up to ``max_restarts``)."""

    RESTART = "restart"


class ReturnCode(Enum):
    """Return codes that are not numbers: ``wait()`` of a command that ran out of time.

    ::

        if s.run_cmd("./bench", timeout=60).wait() == ReturnCode.TIMEOUT:
            return Action.RESTART
    """

    TIMEOUT = 1
