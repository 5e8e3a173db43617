"""What an experiment function may return."""

from __future__ import annotations

from enum import Enum


class Action(Enum):
    """Return ``Action.RESTART`` to run the experiment again (up to ``max_restarts``)."""

    RESTART = "restart"
