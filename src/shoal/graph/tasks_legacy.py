"""Rain 0.3's task functions (``tasks.concat``, ``tasks.sleep``, ``tasks.open``,
``tasks.export``, ``tasks.execute``), kept so that graphs written for Rain before
0.4 run unchanged; each makes the same task as its 0.4 class-style successor.

The differences from the 0.4 names are Rain's own: ``sleep`` takes the seconds
first, ``execute`` calls its path lists ``input_files``/``output_files``,
``open``/``export`` are ``Load``/``Store``. One is shoal's: an ``execute`` task's
outputs come in 0.4's order (argument Outputs, ``output_files``, stdout; 0.3 put
stdout first), which only matters to code that reads several outputs by position.

>>> from shoal.graph.session import Session
>>> from shoal.graph.data_object import blob
>>> class Fake:
...     def open_session(self, name): return 1
...     def close_session(self, session_id): pass
>>> with Session(Fake()):
...     t = sleep(0.5, concat((blob("a"), blob("b"))))
>>> t.task_type, t.config.delay
('sleep', 0.5)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shoal.graph.data_object import DataObject
    from shoal.graph.program import Input, Output
    from shoal.graph.task import Task

__all__ = ["concat", "execute", "export", "open", "sleep"]

# The functions import shoal.graph.tasks when called: that module re-exports
# these, so a module-level import here would be circular.


def concat(objs: Iterable[DataObject | Task]) -> Task:
    """Rain 0.3's ``concat(objs)``: ``tasks.Concat(objs)``."""
    from shoal.graph.tasks import Concat

    return Concat(objs)


def sleep(timeout: float, dataobj: DataObject | Task) -> Task:
    """Rain 0.3's ``sleep(timeout, dataobj)`` (seconds first): ``tasks.Sleep(dataobj, timeout)``."""
    from shoal.graph.tasks import Sleep

    if not isinstance(timeout, int | float) or isinstance(timeout, bool):
        # The 0.4 order given to the 0.3 name is an easy slip; say so.
        raise TypeError(
            f"tasks.sleep(timeout, dataobj) takes the seconds first, not {timeout!r} "
            "(tasks.Sleep takes the object first)"
        )
    return Sleep(dataobj, timeout)


def open(filename: str) -> Task:
    """Rain 0.3's ``open(filename)``: ``tasks.Load(filename)``, a blob with the content
    of the file at that absolute path on the node."""
    from shoal.graph.tasks import Load

    return Load(filename)


def export(dataobj: DataObject | Task, filename: str) -> Task:
    """Rain 0.3's ``export(dataobj, filename)``: ``tasks.Store(dataobj, filename)``
    (so an existing file at ``filename`` fails the task, as Store does)."""
    from shoal.graph.tasks import Store

    return Store(dataobj, filename)


def execute(
    args: str | Sequence[Any],
    stdout: bool | str | Output | None = None,
    stdin: DataObject | Task | Input | None = None,
    input_files: Sequence[Input | DataObject | Task] = (),
    output_files: Sequence[Output | str] = (),
    shell: bool = False,
) -> Task:
    """Rain 0.3's ``execute``: ``tasks.Execute`` with ``input_files``/``output_files``
    as ``input_paths``/``output_paths``."""
    from shoal.graph.tasks import Execute

    return Execute(
        args,
        stdout=stdout,
        stdin=stdin,
        input_paths=input_files,
        output_paths=output_files,
        shell=shell,
    )
