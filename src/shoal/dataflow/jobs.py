"""Jobs: the units of a dataflow network, joined by pipes.

A job's ``run`` is called once per round with one value per input pipe (in
the order the pipes are listed); what it returns goes to its outputs. A job
without inputs is a source: its ``run`` may be a generator, whose every
value is one round.
"""

from __future__ import annotations

import csv
import inspect
import sys
import traceback
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar, Protocol

from shoal.dataflow import registry
from shoal.dataflow.heads import FINISHED_BIT, Head, finished_mask
from shoal.dataflow.pipes import BasePipe

__all__ = [
    "BaseJob",
    "CSVSinkJob",
    "InteractiveJob",
    "JobContext",
    "LocalJob",
    "PythonJob",
]


class JobContext(Protocol):
    """What the runtime offers a running job (see :mod:`shoal.dataflow.job_runner`)."""

    directory: Path

    @property
    def stopping(self) -> bool: ...

    @property
    def in_heads(self) -> tuple[Any, ...]:
        """The heads of the current round's inputs (ints; a list for a block input)."""
        ...

    def rounds(self) -> Iterator[tuple[Any, ...]]:
        """Each round's input values, aligned by sequence number, until the inputs end."""
        ...

    def failed(self) -> None:
        """Count a round whose ``run`` raised as an error of the run."""
        ...

    def emit(self, result: Any, heads: list[int] | None = None) -> None:
        """Send a ``run`` result: a tuple maps onto the outputs, anything else to all."""
        ...

    def emit_to(self, index: int, value: Any, head: int = 0) -> None:
        """Send ``value`` on output ``index`` only (its own sequence numbering)."""
        ...

    def produce(
        self, values: Iterable[Any], heads: Callable[[], list[int] | None] | None = None
    ) -> None:
        """Emit every value of a source, one round each, until stopped or at the round limit.

        A None value ends the source, as does the job's ``finish()`` (after the
        value it was called for), as in FISSION."""
        ...


