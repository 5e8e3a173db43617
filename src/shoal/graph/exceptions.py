"""The errors of a failed task graph."""

from __future__ import annotations

from shoal.graph.ids import ID
from shoal.graph.transport import SessionException

__all__ = ["SessionException", "TaskException"]


class TaskException(SessionException):
    """A task failed, and with it its session.

    ``str(exc)`` names the task, where it was created, the error (a traceback or
    the program's stderr) and the task's debug log. ``task_id`` is its ID and
    ``debug`` its debug log.
    """

    def __init__(self, message: str, *, task_id: ID | None = None, debug: str = "") -> None:
        super().__init__(message)
        self.task_id = task_id
        self.debug = debug
