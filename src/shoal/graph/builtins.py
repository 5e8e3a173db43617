"""Agent-side implementations of the guide's built-in tasks (no networking).

The execution engine calls these on a node. Each built-in is a function taking an
explicit, frozen config dataclass, the task's input :class:`DataInstance` objects
(a :class:`LabeledList`, so by position and by label) and directories given by the
caller; it returns the outputs as a :class:`LabeledList` of :class:`DataInstance`
whose data are files or directories created inside ``output_dir`` (large outputs
never sit in memory), and raises :class:`TaskFailed` with a message for the user
when the task fails (:class:`TaskCancelled` when stopped by the cancel event).

Outputs are named ``out-<index>`` inside ``output_dir``; ``output_dir`` must exist and
must not already hold those names. Where an output is the same data as an input
(Sleep, SliceDirectory, the parts of MakeDirectory) the files are hard-linked when
possible instead of copied: objects are immutable, so sharing inodes is safe, and
the output still owns its own directory entries.

Execute lives in :mod:`shoal.graph.builtins_execute` and is re-exported here.
"""

from __future__ import annotations

import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

from shoal.graph import content_types
from shoal.graph.data_instance import DataInstance, remove_path
from shoal.graph.labeled_list import LabeledList
from shoal.graph.task_io import (
    Inputs,
    TaskCancelled,
    TaskFailed,
    check_relative,
    clone,
    describe_input,
    make_output,
    output_path,
)

__all__ = [
    "LoadConfig",
    "LoadDirConfig",
    "MakeDirectoryConfig",
    "SleepConfig",
    "SliceDirectoryConfig",
    "StoreConfig",
    "concat",
    "load",
    "load_dir",
    "make_directory",
    "sleep",
    "slice_directory",
    "store",
]


def _single_output(instance: DataInstance) -> LabeledList[DataInstance]:
    # The guide's label of a task's only output.
    return LabeledList([instance], ["output"])


def _single_input(inputs: Inputs, task: str) -> DataInstance:
    if len(inputs) != 1:
        raise TaskFailed(f"{task} takes exactly one input, got {len(inputs)}")
    return inputs[0]


def _check_absolute(path: str, what: str) -> Path:
    if not isinstance(path, str) or not os.path.isabs(path):
        # A relative path would depend on the worker's current directory.
        raise ValueError(f"{what} needs an absolute path on the node, not {path!r}")
    return Path(path)


def _check_path_type(path: str, what: str) -> None:
    if not isinstance(path, str):
        raise TypeError(f"{what} takes a path as a str, not {type(path).__name__}")


def _absolute_at_run(path: str, what: str) -> Path:
    try:
        return _check_absolute(path, what)
    except ValueError as exc:
        raise TaskFailed(str(exc)) from None


# --- Concat ---------------------------------------------------------------------------


def concat(inputs: Inputs, *, output_dir: str | os.PathLike[str]) -> LabeledList[DataInstance]:
    """Concat: one blob with the inputs' bytes in order (no inputs: an empty blob).

    Blobs only; a directory input fails the task, naming it. The data are streamed,
    so inputs on disk are not read into memory.
    """
    for i, instance in enumerate(inputs):
        if instance.data_type != "blob":
            raise TaskFailed(f"Concat takes blobs only, but {describe_input(inputs, i)} is a dir")
    target = output_path(output_dir, 0)
    with open(target, "xb") as out:
        for instance in inputs:
            if instance.path is None:
                out.write(instance.get_bytes())
            else:
                with open(instance.path, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 20)
    return _single_output(make_output(target, "output", "blob"))


# --- Sleep ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SleepConfig:
    """Sleep: ``delay`` in seconds (>= 0)."""

    delay: float

    def __post_init__(self) -> None:
        if not isinstance(self.delay, int | float) or not self.delay >= 0:
            raise ValueError(f"Sleep needs a delay >= 0 seconds, not {self.delay!r}")


