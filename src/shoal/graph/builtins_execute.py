"""The Execute built-in: run an external program in a fresh working directory.

See :func:`execute`. Shared helpers and :class:`TaskFailed` come from
:mod:`shoal.graph.builtins`, which re-exports everything here.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import signal
import subprocess
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from shoal.graph import content_types
from shoal.graph.data_instance import DataInstance, remove_path
from shoal.graph.labeled_list import LabeledList
from shoal.graph.task_io import (
    Inputs,
    TaskCancelled,
    TaskFailed,
    check_relative,
    describe_input,
    make_output,
    output_path,
    resolve_input,
)

__all__ = ["ArgInput", "ArgOutput", "ExecuteConfig", "InputMapping", "OutputMapping", "execute"]

_STDERR_TAIL = 4000  # characters of stderr kept in an error message
_POLL = 0.02  # seconds between checks of the cancel event while the program runs


@dataclass(frozen=True)
class InputMapping:
    """Map input ``input`` (a label or a position) at ``path`` in the working directory.

    ``path`` defaults to the label. Read-only by link unless ``write`` (a fresh,
    writable copy).
    """

    input: str | int
    path: str | None = None
    write: bool = False

    def __post_init__(self) -> None:
        if self.path is not None:
            check_relative(self.path, "an input")
        elif not isinstance(self.input, str):
            raise ValueError(f"input {self.input} is given by position and needs a path")

    def target(self) -> str:
        """The relative path in the working directory."""
        return self.path if self.path is not None else str(self.input)


@dataclass(frozen=True)
class ArgInput(InputMapping):
    """An input whose path is also placed in argv. Without ``path`` a generated name is
    used (the guide's data object given directly as an argument)."""

    def __post_init__(self) -> None:
        if self.path is not None:
            check_relative(self.path, "an input")


@dataclass(frozen=True)
class OutputMapping:
    """Output ``label``: the file (``data_type='blob'``) or directory (``'dir'``) the
    program leaves at ``path`` (default: the label) in its working directory."""

    label: str
    path: str | None = None
    content_type: str | None = None
    data_type: str = "blob"

    def __post_init__(self) -> None:
        if not isinstance(self.label, str) or not self.label:
            raise ValueError(f"an output needs a non-empty label, not {self.label!r}")
        check_relative(self.target(), f"output {self.label!r}")
        if self.data_type not in ("blob", "dir"):
            raise ValueError(f"data_type must be 'blob' or 'dir', not {self.data_type!r}")
        ct = content_types.validate(self.content_type)
        if (ct == "dir") != (self.data_type == "dir") and ct is not None:
            raise ValueError(f"output {self.label!r}: content type {ct!r} with a {self.data_type}")

    def target(self) -> str:
        """The relative path in the working directory."""
        return self.path if self.path is not None else self.label


@dataclass(frozen=True)
class ArgOutput(OutputMapping):
    """An output whose path is also placed in argv."""


Arg = str | ArgInput | ArgOutput


@dataclass(frozen=True)
class ExecuteConfig:
    """What Execute runs.

    ``args``: a string is split shell-like (or, with ``shell``, run whole by
    ``/bin/sh -c``); a sequence is the argv, with :class:`ArgInput` /
    :class:`ArgOutput` replaced by their paths (with ``shell``, the items are
    joined by spaces into one command, placeholders quoted, strings as written).
    ``stdin``: an input (label or position) fed to the program. ``stdout``: an
    output made from the program's standard output (its ``path`` is ignored).
    ``env``: variables added to the node's environment. ``cpus``: the reservation,
    for the scheduler; Execute itself does not enforce it.
    """

    args: str | tuple[Arg, ...]
    shell: bool = False
    input_paths: tuple[InputMapping, ...] = ()
    output_paths: tuple[OutputMapping, ...] = ()
    stdin: str | int | None = None
    stdout: OutputMapping | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    cpus: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.args, str):
            object.__setattr__(self, "args", tuple(self.args))
            for a in self.args:
                if not isinstance(a, str | ArgInput | ArgOutput):
                    raise ValueError(f"an Execute argument is a str, ArgInput or ArgOutput: {a!r}")
        object.__setattr__(self, "input_paths", tuple(self.input_paths))
        object.__setattr__(self, "output_paths", tuple(self.output_paths))
        if not self.args:
            raise ValueError("Execute needs a program to run")
        labels = [o.label for o in self.outputs()]
        duplicates = sorted({label for label in labels if labels.count(label) > 1})
        if duplicates:
            raise ValueError(f"Execute has more than one output labelled {duplicates}")
        if self.stdout is not None and self.stdout.data_type != "blob":
            raise ValueError("stdout makes a blob output, not a dir")

    def outputs(self) -> list[OutputMapping]:
        """The outputs in the order :func:`execute` returns them: the ``ArgOutput`` s in
        ``args``, then ``output_paths``, then ``stdout``."""
        outs = (
            [a for a in self.args if isinstance(a, ArgOutput)]
            if not isinstance(self.args, str)
            else []
        )
        outs += self.output_paths
        if self.stdout is not None:
            outs.append(self.stdout)
        return outs


