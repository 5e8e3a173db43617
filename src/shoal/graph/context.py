"""``ctx``: what a Python task gets as its first argument on the node."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from shoal.graph.attributes import TaskInfo, TaskSpec
from shoal.graph.data_instance import DataInstance

__all__ = ["Context"]


class Context:
    """The execution context of a running Python task.

    ``ctx.spec`` / ``ctx.info`` are the task's spec and info (``ctx.info.user`` is
    yours to fill), ``ctx.debug(...)`` adds a line to the debug log (shown in the
    error when the task fails), and ``ctx.stage_file(path)`` turns a file or
    directory the task made into a data instance it can return.

    >>> ctx = Context(TaskSpec(task_type="python"), TaskInfo(), staging_dir=".")
    >>> ctx.debug("Variable a = {}", 11)
    >>> ctx.info.debug
    'Variable a = 11'
    """

    def __init__(self, spec: TaskSpec, info: TaskInfo, *, staging_dir: str | os.PathLike[str]):
        self.spec = spec
        self.info = info
        self._staging = Path(staging_dir)
        self._staged = 0

    def debug(self, message: str, *args: Any, **kwargs: Any) -> None:
        """Append ``message.format(*args, **kwargs)`` to the task's debug log."""
        text = str(message)
        if "{" in text and (args or kwargs):
            text = text.format(*args, **kwargs)
        elif args:
            # ctx.debug("Running at governor", name): the arguments follow the text.
            text = " ".join([text, *map(str, args)])
        self.info.append_debug(text)

    def stage_file(
        self, path: str | os.PathLike[str], content_type: str | None = None
    ) -> DataInstance:
        """Take the file or directory at ``path`` (moved, not copied) as a data instance.

        Return it (or put it among the returned outputs) to make it an output
        without reading it into memory.
        """
        source = Path(path)
        if not source.exists():
            raise FileNotFoundError(f"stage_file: nothing at {source}")
        self._staged += 1
        self._staging.mkdir(parents=True, exist_ok=True)
        target = self._staging / f"staged-{self._staged}"
        shutil.move(str(source), target)
        return DataInstance(path=target, content_type=content_type)
