"""What the built-in graph tasks share: their inputs, outputs and errors."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from shoal.graph.attributes import ObjectSpec
from shoal.graph.data_instance import DataInstance, remove_path
from shoal.graph.labeled_list import LabeledList

Inputs = LabeledList[DataInstance] | Sequence[DataInstance]


class TaskFailed(Exception):
    """A built-in task failed; ``str(exc)`` is the message meant for the user."""

    @property
    def message(self) -> str:
        """The error message (the task's ``info.error``)."""
        return str(self.args[0]) if self.args else ""


class TaskCancelled(TaskFailed):
    """The task was stopped because its cancel event was set."""


# --- helpers shared with builtins_execute ---------------------------------------------


def output_path(output_dir: str | os.PathLike[str], index: int) -> Path:
    """Where output ``index`` of a task is created inside ``output_dir``."""
    return Path(output_dir) / f"out-{index}"


def describe_input(inputs: Inputs, index: int) -> str:
    """``input 0 ('label')``, for error messages."""
    label = inputs.get_label(index) if isinstance(inputs, LabeledList) else None
    return f"input {index}" + (f" ({label!r})" if label else "")


def resolve_input(inputs: Inputs, ref: str | int) -> tuple[int, DataInstance]:
    """The input named by a label or a position, with its position; TaskFailed if none."""
    if isinstance(ref, int):
        if not 0 <= ref < len(inputs):
            raise TaskFailed(f"the task has {len(inputs)} input(s); there is no input {ref}")
        return ref, inputs[ref]
    if not isinstance(inputs, LabeledList) or ref not in inputs:
        raise TaskFailed(f"the task has no input labelled {ref!r}")
    index = inputs.index_of_label(ref)
    return index, inputs[index]


def check_relative(path: str, what: str) -> PurePosixPath:
    """``path`` as a relative path that stays inside its root; ValueError otherwise.

    Tasks map data inside a directory they own (a working directory, a new
    directory object); an absolute path or a ``..`` would reach outside it.
    """
    if not isinstance(path, str) or not path.strip("/"):
        raise ValueError(f"{what} needs a non-empty relative path, not {path!r}")
    p = PurePosixPath(path)
    if p.is_absolute() or ".." in p.parts:
        raise ValueError(f"{what} path {path!r} must be relative and must not contain '..'")
    return p


def clone(instance: DataInstance, target: Path) -> None:
    """Put the data of ``instance`` at ``target`` (which must not exist).

    Data on disk is hard-linked file by file when the file system allows it (no
    copy of big data; both sides are immutable objects), copied otherwise; data in
    memory is written out.
    """
    if instance.path is None:
        instance.write(target)
        return
    source = instance.path.resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        if instance.data_type == "dir":
            shutil.copytree(source, target, symlinks=True, copy_function=os.link)
        else:
            os.link(source, target)
    except OSError:
        # Another file system, or hard links refused (e.g. protected_hardlinks):
        # fall back to a copy, after removing any half-made tree.
        if target.exists() or target.is_symlink():
            remove_path(target)
        instance.write(target)


def make_output(
    path: Path, label: str | None, data_type: str, content_type: str | None = None
) -> DataInstance:
    """A DataInstance for an output created at ``path``, its declared type in the spec."""
    spec = ObjectSpec(label=label, data_type=data_type, content_type=content_type)
    return DataInstance(path=path, spec=spec)
