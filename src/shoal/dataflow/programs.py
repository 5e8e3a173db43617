"""FISSION's executable jobs: a program given its pipes as ``-i``/``-o`` arguments.

``ExecutableJob`` subclasses with an ``EXECUTABLE`` (and the dynamic forms
that take it as an argument) start ``EXECUTABLE PARAMETERS -i <in> ... -o
<out> ...`` in the job's folder: the paths of named pipes for
``ExecutableJob``, file descriptor numbers for ``MARVELOJob``. Each value
crosses them as the pipe frames it (``BLOCK_SIZE`` bytes, one pickle, one
JSON line), after ``HEAD_SIZE`` head bytes when the job has ``HEAD = True``.
What the program prints shows on the user's console like a Python job's.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

from shoal.dataflow.jobs import BaseJob, JobContext
from shoal.dataflow.pipes import BasePipe, BytesPipe, ReadJSONMixIn, WriteJSONMixIn

__all__ = [
    "DynamicExecutableJob",
    "DynamicMARVELOJob",
    "ExecutableJob",
    "MARVELOJob",
    "serve_program",
]


class ExecutableJob(BaseJob):
    """An external program, started once, fed its inputs and read for its outputs.

    Two forms. FISSION's: a subclass sets ``EXECUTABLE`` (and optionally
    ``PARAMETERS``, ``INPUT_FLAG``, ``OUTPUT_FLAG``), and the program gets
    ``-i <named pipe>`` per input and ``-o <named pipe>`` per output (see
    :mod:`shoal.dataflow.programs`). shoal's: ``ExecutableJob(executable,
    args, inputs=..., outputs=...)``: with one input the program reads it on
    stdin, with one output it writes it on stdout; with more, input pipe
    ``P`` is the file descriptor named by the environment variable
    ``SHOAL_IN_P`` and output pipe ``P`` the one named by ``SHOAL_OUT_P``.
    Values are lines of text (JSON for JSON pipes), except on a
    :class:`BytesPipe`, whose values are raw blocks of its size.
    """

    EXECUTABLE: ClassVar[str | None] = None
    PARAMETERS: ClassVar[str | None] = None
    INPUT_FLAG: ClassVar[str] = "-i"
    OUTPUT_FLAG: ClassVar[str] = "-o"
    PASS_FDS: ClassVar[bool] = False
    CREATES_SUBPROCESS: ClassVar[bool] = True

    def __init__(
        self,
        executable: Any = None,
        args: Any = (),
        inputs: Iterable[BasePipe] | None = None,
        outputs: Iterable[BasePipe] | None = None,
        env: dict[str, str] | None = None,
        *extra: Any,
        **kwargs: Any,
    ) -> None:
        if isinstance(executable, list | tuple):
            # FISSION's positional form: ExecutableJob(inputs, outputs).
            inputs, outputs = executable, (list(args) or outputs)
            executable, args = None, ()
        # Arguments beyond these are ignored, as BaseJob ignores them.
        super().__init__(inputs, outputs, *extra, **kwargs)
        if executable is None and not self.EXECUTABLE:
            raise TypeError(
                f"{type(self).__name__} needs a program: set EXECUTABLE on the class "
                "or pass ExecutableJob(executable, args, ...)"
            )
        self.executable = executable
        self.args = list(args)
        self.env = dict(env or {})

    def _setup_keywords(self) -> dict[str, Any]:
        # FISSION's ExecutableJob.start() also told setup() where output went
        # (False: not to a debug window, which shoal does not have).
        return {**super()._setup_keywords(), "redirect_stdout_stderr": False}

    def serve(self, ctx: JobContext) -> None:
        if self.executable is None:
            serve_program(self, ctx)
            return
        env = {**os.environ, **self.env}
        keep: list[int] = []
        writers: list[Any] = []
        readers: list[Any] = []
        stdin = subprocess.PIPE if len(self.inputs) == 1 else subprocess.DEVNULL
        stdout = subprocess.PIPE if len(self.outputs) == 1 else None
        child_ends: list[int] = []
        if len(self.inputs) > 1:
            for pipe in self.inputs:
                r, w = os.pipe()
                env[f"SHOAL_IN_{pipe.id}"] = str(r)
                child_ends.append(r)
                writers.append(os.fdopen(w, "wb"))
        if len(self.outputs) > 1:
            for pipe in self.outputs:
                r, w = os.pipe()
                env[f"SHOAL_OUT_{pipe.id}"] = str(w)
                child_ends.append(w)
                readers.append(os.fdopen(r, "rb"))
        keep = child_ends
        proc = subprocess.Popen(
            [self.executable, *self.args],
            stdin=stdin,
            stdout=stdout,
            env=env,
            cwd=self.directory,
            pass_fds=keep,
        )
        for fd in child_ends:
            os.close(fd)
        if proc.stdin is not None:
            writers = [proc.stdin]
        if proc.stdout is not None:
            readers = [proc.stdout]
        threads = [
            threading.Thread(target=self._read, args=(ctx, i, stream), daemon=True)
            for i, stream in enumerate(readers)
        ]
        for thread in threads:
            thread.start()
        try:
            if self.inputs:
                for values in ctx.rounds():
                    for pipe, stream, value in zip(self.inputs, writers, values, strict=True):
                        stream.write(_to_bytes(pipe, value))
                        stream.flush()
                for stream in writers:
                    stream.close()
            for thread in threads:
                while thread.is_alive() and not ctx.stopping:
                    thread.join(0.2)
        except (BrokenPipeError, OSError):
            pass  # the program exited; its outputs end with it
        finally:
            if proc.poll() is None:
                proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def _read(self, ctx: JobContext, index: int, stream: Any) -> None:
        pipe = self.outputs[index]
        while not ctx.stopping:
            if isinstance(pipe, BytesPipe):
                data = stream.read(pipe.size)
                if len(data) < pipe.size:
                    return
                ctx.emit_to(index, data)
                continue
            line = stream.readline()
            if not line:
                return
            text = line.decode(errors="replace").rstrip("\r\n")
            ctx.emit_to(index, _from_text(pipe, text))


def _to_bytes(pipe: BasePipe, value: Any) -> bytes:
    # Any pipe written as JSON lines (JSONPipe or a user's WriteJSONMixIn pipe).
    if isinstance(pipe, BytesPipe | WriteJSONMixIn):
        return pipe.to_wire(value)
    if isinstance(value, bytes):
        return value.rstrip(b"\n") + b"\n"
    return f"{value}\n".encode()


def _from_text(pipe: BasePipe, text: str) -> Any:
    if isinstance(pipe, ReadJSONMixIn):
        return pipe.unpack(text)
    return text


class MARVELOJob(ExecutableJob):
    """An ``ExecutableJob`` handed file descriptor numbers instead of pipe paths."""

    PASS_FDS = True


class DynamicExecutableJob(ExecutableJob):
    """An ``ExecutableJob`` defined in the config, without a class of its own::

        DynamicExecutableJob("my_net/source/filter", "./filter", "--gain 2",
                             inputs=[BytesPipe(1, 4)], outputs=[BytesPipe(2, 4)])

    ``dependencies`` is the folder copied as the job's folder (the program
    runs there), ``executable`` the command in it, ``parameters`` extra
    arguments, ``groups`` the job's GROUPS ('' keeps the default).
    """

    def __init__(
        self,
        dependencies: str | None,
        executable: str,
        parameters: str = "",
        groups: str | list[str] = "",
        input_flag: str = "-i",
        output_flag: str = "-o",
        head: bool = False,
        inputs: list[BasePipe] | None = None,
        outputs: list[BasePipe] | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> None:
        if not isinstance(executable, str) or not executable.split():
            raise TypeError(
                f"{type(self).__name__}: executable must be a command, got {executable!r}"
            )
        if not isinstance(head, bool):
            raise TypeError(f"{type(self).__name__}: head must be a bool, got {head!r}")
        self.EXECUTABLE = executable  # type: ignore[misc]
        # Extra arguments are ignored, as BaseJob ignores them.
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.DEPENDENCIES = dependencies  # type: ignore[misc]
        self.PARAMETERS = parameters  # type: ignore[misc]
        self.INPUT_FLAG = input_flag  # type: ignore[misc]
        self.OUTPUT_FLAG = output_flag  # type: ignore[misc]
        self.HEAD = head  # type: ignore[misc]
        if groups != "":
            self.GROUPS = groups  # type: ignore[misc]


class DynamicMARVELOJob(DynamicExecutableJob):
    """A ``DynamicExecutableJob`` handed file descriptor numbers (what ``XML_FILE`` jobs are)."""

    PASS_FDS = True


def command(job: ExecutableJob, inputs: list[str], outputs: list[str]) -> list[str]:
    """The program's argument list, split on whitespace as FISSION did."""
    args = str(job.EXECUTABLE).split()
    if job.PARAMETERS:
        args += str(job.PARAMETERS).split()
    for path in inputs:
        args += [job.INPUT_FLAG, path]
    for path in outputs:
        args += [job.OUTPUT_FLAG, path]
    return args