def execute(
    config: ExecuteConfig,
    inputs: Inputs,
    *,
    output_dir: str | os.PathLike[str],
    scratch_dir: str | os.PathLike[str],
    cancel: threading.Event | None = None,
) -> LabeledList[DataInstance]:
    """Execute: run the program; return its outputs, labelled, in ``config.outputs()`` order.

    A fresh directory inside ``scratch_dir`` is the program's working directory and
    is removed afterwards. Inputs are mapped by link (read-only) unless
    ``write=True``. The program runs in its own process group; whatever is left of
    the group when the program exits is killed, and setting ``cancel`` kills the
    group at once (:class:`TaskCancelled`). A non-zero exit, a missing output or an
    output of the wrong kind fails the task (:class:`TaskFailed`).
    """
    if cancel is not None and cancel.is_set():
        raise TaskCancelled("Execute was cancelled before it started")
    task_dir = Path(tempfile.mkdtemp(prefix="execute-", dir=scratch_dir))
    work = task_dir / "work"
    work.mkdir()
    created: list[Path] = []
    try:
        argv = _map_and_build_argv(config, inputs, work)
        rc, stderr_path = _run(config, inputs, argv, task_dir, work, output_dir, created, cancel)
        if rc != 0:
            how = f"was killed by signal {-rc}" if rc < 0 else f"exited with code {rc}"
            raise TaskFailed(f"program {argv[0]!r} {how}" + _stderr_tail(stderr_path))
        return _collect(config, work, output_dir, created)
    except BaseException:
        # A failed task leaves nothing in the caller's output directory.
        for p in created:
            if p.exists() or p.is_symlink():
                remove_path(p)
        raise
    finally:
        remove_path(task_dir)


def _map_and_build_argv(config: ExecuteConfig, inputs: Inputs, work: Path) -> list[str]:
    def map_input(mapping: InputMapping, rel: str) -> None:
        index, instance = resolve_input(inputs, mapping.input)
        target = work / rel
        try:
            if mapping.write:
                instance.write(target)
            else:
                instance.link(target)
        except (OSError, ValueError) as exc:
            what = describe_input(inputs, index)
            raise TaskFailed(f"cannot map {what} at {rel!r}: {exc}") from exc

    for mapping in config.input_paths:
        map_input(mapping, mapping.target())
    if isinstance(config.args, str):
        return ["/bin/sh", "-c", config.args] if config.shell else shlex.split(config.args)
    items: list[str] = []
    for a in config.args:
        if isinstance(a, ArgInput):
            # A random name cannot collide with the program's own files or paths.
            rel = a.path if a.path is not None else f"input-{secrets.token_hex(6)}"
            map_input(a, rel)
            items.append(shlex.quote(rel) if config.shell else rel)
        elif isinstance(a, ArgOutput):
            items.append(shlex.quote(a.target()) if config.shell else a.target())
        else:
            items.append(a)
    return ["/bin/sh", "-c", " ".join(items)] if config.shell else items


