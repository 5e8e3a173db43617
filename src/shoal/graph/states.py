"""The states of tasks and data objects as the client last saw them (Rain's names).

``task.state`` is ``None`` before the submit, ``TaskState.notAssigned`` after it,
and then what the last ``wait()``, ``wait_some()``, ``wait_all()`` or ``update()``
told: ``finished`` or ``failed`` once done. The client is not told the states in
between (``ready``, ``assigned``, ``running``); they are here so that Rain code that
names them still runs. The same holds for ``DataObjectState`` of data objects.

>>> TaskState.finished, TaskState("failed")
(<TaskState.finished: 'finished'>, <TaskState.failed: 'failed'>)
"""

from __future__ import annotations

import enum

__all__ = ["DataObjectState", "TaskState"]


class TaskState(enum.Enum):
    """A task's state, with the names of Rain's ``rpc.common.TaskState``."""

    notAssigned = "notAssigned"  # Rain's spelling
    ready = "ready"
    assigned = "assigned"
    running = "running"
    finished = "finished"
    failed = "failed"


class DataObjectState(enum.Enum):
    """A data object's state, with the names of Rain's ``rpc.common.DataObjectState``."""

    unfinished = "unfinished"
    finished = "finished"
    removed = "removed"
