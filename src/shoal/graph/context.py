"""``ctx``: what a Python task gets as its first argument on the node."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Protocol

from shoal.graph import content_types
from shoal.graph.attributes import TaskInfo, TaskSpec
from shoal.graph.data_instance import DataInstance
from shoal.graph.exceptions import RainException

__all__ = ["Context"]


class _Described(Protocol):
    """Where a context's spec and info come from, made on first use."""

    @property
    def spec(self) -> TaskSpec: ...

    @property
    def info(self) -> TaskInfo: ...


class Context:
    """The execution context of a running Python task.

    ``ctx.spec`` / ``ctx.info`` are the task's spec and info (``ctx.info.user`` is
    yours to fill), ``ctx.debug(...)`` adds a line to the debug log (shown in the
    error when the task fails), ``ctx.stage_file(path)`` and
    ``ctx.stage_directory(path)`` turn a file or directory the task made into a data
    instance it can return, ``ctx.blob(value, ...)`` and ``ctx.pickled(value)`` make
    one from a value, and ``ctx.function`` is the function being run.

    >>> ctx = Context(TaskSpec(task_type="python"), TaskInfo(), staging_dir=".")
    >>> ctx.debug("Variable a = {}", 11)
    >>> ctx.info.debug
    'Variable a = 11'
    """

    def __init__(
        self,
        spec: TaskSpec,
        info: TaskInfo,
        *,
        staging_dir: str | os.PathLike[str],
        function: Any = None,
    ):
        self._spec: TaskSpec | None = spec
        self._info: TaskInfo | None = info
        self._described: _Described | None = None
        self.function = function
        self._staging = staging_dir  # a Path only once something is staged
        self._staged = 0

    @classmethod
    def described_by(
        cls,
        described: _Described,
        *,
        staging_dir: str | os.PathLike[str],
        function: Any = None,
    ) -> Context:
        """A context whose spec and info come from ``described`` when first asked
        for (most tasks never ask: then they are never made)."""
        ctx = cls.__new__(cls)
        ctx._spec = ctx._info = None
        ctx._described = described
        ctx.function = function
        ctx._staging = staging_dir
        ctx._staged = 0
        return ctx

    @property
    def spec(self) -> TaskSpec:
        """The task's spec."""
        if self._spec is None:
            assert self._described is not None
            self._spec = self._described.spec
        return self._spec

    @spec.setter
    def spec(self, value: TaskSpec) -> None:
        self._spec = value

    @property
    def info(self) -> TaskInfo:
        """The task's info: ``ctx.info.user`` is the task's to fill."""
        if self._info is None:
            assert self._described is not None
            self._info = self._described.info
        return self._info

    @info.setter
    def info(self, value: TaskInfo) -> None:
        self._info = value

    @property
    def staged(self) -> int:
        """How many files or directories were staged (moved into the task's folder)."""
        return self._staged

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
        return self._stage(path, content_type, "stage_file")

    def stage_directory(self, path: str | os.PathLike[str]) -> DataInstance:
        """Take the directory at ``path`` (moved, not copied) as a ``'dir'`` data instance."""
        if not Path(path).is_dir():
            raise NotADirectoryError(f"stage_directory: {path} is not a directory")
        return self._stage(path, None, "stage_directory")

    def blob(
        self, value: Any, content_type: str | None = None, encode: str | None = None
    ) -> DataInstance:
        """A data instance to return, made from ``value``, as ``blob()`` makes an object.

        ``bytes`` as they are (with ``content_type``), a ``str`` as UTF-8 ``'text'``,
        anything else serialised by ``encode`` (whose name becomes the content type).
        """
        if content_type is not None and encode is not None:
            raise RainException("ctx.blob(): give content_type or encode, not both")
        if encode is None and isinstance(value, str):
            encode = content_type or "text"
            content_type = None
        if encode is not None:
            data, content_type = content_types.encode(value, encode)
            return DataInstance(data, content_type=content_type)
        if not isinstance(value, bytes | bytearray | memoryview):
            raise RainException(
                f"ctx.blob() takes bytes or str, not {type(value).__name__}; "
                "give encode= (e.g. 'pickle') for other values"
            )
        return DataInstance(bytes(value), content_type=content_type)

    def pickled(self, value: Any, content_type: str = "pickle") -> DataInstance:
        """``ctx.blob(value, encode=content_type)``: ``'pickle'``, or ``'cloudpickle'``
        for values plain pickle cannot serialise (Rain took the parameter too)."""
        if content_types.validate(content_type) not in ("pickle", "cloudpickle"):
            raise RainException(
                f"ctx.pickled() makes 'pickle' or 'cloudpickle' data, not {content_type!r}; "
                "use ctx.blob(value, encode=...) for other content types"
            )
        return self.blob(value, encode=content_type)

    def _stage(
        self, path: str | os.PathLike[str], content_type: str | None, what: str
    ) -> DataInstance:
        source = Path(path)
        if not source.exists():
            raise FileNotFoundError(f"{what}: nothing at {source}")
        self._staged += 1
        staging = Path(self._staging)
        staging.mkdir(parents=True, exist_ok=True)
        target = staging / f"staged-{self._staged}"
        shutil.move(str(source), target)
        return DataInstance(path=target, content_type=content_type)