def sleep(
    config: SleepConfig,
    inputs: Inputs,
    *,
    output_dir: str | os.PathLike[str],
    cancel: threading.Event | None = None,
) -> LabeledList[DataInstance]:
    """Sleep: after ``config.delay`` seconds, its one input as its output.

    The wait ends as soon as ``cancel`` is set (:class:`TaskCancelled`). The output
    keeps the input's content type and shares its data (hard links, see ``clone``).
    """
    instance = _single_input(inputs, "Sleep")
    if (cancel or threading.Event()).wait(config.delay):
        raise TaskCancelled("Sleep was cancelled")
    target = output_path(output_dir, 0)
    clone(instance, target)
    ct = instance.content_type
    return LabeledList(
        [make_output(target, "output", instance.data_type, None if ct == "dir" else ct)]
    )


# --- Load, LoadDir --------------------------------------------------------------------


@dataclass(frozen=True)
class LoadConfig:
    """Load: the absolute ``path`` of a file on the node; the blob's ``content_type``."""

    path: str
    content_type: str | None = None

    def __post_init__(self) -> None:
        # A relative path is refused when the task runs, not here: Rain failed the
        # task (a TaskException at wait), and code written for it expects that.
        _check_path_type(self.path, "Load")
        if content_types.validate(self.content_type) == "dir":
            raise ValueError("Load makes a blob; use LoadDir for a directory")


@dataclass(frozen=True)
class LoadDirConfig:
    """LoadDir: the absolute ``path`` of a directory on the node."""

    path: str

    def __post_init__(self) -> None:
        _check_path_type(self.path, "LoadDir")


def load(config: LoadConfig, *, output_dir: str | os.PathLike[str]) -> LabeledList[DataInstance]:
    """Load: copy a file of the node into a new blob (the guide's "internalise").

    A copy, not a link: the file may change after the task, the object must not.
    """
    source = _absolute_at_run(config.path, "Load")
    if source.is_dir():
        raise TaskFailed(f"Load: {source} is a directory; use LoadDir for directories")
    target = output_path(output_dir, 0)
    try:
        shutil.copyfile(source, target)
    except OSError as exc:
        remove_path(target)
        raise TaskFailed(f"Load: cannot read {source}: {exc.strerror or exc}") from exc
    return _single_output(make_output(target, "output", "blob", config.content_type))


def load_dir(
    config: LoadDirConfig, *, output_dir: str | os.PathLike[str]
) -> LabeledList[DataInstance]:
    """LoadDir: copy a directory tree of the node into a new dir object.

    Symlinks inside the tree stay symlinks (as ``DataInstance.write`` does).
    """
    source = _absolute_at_run(config.path, "LoadDir")
    if not source.is_dir():
        what = "is not a directory" if source.exists() else "does not exist"
        raise TaskFailed(f"LoadDir: {source} {what}")
    target = output_path(output_dir, 0)
    try:
        shutil.copytree(source, target, symlinks=True)
    except (OSError, shutil.Error) as exc:
        remove_path(target)
        raise TaskFailed(f"LoadDir: cannot copy {source}: {exc}") from exc
    return _single_output(make_output(target, "output", "dir"))


# --- Store ----------------------------------------------------------------------------


@dataclass(frozen=True)
class StoreConfig:
    """Store: the absolute ``path`` to write the input to on the node.

    An existing ``path`` fails the task unless ``overwrite`` is true (then it is
    replaced, a directory as a whole): a graph should not silently destroy data.
    """

    path: str
    overwrite: bool = False

    def __post_init__(self) -> None:
        _check_absolute(self.path, "Store")


def store(config: StoreConfig, inputs: Inputs) -> LabeledList[DataInstance]:
    """Store: write the one input to ``config.path``; no outputs.

    Missing parent directories are created. The data are written beside the target
    and renamed into place, so a reader never sees a half-written file, and a
    failure leaves an existing target untouched.
    """
    instance = _single_input(inputs, "Store")
    target = Path(config.path)
    exists = target.exists() or target.is_symlink()
    if exists and not config.overwrite:
        raise TaskFailed(f"Store: {target} already exists (set overwrite=True to replace it)")
    temporary = target.with_name(f".{target.name}.shoal-store-{os.getpid()}-{id(instance)}")
    try:
        instance.write(temporary)
        if exists:
            if target.is_dir() and not target.is_symlink():
                # rename() cannot replace a directory: move the new tree in after.
                remove_path(target)
            os.replace(temporary, target)
        else:
            os.rename(temporary, target)
    except (OSError, ValueError) as exc:
        if temporary.exists() or temporary.is_symlink():
            remove_path(temporary)
        raise TaskFailed(f"Store: cannot write {target}: {exc}") from exc
    return LabeledList()


