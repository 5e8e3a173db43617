"""The errors of task graphs, under Rain's names.

``RainException`` is the root of every graph error shoal raises on purpose;
``SessionException`` (a session failed) and its subclass ``TaskException`` (a task
failed, and with it its session) are what a failed graph raises. ``RainWarning``
is the category of the warnings the graph API gives (e.g. a big pickled argument).

>>> issubclass(TaskException, SessionException) and issubclass(SessionException, RainException)
True
"""

from __future__ import annotations

from shoal.graph.ids import ID

__all__ = [
    "ContentTypeError",
    "RainException",
    "RainWarning",
    "SessionException",
    "TaskException",
]


class RainException(Exception):
    """A task-graph error: the root of the errors the graph API raises on purpose."""


class RainWarning(Warning):
    """The category of warnings given by the graph API (``warnings.simplefilter`` it)."""


class ContentTypeError(RainException, ValueError):
    """Data cannot be read or written by its content type (none, or an unknown one).

    A ``ValueError`` too, so code that caught shoal's earlier ``ValueError`` still does.
    """


class SessionException(RainException):
    """The session failed (a task in it failed, or the server ended it).

    ``str(exc)`` is the error that caused the failure.
    """


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