class BaseJob:
    """A job with ``inputs`` and ``outputs`` (lists of pipes).

    Class attributes steer placement: ``DEFAULT_NODE`` (a node name or IP
    tried first), ``GROUPS`` (node groups in priority order, ``"ALL"`` by
    default; ``[]`` with ``DEFAULT_NODE`` pins the job there) and
    ``DEPENDENCIES`` (files and folders, relative to the network folder,
    copied into the job's folder on its node before it starts; a single
    folder as a string is copied as the job's folder, as in FISSION).
    A method ``preference(self, nodes)`` may pick one of the
    :class:`NodeInfo` offered. ``HEAD = True`` gives the job FISSION's head
    bits (``self.head``, ``self.in_heads``, ``self.out_heads``).
    Arguments beyond ``inputs`` and ``outputs`` are accepted and ignored, as
    in FISSION. ``CREATES_SUBPROCESS`` and ``MAX_QUEUE`` are accepted and
    have no effect.
    """

    DEFAULT_NODE: ClassVar[str | None] = None
    GROUPS: ClassVar[list[str] | str] = ["ALL"]
    DEPENDENCIES: ClassVar[list[Any] | str | None] = []
    HEAD: ClassVar[bool] = False
    MAX_QUEUE: ClassVar[int] = 0
    # FISSION's flag for jobs whose start() returns a program's process; shoal
    # serves every job the same way, so it is only read, never acted on.
    CREATES_SUBPROCESS: ClassVar[bool] = False
    # FISSION's job states, for code that reads them.
    STOPPED, RUNNING, RESTARTING, FINISHED = 0, 1, 2, 3

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not isinstance(cls.HEAD, bool):
            raise TypeError(f"{cls.__name__}: HEAD must be a bool, got {cls.HEAD!r}")

    def __init__(
        self,
        inputs: Iterable[BasePipe] | None = None,
        outputs: Iterable[BasePipe] | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> None:
        # Extra arguments are ignored, as FISSION's BaseJob did: its subclasses pass
        # their own through ``super().__init__(*args, **kwargs)`` unchecked. A
        # keyword nobody takes is more often a typo (``output=``): say so.
        if kwargs:
            names = ", ".join(f"{k}=" for k in sorted(kwargs))
            warnings.warn(
                f"{type(self).__name__}: ignored the arguments {names} (as FISSION did)",
                stacklevel=2,
            )
        del args
        self.inputs: list[BasePipe] = list(inputs or [])
        self.outputs: list[BasePipe] = list(outputs or [])
        # Counted from 1 as jobs are made, as in FISSION, so __init__ code can use
        # it; loading a network renumbers by place in JOBS (the same when JOBS
        # lists its jobs in the order they were made).
        self.id: int = registry.next_job_id()
        registry.JOBS[self.id] = self
        for pipe in self.inputs:
            if isinstance(pipe, BasePipe):  # anything else is reported when the network loads
                pipe.destination = self
        for pipe in self.outputs:
            if isinstance(pipe, BasePipe):
                pipe.source = self
        self.directory: Path = Path(".")
        self.head: Head | None = None
        self.in_heads: list[Any] = [None] * len(self.inputs)
        self.out_heads: list[Any] = [None] * len(self.outputs)
        self.finished = False
        self.head_size = 1  # the network's HEAD_SIZE, set when it is loaded

    @property
    def name(self) -> str:
        """``"<id> (<class>)"``, or what the job's own code assigned to ``self.name``."""
        given = self.__dict__.get("_given_name")
        return given if given is not None else f"{self.id} ({type(self).__name__})"

    @name.setter
    def name(self, value: str) -> None:
        # FISSION jobs may keep a name of their own (its LoggingJob does).
        self.__dict__["_given_name"] = value

    @property
    def label(self) -> str:
        """How shoal names the job in messages, whatever ``name`` holds."""
        return f"{self.id} ({type(self).__name__})"

    def setup(self, *args: Any, **kwargs: Any) -> None:
        """Called once on the node before the first round (and again after a failover).

        An override is called with what FISSION passed that its signature takes
        (see :func:`call_setup`): ``setup(self)`` gets nothing, ``setup(self,
        root, seperate_job_pipes=False, **kwargs)`` gets the root folder too.
        Takes any arguments so FISSION code calling ``super().setup(*args, **kwargs)`` works.
        """

    def _setup_keywords(self) -> dict[str, Any]:
        # The keywords FISSION's start() passed to setup() for this kind of job
        # (its wrapper always asked for one fifo folder per job).
        return {"seperate_job_pipes": True}

    def check_inputs(self) -> str | None:
        """Why ``run`` cannot take this job's inputs, or None if it can."""
        if callable(getattr(self, "run", None)):
            return _check_run(self)
        return None

    def serve(self, ctx: JobContext) -> None:
        """Run the job until its inputs end or it is stopped (the runtime calls this)."""
        if callable(getattr(self, "run", None)):
            # A LocalJob (or BaseJob) with a run() alone runs as a PythonJob would.
            serve_python(self, ctx)
            return
        raise NotImplementedError(f"{type(self).__name__} has no run() to serve")

    # -- FISSION's source/sink predicates and head hooks

    def is_source(self) -> bool:
        return not self.inputs and bool(self.outputs)

    def is_sink(self) -> bool:
        return bool(self.inputs) and not self.outputs

    def is_connector(self) -> bool:
        return bool(self.inputs) and bool(self.outputs)

    def is_async(self) -> bool:
        return all(p.OPTIONAL for p in self.inputs)

    def finish(self) -> None:
        """End this job after the value being produced, and mark that value's head
        finished so every job downstream ends after it too."""
        if self.head is None:
            self.head = Head(0, self.head_size)
        self.head[FINISHED_BIT] = True
        self.finished = True

    def head_reduce(self) -> Head:
        """``self.head`` for a round: by default the bitwise or of ``self.in_heads``."""
        result = Head(0, self.head_size)
        for head in self.in_heads:
            for one in head if isinstance(head, list) else [head]:
                if one is not None:
                    result = result | one
        return result

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id}>"


def setup_root(job: BaseJob) -> str:
    """The ``root`` FISSION's ``setup`` got: the folder holding the job's folder.

    FISSION ran a job in ``f"{root}/{job.id}"``; shoal's job folders are named
    by the id too (``self.directory``), so code building paths that way from
    ``root`` finds the same folder. A str, as FISSION's was (code joins it with ``+``).
    """
    directory = Path(job.directory).resolve()
    return str(directory.parent if directory.name == str(job.id) else directory)