# --- MakeDirectory, SliceDirectory ----------------------------------------------------


@dataclass(frozen=True)
class MakeDirectoryConfig:
    """MakeDirectory: ``paths[i]`` is where input ``i`` goes in the new directory.

    Paths are relative, without ``..``, and none may be at or below another (the
    result would depend on the order); a trailing ``/`` is allowed and ignored.
    """

    paths: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "paths", tuple(self.paths))
        parsed = [check_relative(p, "MakeDirectory") for p in self.paths]
        for i, a in enumerate(parsed):
            for b in parsed[i + 1 :]:
                if a == b or a in b.parents or b in a.parents:
                    raise ValueError(f"MakeDirectory paths {str(a)!r} and {str(b)!r} overlap")


def make_directory(
    config: MakeDirectoryConfig, inputs: Inputs, *, output_dir: str | os.PathLike[str]
) -> LabeledList[DataInstance]:
    """MakeDirectory: a dir object with each input at its path.

    Blobs become files, dirs become subdirectories; intermediate directories are
    created.
    """
    if len(config.paths) != len(inputs):
        raise TaskFailed(
            f"MakeDirectory has {len(config.paths)} path(s) but {len(inputs)} input(s)"
        )
    target = output_path(output_dir, 0)
    target.mkdir()
    try:
        for path, instance in zip(config.paths, inputs, strict=True):
            clone(instance, target / path.rstrip("/"))
    except (OSError, ValueError) as exc:
        remove_path(target)
        raise TaskFailed(f"MakeDirectory failed: {exc}") from exc
    return _single_output(make_output(target, "output", "dir"))


@dataclass(frozen=True)
class SliceDirectoryConfig:
    """SliceDirectory: ``path`` inside the dir input; ending with ``/`` means a
    subdirectory (a dir object), otherwise a file (a blob of ``content_type``)."""

    path: str
    content_type: str | None = None

    def __post_init__(self) -> None:
        check_relative(self.path, "SliceDirectory")
        if self.path.endswith("/") and content_types.validate(self.content_type) not in (
            None,
            "dir",
        ):
            raise ValueError("SliceDirectory of a directory ('/' at the end) has no content type")


def slice_directory(
    config: SliceDirectoryConfig,
    inputs: Inputs,
    *,
    output_dir: str | os.PathLike[str],
    scratch_dir: str | os.PathLike[str],
) -> LabeledList[DataInstance]:
    """SliceDirectory: a file (blob) or a subdirectory (dir) taken out of the dir input.

    A directory held in memory (a tar) is unpacked into ``scratch_dir`` first.
    Symlinks that lead out of the input directory are refused.
    """
    instance = _single_input(inputs, "SliceDirectory")
    if instance.data_type != "dir":
        raise TaskFailed("SliceDirectory takes a dir input, but its input is a blob")
    want_dir = config.path.endswith("/")
    rel = config.path.rstrip("/")
    unpacked: Path | None = None
    try:
        if instance.path is None:
            unpacked = Path(scratch_dir) / f"slice-{os.getpid()}-{threading.get_ident()}"
            instance.write(unpacked)
            root = unpacked.resolve()
        else:
            root = instance.path.resolve()
        source = (root / rel).resolve()
        if not source.is_relative_to(root):
            raise TaskFailed(f"SliceDirectory: {config.path!r} leads out of the input directory")
        if not source.exists():
            raise TaskFailed(f"SliceDirectory: {config.path!r} does not exist in the directory")
        if want_dir and not source.is_dir():
            raise TaskFailed(
                f"SliceDirectory: {config.path!r} asks for a directory (ends with '/'), "
                "but it is a file"
            )
        if not want_dir and source.is_dir():
            raise TaskFailed(
                f"SliceDirectory: {config.path!r} is a directory; end the path with '/' "
                "to take a directory"
            )
        target = output_path(output_dir, 0)
        data_type = "dir" if want_dir else "blob"
        clone(DataInstance(path=source, data_type=data_type), target)
        ct = None if want_dir else config.content_type
        return _single_output(make_output(target, "output", data_type, ct))
    finally:
        if unpacked is not None:
            remove_path(unpacked)