class _Ends:
    """The program's side of its pipes, and ours."""

    def __init__(self, job: ExecutableJob) -> None:
        self.job = job
        self.arguments_in: list[str] = []
        self.arguments_out: list[str] = []
        self.child_fds: list[int] = []
        self.writers: list[BinaryIO | None] = []
        self.fifo_out: list[Path] = []
        self.readers: list[Any] = []
        if job.PASS_FDS:
            for _ in job.inputs:
                r, w = os.pipe()
                self.arguments_in.append(str(r))
                self.child_fds.append(r)
                self.writers.append(os.fdopen(w, "wb"))
            for _ in job.outputs:
                r, w = os.pipe()
                self.arguments_out.append(str(w))
                self.child_fds.append(w)
                self.readers.append(os.fdopen(r, "rb"))
            return
        folder = job.directory / "fifo" / str(job.id)
        folder.mkdir(parents=True, exist_ok=True)
        for kind, pipes in (("in", job.inputs), ("out", job.outputs)):
            for pipe in pipes:
                path = folder / f"{pipe.id}.fifo"
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                os.mkfifo(path)
                if kind == "in":
                    self.arguments_in.append(str(path))
                    # Read-write: the open does not wait for the program (Linux).
                    self.writers.append(os.fdopen(os.open(path, os.O_RDWR), "wb"))
                else:
                    self.arguments_out.append(str(path))
                    self.fifo_out.append(path)
                    self.readers.append(None)  # opened by its reader thread

    def reader(self, index: int) -> BinaryIO:
        if self.readers[index] is None:
            # Waits until the program opens its end for writing.
            self.readers[index] = open(self.fifo_out[index], "rb")  # noqa: SIM115
        return self.readers[index]

    def release(self) -> None:
        for path in self.fifo_out:
            # A reader still waiting for the program to open its end gets EOF.
            with contextlib.suppress(OSError):
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        for stream in [*self.writers, *self.readers]:
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def serve_program(job: ExecutableJob, ctx: JobContext) -> None:
    """Run ``job``'s program for the job's life, its pipes as arguments."""
    ends = _Ends(job)
    args = command(job, ends.arguments_in, ends.arguments_out)
    try:
        proc = subprocess.Popen(
            args,
            cwd=job.directory,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            pass_fds=ends.child_fds,
        )
    except OSError as exc:
        ends.release()
        ctx.failed()
        print(f"job {job.label}: cannot start {args}: {exc}", file=sys.stderr)
        return
    for fd in ends.child_fds:
        os.close(fd)
    threads = [threading.Thread(target=_echo, args=(proc.stdout,), daemon=True)]
    threads += [
        threading.Thread(target=_read_output, args=(job, ctx, ends, i), daemon=True)
        for i in range(len(job.outputs))
    ]
    for thread in threads:
        thread.start()
    try:
        if job.inputs:
            _feed(job, ctx, ends)
        for thread in threads[1:]:
            while thread.is_alive() and not ctx.stopping and proc.poll() is None:
                thread.join(0.2)
            thread.join(1.0)  # what the program wrote before it exited
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            code = proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        ends.release()
        threads[0].join(2.0)
    if code not in (0, -15) and not ctx.stopping:
        ctx.failed()
        print(f"job {job.label}: {args[0]} exited with {code}", file=sys.stderr)