def setup_call(job: BaseJob) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The arguments ``job.setup`` is called with: FISSION's, as far as its signature takes them.

    FISSION called ``setup(root, seperate_job_pipes=True, ...)``; shoal's own
    ``setup(self)`` takes none. Each of FISSION's arguments is passed only
    when the override has a place for it, so both forms work.
    """
    try:
        signature = inspect.signature(job.setup)
    except (TypeError, ValueError):  # no signature to read (a builtin): call it bare
        return (), {}
    params = list(signature.parameters.values())
    kinds = {p.kind for p in params}
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    named = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    offered = job._setup_keywords()
    kwargs = {
        k: v for k, v in offered.items() if inspect.Parameter.VAR_KEYWORD in kinds or k in named
    }
    root = setup_root(job)
    args: tuple[Any, ...] = ()
    # root went first and positionally; a first parameter named like one of the
    # keywords is that keyword's, not root's.
    if inspect.Parameter.VAR_POSITIONAL in kinds or (
        positional and positional[0].name not in offered
    ):
        args = (root,)
    elif any(p.name == "root" and p.kind is p.KEYWORD_ONLY for p in params):
        kwargs["root"] = root
    for candidate in ((args, kwargs), (args, {}), ((), {})):
        try:
            signature.bind(*candidate[0], **candidate[1])
        except TypeError:
            continue
        return candidate
    return (), {}  # setup() itself will say what it lacks


def call_setup(job: BaseJob) -> None:
    """Run ``job.setup`` with the arguments :func:`setup_call` chooses."""
    args, kwargs = setup_call(job)
    job.setup(*args, **kwargs)


def _check_run(job: Any) -> str | None:
    try:
        inspect.signature(job.run).bind(*[None] * len(job.inputs))
    except TypeError as exc:
        return f"run() cannot take its {len(job.inputs)} input(s): {exc}"
    except ValueError:  # no signature (a builtin): nothing to check
        return None
    return None


def _or(heads: Iterable[Any]) -> int:
    value = 0
    for head in heads:
        for one in head if isinstance(head, list) else [head]:
            value |= int(one or 0)
    return value


def _out_heads(job: Any, raw_inputs: Iterable[Any]) -> list[int] | None:
    """The heads a round's outputs carry; None when all are 0."""
    joined = _or(raw_inputs)
    size = getattr(job, "head_size", 1)
    finished = finished_mask(size)
    if not job.HEAD:
        return [joined] * len(job.outputs) if joined else None
    own = int(job.head or 0)
    heads = []
    for index in range(len(job.outputs)):
        chosen = job.out_heads[index] if index < len(job.out_heads) else None
        value = int(chosen) if chosen is not None else own
        heads.append(value | (joined & finished))  # a finish passes through every job
    return heads if any(heads) else None


def _round_heads(job: Any, raw: tuple[Any, ...]) -> None:
    """Give a HEAD job its heads for the round about to run."""
    size = job.head_size
    job.in_heads = [
        [Head(h, size) for h in head] if isinstance(head, list) else Head(head, size)
        for head in raw
    ]
    job.head = job.head_reduce()
    job.out_heads = [None] * len(job.outputs)


def serve_python(job: Any, ctx: JobContext) -> None:
    """Run a job written as ``run(self, *inputs)``: FISSION's PythonJob loop on shoal."""
    if not job.inputs:
        first = job.run()
        if first is None:
            return  # a source returning None ends, as in FISSION
        values = first if inspect.isgenerator(first) else _repeat(job.run, first)
        ctx.produce(
            values,
            heads=(lambda: _out_heads(job, ())) if job.HEAD else None,
        )
        return
    finished = finished_mask(getattr(job, "head_size", 1))
    run, emit, uses_heads = job.run, ctx.emit, job.HEAD
    for values in ctx.rounds():
        raw = ctx.in_heads
        if uses_heads:
            _round_heads(job, raw)
        try:
            result = run(*values)
        except Exception:
            # One bad round is reported, counted and skipped; the network keeps going.
            ctx.failed()
            print(f"job {job.label}: run() failed:", file=sys.stderr)
            traceback.print_exc()
            continue
        if not uses_heads and not any(raw):
            # No head came in (a block input's list counts as one): none goes out
            # and no finish bit passes; the common round, without the head work.
            if result is not None:
                emit(result, None)
            if job.finished:
                return
            continue
        heads = _out_heads(job, raw)
        emit(result, heads)
        if job.finished or _or(raw) & finished:
            return  # the finish bit ends every job it passes, after its round


