"""Jobs: the units of a dataflow network, joined by pipes.

A job's ``run`` is called once per round with one value per input pipe (in
the order the pipes are listed); what it returns goes to its outputs. A job
without inputs is a source: its ``run`` may be a generator, whose every
value is one round.
"""

from __future__ import annotations

import csv
import inspect
import os
import subprocess
import sys
import threading
import traceback
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar, Protocol

from shoal.dataflow.pipes import BasePipe, BytesPipe, JSONPipe

__all__ = [
    "BaseJob",
    "CSVSinkJob",
    "ExecutableJob",
    "InteractiveJob",
    "JobContext",
    "LocalJob",
    "PythonJob",
]


class JobContext(Protocol):
    """What the runtime offers a running job (see :mod:`shoal.dataflow.runtime`)."""

    directory: Path

    @property
    def stopping(self) -> bool: ...

    def rounds(self) -> Iterator[tuple[Any, ...]]:
        """Each round's input values, aligned by sequence number, until the inputs end."""
        ...

    def emit(self, result: Any) -> None:
        """Send a ``run`` result: a tuple maps onto the outputs, anything else to all."""
        ...

    def emit_to(self, index: int, value: Any) -> None:
        """Send ``value`` on output ``index`` only (its own sequence numbering)."""
        ...

    def produce(self, values: Iterable[Any]) -> None:
        """Emit every value of a source, one round each, until stopped or at the round limit."""
        ...


class BaseJob:
    """A job with ``inputs`` and ``outputs`` (lists of pipes).

    Class attributes steer placement: ``DEFAULT_NODE`` (a node name or IP
    tried first), ``GROUPS`` (node groups in priority order, ``"ALL"`` by
    default; ``[]`` with ``DEFAULT_NODE`` pins the job there) and
    ``DEPENDENCIES`` (files and folders, relative to the network folder,
    copied into the job's folder on its node before it starts). A method
    ``preference(self, nodes)`` may pick one of the :class:`NodeInfo` offered.
    """

    DEFAULT_NODE: ClassVar[str | None] = None
    GROUPS: ClassVar[list[str] | str] = ["ALL"]
    DEPENDENCIES: ClassVar[list[str]] = []

    def __init__(
        self,
        inputs: Iterable[BasePipe] | None = None,
        outputs: Iterable[BasePipe] | None = None,
    ) -> None:
        self.inputs: list[BasePipe] = list(inputs or [])
        self.outputs: list[BasePipe] = list(outputs or [])
        self.id: int = 0  # set when the network is loaded: position in JOBS, from 1
        self.directory: Path = Path(".")

    @property
    def name(self) -> str:
        return f"{self.id} ({type(self).__name__})"

    def setup(self) -> None:
        """Called once on the node before the first round (and again after a failover)."""

    def check_inputs(self) -> str | None:
        """Why ``run`` cannot take this job's inputs, or None if it can."""
        return None

    def serve(self, ctx: JobContext) -> None:
        """Run the job until its inputs end or it is stopped (the runtime calls this)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id}>"


class PythonJob(BaseJob):
    """A job written as a Python method ``run(self, *inputs)``.

    ``run`` returns a tuple with one value per output, or one value sent on
    every output (to send one tuple everywhere, return ``[t] * len(self.outputs)``);
    None sends nothing that round.
    """

    def run(self, *inputs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define run()")

    def check_inputs(self) -> str | None:
        try:
            inspect.signature(self.run).bind(*[None] * len(self.inputs))
        except TypeError as exc:
            return f"run() cannot take its {len(self.inputs)} input(s): {exc}"
        except ValueError:  # no signature (a builtin): nothing to check
            return None
        return None

    def serve(self, ctx: JobContext) -> None:
        if not self.inputs:
            first = self.run()
            if inspect.isgenerator(first):
                ctx.produce(first)
            else:
                ctx.produce(_repeat(self.run, first))
            return
        for values in ctx.rounds():
            try:
                result = self.run(*values)
            except Exception:
                # One bad round is reported and skipped; the network keeps going.
                print(f"job {self.name}: run() failed:", file=sys.stderr)
                traceback.print_exc()
                continue
            ctx.emit(result)


def _repeat(call: Any, first: Any) -> Iterator[Any]:
    yield first
    while True:
        yield call()


class LocalJob(PythonJob):
    """A job that runs in the client process (group ``LOCAL``), e.g. to log or steer."""

    GROUPS: ClassVar[list[str] | str] = "LOCAL"


class CSVSinkJob(LocalJob):
    """Writes one CSV row per round, one column per input pipe, on the client.

    The file is ``path`` inside the job's folder (``simulation/<id>/`` or
    ``local/<id>/``); its header names the pipes; each row is flushed as it
    arrives, so the file is readable while the network runs.
    """

    def __init__(self, path: str, inputs: Iterable[BasePipe] | None = None, **kwargs: Any) -> None:
        super().__init__(inputs=inputs, **kwargs)
        self.path = path
        self._file: Any = None
        self._writer: Any = None

    def setup(self) -> None:
        target = self.directory / self.path
        target.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(target, "w", newline="")  # noqa: SIM115 - open for the job's life
        self._writer = csv.writer(self._file)
        self._writer.writerow([pipe.id for pipe in self.inputs])
        self._file.flush()

    def run(self, *values: Any) -> None:
        self._writer.writerow(values)
        self._file.flush()

    def check_inputs(self) -> str | None:
        return None if self.inputs else "a CSVSinkJob needs at least one input pipe"

    def serve(self, ctx: JobContext) -> None:
        try:
            super().serve(ctx)
        finally:
            if self._file is not None:
                self._file.close()


class InteractiveJob(LocalJob):
    """Each line typed on the client's terminal (its stdin) is sent on every output."""

    def __init__(self, outputs: Iterable[BasePipe] | None = None, **kwargs: Any) -> None:
        super().__init__(outputs=outputs, **kwargs)

    def run(self) -> Iterator[str]:
        for line in sys.stdin:
            text = line.rstrip("\r\n")
            if text:
                yield text

    def check_inputs(self) -> str | None:
        return "an InteractiveJob takes no inputs" if self.inputs else None


class ExecutableJob(BaseJob):
    """An external program, started once, fed its inputs and read for its outputs.

    With one input the program reads it on stdin, with one output it writes it
    on stdout; with more, input pipe ``P`` is the file descriptor named by the
    environment variable ``SHOAL_IN_P`` and output pipe ``P`` the one named by
    ``SHOAL_OUT_P``. Values are lines of text (JSON for JSON pipes), except on
    a :class:`BytesPipe`, whose values are raw blocks of its size.
    """

    def __init__(
        self,
        executable: str,
        args: Iterable[str] = (),
        inputs: Iterable[BasePipe] | None = None,
        outputs: Iterable[BasePipe] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__(inputs=inputs, outputs=outputs)
        self.executable = executable
        self.args = list(args)
        self.env = dict(env or {})

    def serve(self, ctx: JobContext) -> None:
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
    if isinstance(pipe, BytesPipe):
        return pipe.encode(value)
    if isinstance(pipe, JSONPipe):
        return pipe.encode(value).encode() + b"\n"
    if isinstance(value, bytes):
        return value.rstrip(b"\n") + b"\n"
    return f"{value}\n".encode()


def _from_text(pipe: BasePipe, text: str) -> Any:
    if isinstance(pipe, JSONPipe):
        return pipe.decode(text)
    return text