def _run(
    config: ExecuteConfig,
    inputs: Inputs,
    argv: list[str],
    task_dir: Path,
    work: Path,
    output_dir: str | os.PathLike[str],
    created: list[Path],
    cancel: threading.Event | None,
) -> tuple[int, Path]:
    stdin_path: Path | None = None
    if config.stdin is not None:
        index, instance = resolve_input(inputs, config.stdin)
        if instance.data_type != "blob":
            raise TaskFailed(f"stdin needs a blob, but {describe_input(inputs, index)} is a dir")
        if instance.path is not None:
            stdin_path = instance.path
        else:
            # Outside the working directory: the program should not see it as a file.
            stdin_path = task_dir / "stdin"
            instance.write(stdin_path)
    stdout_path: Path | None = None
    if config.stdout is not None:
        stdout_path = output_path(output_dir, len(config.outputs()) - 1)
        if stdout_path.exists() or stdout_path.is_symlink():
            # Checked before it is counted as ours, so that cleanup leaves it alone.
            raise TaskFailed(f"stdout: {stdout_path} already exists")
        created.append(stdout_path)
    stderr_path = task_dir / "stderr"
    env = {**os.environ, **config.env}
    with (
        open(stdin_path, "rb") if stdin_path else open(os.devnull, "rb") as stdin,
        open(stdout_path, "xb") if stdout_path else open(os.devnull, "wb") as stdout,
        open(stderr_path, "wb") as stderr,
    ):
        try:
            proc = subprocess.Popen(
                argv,
                cwd=work,
                stdin=stdin,
                stdout=stdout,
                stderr=stderr,
                env=env,
                start_new_session=True,  # its own process group, to kill it whole
            )
        except OSError as exc:
            raise TaskFailed(f"cannot run {argv[0]!r}: {exc.strerror or exc}") from exc
        try:
            while True:
                try:
                    rc = proc.wait(timeout=_POLL)
                    break
                except subprocess.TimeoutExpired:
                    if cancel is not None and cancel.is_set():
                        _kill_group(proc.pid)
                        proc.wait()
                        raise TaskCancelled(f"Execute of {argv[0]!r} was cancelled") from None
        except BaseException:
            _kill_group(proc.pid)
            proc.wait()
            raise
        # Background children of the program would outlive the task and its working
        # directory; the task owns the whole group.
        _kill_group(proc.pid)
    return rc, stderr_path


def _kill_group(pgid: int) -> None:
    # The group may be gone already.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _stderr_tail(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - _STDERR_TAIL))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    if not text.strip():
        return " (no stderr output)"
    prefix = "...\n" if size > _STDERR_TAIL else ""
    return f"; stderr:\n{prefix}{text}"


def _collect(
    config: ExecuteConfig, work: Path, output_dir: str | os.PathLike[str], created: list[Path]
) -> LabeledList[DataInstance]:
    result: LabeledList[DataInstance] = LabeledList()
    outputs = config.outputs()
    for index, out in enumerate(outputs):
        target = output_path(output_dir, index)
        if out is config.stdout and index == len(outputs) - 1:
            result.append(make_output(target, out.label, "blob", out.content_type), out.label)
            continue
        source = work / out.target()
        if not (source.exists() or source.is_symlink()):
            raise TaskFailed(f"output {out.label!r}: the program did not create {out.target()!r}")
        is_dir = source.is_dir()
        if is_dir != (out.data_type == "dir"):
            kind = "directory" if is_dir else "file"
            raise TaskFailed(
                f"output {out.label!r}: {out.target()!r} is a {kind}, but a "
                f"{out.data_type} was declared"
            )
        if target.exists() or target.is_symlink():
            raise TaskFailed(f"output {out.label!r}: {target} already exists")
        created.append(target)
        if source.is_symlink():
            # E.g. a link to a mapped input: the link would dangle once the working
            # directory is gone, so the output gets the data itself.
            DataInstance(path=source.resolve()).write(target)
        else:
            # A rename when possible: a big output is not copied.
            if _same_fs(source, target):
                os.replace(source, target)
            else:
                DataInstance(path=source).write(target)
        result.append(make_output(target, out.label, out.data_type, out.content_type), out.label)
    return result


def _same_fs(source: Path, target: Path) -> bool:
    return source.stat().st_dev == target.parent.stat().st_dev
