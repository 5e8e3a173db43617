"""The errors of task graphs, under Rain's names.

``RainException`` is the root of every graph error shoal raises on purpose;
``SessionException`` (a session failed) and its subclass ``TaskException`` (a task
failed, and with it its session) are what a failed graph raises. ``RainWarning``
is raised for a remote function's argument too big to pickle into a task.

>>> issubclass(TaskException, SessionException) and issubclass(SessionException, RainException)
True
"""

from __future__ import annotations

from shoal.graph.ids import ID

__all__ = [
    "ContentTypeError",
    "RainException",
    "RainTypeError",
    "RainWarning",
    "SessionException",
    "TaskException",
]


class RainException(Exception):
    """A task-graph error: the root of the errors the graph API raises on purpose."""


class RainWarning(Warning):
    """Raised, as in Rain, when a remote function's pickled argument (or the function)
    is too big to travel in a task's config (see ``remote.PICKLE_ARG_SIZE_LIMIT``).

    It goes through :mod:`warnings`: a filter of the program's own for this category
    decides (``warnings.simplefilter("always", RainWarning)`` or ``pytest.warns``
    only show or record it), and without one it is raised.
    """


class RainTypeError(RainException, TypeError):
    """A value of the wrong kind where the graph API needs a data object (a ``str``
    given as an input, ``blob(123)``): Rain raised a ``RainException``; a
    ``TypeError`` too, so code that caught shoal's earlier ``TypeError`` still does.
    """


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