class PythonJob(BaseJob):
    """A job written as a Python method ``run(self, *inputs)``.

    ``run`` returns a tuple with one value per output, or one value sent on
    every output (to send one tuple everywhere, return ``[t] * len(self.outputs)``);
    None sends nothing that round (a source returning None ends).
    """

    def run(self, *inputs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define run()")

    def serve(self, ctx: JobContext) -> None:
        serve_python(self, ctx)


def _repeat(call: Any, first: Any) -> Iterator[Any]:
    yield first
    while True:
        yield call()


class LocalJob(BaseJob):
    """Marks a job that runs in the client process (group ``LOCAL``), as in FISSION.

    Combine it with a job class, in either order: ``class Log(LocalJob, PythonJob)``
    or ``class Log(PythonJob, LocalJob)``. A LocalJob with a ``run`` alone
    runs as a PythonJob.
    """

    GROUPS: ClassVar[list[str] | str] = "LOCAL"


class CSVSinkJob(LocalJob, PythonJob):
    """Writes one CSV row per round, one column per input pipe, on the client.

    The file is ``path`` inside the job's folder (``simulation/<id>/`` or
    ``local/<id>/``); its header is ``col_pattern`` formatted per input
    (``pipe`` and ``job`` are offered; FISSION's ``"pipe_{pipe.id}"`` by
    default); each row, of ``str()`` of the values, is flushed as it
    arrives, so the file is readable while the network runs.
    """

    def __init__(
        self,
        path: str,
        inputs: Iterable[BasePipe] | None = None,
        col_pattern: str = "pipe_{pipe.id}",
        *args: Any,
        **kwargs: Any,
    ) -> None:
        # Extra arguments are ignored, as every job's are (see BaseJob).
        super().__init__(inputs=inputs, **kwargs)
        self.path = path
        self.col_pattern = col_pattern
        self._file: Any = None
        self._writer: Any = None

    def setup(self, *args: Any, **kwargs: Any) -> None:
        target = self.directory / self.path
        target.parent.mkdir(parents=True, exist_ok=True)
        header = [self.col_pattern.format(pipe=pipe, job=self) for pipe in self.inputs]
        self._file = open(target, "w", newline="")  # noqa: SIM115 - open for the job's life
        self._writer = csv.writer(self._file)
        self._writer.writerow(header)
        self._file.flush()

    def run(self, *values: Any) -> None:
        self._writer.writerow([str(value) for value in values])
        self._file.flush()

    def check_inputs(self) -> str | None:
        if not self.inputs:
            return "a CSVSinkJob needs at least one input pipe"
        try:
            for pipe in self.inputs:
                self.col_pattern.format(pipe=pipe, job=self)
        except (AttributeError, IndexError, KeyError, ValueError) as exc:
            return f"col_pattern {self.col_pattern!r} cannot be formatted: {exc!r}"
        return None

    def serve(self, ctx: JobContext) -> None:
        try:
            super().serve(ctx)
        finally:
            if self._file is not None:
                self._file.close()


class InteractiveJob(LocalJob, PythonJob):
    """Each line typed on the client's terminal (its stdin) is sent on every output."""

    def __init__(
        self, outputs: Iterable[BasePipe] | None = None, *args: Any, **kwargs: Any
    ) -> None:
        # Extra arguments are ignored, as every job's are (see BaseJob).
        super().__init__(outputs=outputs, **kwargs)

    def run(self) -> Iterator[str]:
        for line in sys.stdin:
            text = line.rstrip("\r\n")
            if text:
                yield text

    def check_inputs(self) -> str | None:
        return "an InteractiveJob takes no inputs" if self.inputs else None