def _feed(job: ExecutableJob, ctx: JobContext, ends: _Ends) -> None:
    try:
        for values in ctx.rounds():
            heads = ctx.in_heads
            for index, (pipe, value) in enumerate(zip(job.inputs, values, strict=True)):
                stream = ends.writers[index]
                assert stream is not None
                block = value if pipe.BLOCK_COUNT > 1 and isinstance(value, list) else [value]
                block_heads = heads[index] if index < len(heads) else 0
                for position, one in enumerate(block):
                    if job.HEAD:
                        head = (
                            block_heads[position] if isinstance(block_heads, list) else block_heads
                        )
                        stream.write(int(head or 0).to_bytes(job.head_size, "big"))
                    pipe.write_stream(stream, pipe.pack(one))
                stream.flush()
    except (BrokenPipeError, OSError):
        pass  # the program exited; what it wrote still counts
    finally:
        for stream in ends.writers:
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def _read_output(job: ExecutableJob, ctx: JobContext, ends: _Ends, index: int) -> None:
    pipe = job.outputs[index]
    try:
        stream = ends.reader(index)
        while not ctx.stopping:
            head = 0
            if job.HEAD:
                raw = stream.read(job.head_size)
                if len(raw) < job.head_size:
                    return
                head = int.from_bytes(raw, "big")
            value = pipe.unpack(pipe.read_stream(stream))
            ctx.emit_to(index, value, head)
    except (EOFError, OSError, ValueError):
        return


def _echo(stream: BinaryIO) -> None:
    for line in stream:
        print(line.decode(errors="replace").rstrip("\r\n"))
