"""Testing jobs, pipes and networks from pytest: FISSION's ``emulate``, on shoal.

``emulate(pipe)`` sends values through a pipe's ``pack``/``unpack``;
``emulate(job)`` runs one job in this process and feeds it round by round;
``emulate(config)`` runs a whole network, in this process or (``cluster=True``)
on a throw-away local cluster, feeding the pipes nobody writes and reading
the pipes nobody reads::

    with emulate(mynet.config) as net:      # pipes 1 and 2 lead in, 9 out
        net.put(1, 3); net.put(2, 4)
        assert net.get(9) == 12
"""

from __future__ import annotations

import copy
import io
import queue
import shutil
import threading
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

from shoal.dataflow.heads import Head
from shoal.dataflow.host import write_files
from shoal.dataflow.job_runner import GuardedRunner, JobRunner
from shoal.dataflow.jobs import BaseJob, LocalJob, PythonJob, call_setup
from shoal.dataflow.network import Network, check_pipes, dependency_files, load_network
from shoal.dataflow.pipes import BasePipe

__all__ = ["JobEmulator", "NetworkEmulator", "PipeEmulator", "emulate"]

_WAIT = 10.0


def emulate(obj: Any, path: str | Path = ".emulate", **kwargs: Any) -> Any:
    """An emulator for a pipe, a job, or a network (a config module, folder or file)."""
    if isinstance(obj, BasePipe):
        return PipeEmulator(obj)
    if isinstance(obj, BaseJob):
        return JobEmulator(obj, root=path)
    if isinstance(obj, ModuleType | str | Path | Network):
        return NetworkEmulator(obj, path=path, **kwargs)
    raise TypeError(f"no emulator for {type(obj).__name__}: give a pipe, a job or a network")


class PipeEmulator:
    """One pipe, sender to receiver: ``put`` packs a value, ``get`` unpacks the next.

    A pipe that frames values on a byte stream (a fixed ``BLOCK_SIZE``, a
    pickle or JSON mixin, or its own ``read``/``write``) goes through its
    ``write`` and ``read`` too, as FISSION's emulator did, so a custom
    protocol is tested. ``put_head(h)`` gives the next value put the head
    ``h``; ``get_head()`` is the head of the value the next ``get`` returns.
    """

    def __init__(self, pipe: BasePipe) -> None:
        self.pipe = pipe
        self._wire: queue.Queue[tuple[Any, int]] = queue.Queue()
        self._head = 0
        self._held: tuple[Any, int] | None = None

    def _travel(self, value: Any) -> Any:
        """What the receiver's ``unpack`` gets for ``value``."""
        wire = self.pipe.to_wire(value)
        if not self.pipe.streams:
            return self.pipe.decode(wire)
        stream = io.BytesIO()
        self.pipe.write(stream, self.pipe.decode(wire))
        stream.seek(0)
        return self.pipe.read_stream(stream)

    def put(self, value: Any) -> None:
        self._wire.put((self._travel(value), self._head))
        self._head = 0

    def put_head(self, head: int) -> None:
        """The head the next :meth:`put` value travels with."""
        self._head = int(head)

    def _next(self, timeout: float) -> tuple[Any, int]:
        if self._held is None:
            try:
                self._held = self._wire.get(timeout=timeout)
            except queue.Empty:
                raise TimeoutError(f"nothing was put on pipe {self.pipe.id}") from None
        return self._held

    def get_head(self, timeout: float = _WAIT) -> int:
        """The head of the value the next :meth:`get` returns."""
        return self._next(timeout)[1]

    def get(self, timeout: float = _WAIT) -> Any:
        data, _ = self._next(timeout)
        self._held = None
        return self.pipe.unpack(data)

    def __call__(self, value: Any) -> tuple[Any, Any]:
        """``(what travels, what the receiver gets)`` for ``value``."""
        wire = self.pipe.to_wire(value)
        return wire, self.pipe.unpack(self._travel(value))

    def kill(self) -> None:
        """Nothing to release (FISSION's closed its OS pipes)."""


class _Tap:
    """An output that keeps what a job sends, as the receiver would get it."""

    def __init__(self, pipe: BasePipe, runner: JobRunner | None = None) -> None:
        self.pipe = pipe
        self.values: queue.Queue[tuple[Any, int]] = queue.Queue(maxsize=256)
        self.runner = runner
        self.ended = threading.Event()

    def put(self, key: Any, value: Any, head: int = 0) -> None:
        item = (self.pipe.from_wire(self.pipe.to_wire(value)), head)
        while True:  # bounded: a source blocks here until the test reads
            try:
                self.values.put(item, timeout=0.1)
                return
            except queue.Full:
                if self.runner is not None and self.runner.stopping:
                    return

    def finish(self, timeout: float = 0.0) -> None:
        self.ended.set()

    def close(self) -> None:
        self.ended.set()


class _Link:
    """An in-process pipe from one job's runner to another's inputs."""

    def __init__(self, pipe: BasePipe, target: JobRunner) -> None:
        self.pipe, self.target = pipe, target

    def put(self, key: Any, value: Any, head: int = 0) -> None:
        data = self.pipe.from_wire(self.pipe.to_wire(value))
        self.target.aligner.put_many(self.pipe.id, [(key, data, head)])

    def finish(self, timeout: float = 0.0) -> None:
        self.target.aligner.end(self.pipe.id)

    def close(self) -> None:
        """Ends with :meth:`finish`; nothing to release."""


def _prepare(job: BaseJob, folder: Path, origin: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    write_files(str(folder), dependency_files(origin, job))
    job.directory = folder


class _Hosted:
    """One job running in a thread of this process, as a job host runs it."""

    def __init__(self, job: BaseJob, outputs: list[Any]) -> None:
        self.job = job
        self.runner = JobRunner(job, None, outputs)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"emulated-{job.id}", daemon=True)

    def _run(self) -> None:
        try:
            call_setup(self.job)  # with FISSION's arguments, as a job host does
            self.job.serve(GuardedRunner(self.runner))  # type: ignore[arg-type]
        except Exception as exc:
            self.runner.errors += 1
            print(f"job {self.job.label} failed: {exc!r}")
        finally:
            for out in self.runner.outputs:
                out.finish()
            self.done.set()

    def stop(self) -> None:
        self.runner.stop()


class JobEmulator:
    """One job in this process: ``emulator(*inputs, head=0)`` runs a round and
    returns one value per output (a tuple argument feeds several values, for
    a ``BLOCK_COUNT`` input). ``heads`` holds the output heads of the last call.

    A copy of the job runs (``running``), so ``job`` stays as it was made, as
    FISSION's emulator left it (it ran the job in a subprocess); a job that
    cannot be copied runs itself. It runs in ``cwd`` (``<root>/<job id>``).
    """

    def __init__(self, job: BaseJob, root: str | Path = ".emulate", start: bool = True) -> None:
        self.job = job
        job.id = job.id or 1
        self.running = _detached(job)
        self.cwd = Path(root).resolve() / str(job.id)
        _prepare(self.running, self.cwd, Path.cwd())
        job.directory = self.cwd
        self.taps = [_Tap(pipe) for pipe in job.outputs]
        self.hosted = _Hosted(self.running, list(self.taps))
        for tap in self.taps:
            tap.runner = self.hosted.runner
        self._counters = [0] * len(job.inputs)
        self.heads: list[Head] = []
        if start:
            self.start()

    def start(self) -> None:
        self.hosted.thread.start()

    @property
    def in_emulators(self) -> list[PipeEmulator]:
        """One :class:`PipeEmulator` per input pipe (FISSION's attribute)."""
        return [PipeEmulator(pipe) for pipe in self.job.inputs]

    @property
    def out_emulators(self) -> list[PipeEmulator]:
        """One :class:`PipeEmulator` per output pipe (FISSION's attribute)."""
        return [PipeEmulator(pipe) for pipe in self.job.outputs]

    def __call__(self, *args: Any, head: int = 0, timeout: float = _WAIT) -> list[Any]:
        if len(args) != len(self.job.inputs):
            raise TypeError(f"expected {len(self.job.inputs)} input value(s), got {len(args)}")
        before = self.hosted.runner.rounds_done
        for index, (pipe, arg) in enumerate(zip(self.job.inputs, args, strict=True)):
            for value in arg if isinstance(arg, tuple) else (arg,):
                key = (0, self._counters[index])
                self._counters[index] += 1
                data = pipe.from_wire(pipe.to_wire(value))
                self.hosted.runner.aligner.put_many(pipe.id, [(key, data, head)])
        if not self.taps:
            # A sink: the round is over once the runner counted it.
            from_waiting(lambda: self.hosted.runner.rounds_done > before, timeout)
            return []
        outputs, self.heads = [], []
        for tap in self.taps:
            try:
                value, out_head = tap.values.get(timeout=timeout)
            except queue.Empty:
                raise TimeoutError(
                    f"job {self.job.label} sent nothing on pipe {tap.pipe.id} in {timeout:g} s"
                ) from None
            outputs.append(value)
            self.heads.append(Head(out_head, self.running.head_size))
        return outputs

    @property
    def errors(self) -> int:
        return self.hosted.runner.errors

    def kill(self) -> None:
        self.hosted.stop()
        self.hosted.thread.join(5)

    def __enter__(self) -> JobEmulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


def _detached(job: BaseJob) -> BaseJob:
    """A copy of ``job`` to run, or ``job`` itself when it cannot be copied
    (it holds a lock, an open file, ...)."""
    try:
        twin = copy.deepcopy(job)
    except Exception:
        return job
    return twin


def from_waiting(predicate: Any, timeout: float) -> None:
    """Wait for ``predicate()`` (a job's own progress, polled) or raise TimeoutError."""
    done = threading.Event()
    deadline = threading.Timer(timeout, done.set)
    deadline.start()
    try:
        while not predicate():
            if done.wait(0.01):
                raise TimeoutError(f"nothing happened in {timeout:g} s")
    finally:
        deadline.cancel()


class _Feeder(LocalJob, PythonJob):
    """Where an emulation's test writes a pipe nobody in the network writes."""

    HEAD = True

    def __init__(self, pipe: BasePipe) -> None:
        super().__init__(outputs=[pipe])
        self.items: queue.Queue[Any] = queue.Queue()
        self.stopped = threading.Event()

    def run(self) -> Any:
        while not self.stopped.is_set():
            try:
                item = self.items.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is None:
                return
            value, self.head = item[0], Head(item[1], self.head_size)
            yield value


class _Collector(LocalJob, PythonJob):
    """Where an emulation's test reads a pipe nobody in the network reads."""

    HEAD = True

    def __init__(self, pipe: BasePipe) -> None:
        super().__init__(inputs=[pipe])
        self.items: queue.Queue[tuple[Any, Any]] = queue.Queue()

    def run(self, value: Any) -> None:
        self.items.put((value, self.in_heads[0]))


class NetworkEmulator:
    """A network with its open pipes fed and read by the test.

    ``put(pipe_id, value, head=0)`` writes a pipe no job writes, ``get(pipe_id)``
    reads one no job reads (``get(..., with_head=True)``: ``(value, Head)``),
    ``end(pipe_id)`` ends a fed pipe, ``wait()`` waits for every job to end.
    ``cluster=True`` places the jobs on a local cluster (one agent per node)
    through the coordinator, as ``simulate`` does; otherwise every job runs
    in a thread of this process.
    """

    def __init__(
        self,
        target: ModuleType | str | Path | Network,
        *,
        cluster: bool = False,
        path: str | Path | None = None,
    ) -> None:
        network = target if isinstance(target, Network) else load_network(target, open_ends=True)
        self.feeders: dict[int, _Feeder] = {}
        self.collectors: dict[int, _Collector] = {}
        jobs = list(network.jobs)
        for pipe_id, ends in network.pipes.items():
            if ends.source == 0:
                self.feeders[pipe_id] = _Feeder(ends.pipe)
            if ends.destination == 0:
                self.collectors[pipe_id] = _Collector(ends.pipe)
        jobs += [*self.feeders.values(), *self.collectors.values()]
        for position, job in enumerate(jobs, start=1):
            job.id = position
            job.head_size = network.jobs[0].head_size if network.jobs else 1
        network.jobs = jobs
        network.pipes = check_pipes(jobs)
        self.network = network
        self.cluster = cluster
        default = network.directory / ("emulation-cluster" if cluster else "emulation")
        self.folder = Path(path).resolve() / network.name if path is not None else default
        self._hosted: list[_Hosted] = []
        self._coordinator: Any = None
        self._cluster: Any = None
        self._started = False

    def start(self) -> NetworkEmulator:
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True)
        if self.cluster:
            self._start_cluster()
        else:
            self._start_here()
        self._started = True
        return self

    def _start_here(self) -> None:
        hosted = {job.id: _Hosted(job, []) for job in self.network.jobs}
        for job in self.network.jobs:
            _prepare(job, self.folder / str(job.id), self.network.directory)
            runner = hosted[job.id].runner
            runner.outputs[:] = [
                _Link(pipe, hosted[self.network.pipes[pipe.id].destination].runner)
                for pipe in job.outputs
            ]
        self._hosted = list(hosted.values())
        for one in self._hosted:
            one.thread.start()

    def _start_cluster(self) -> None:
        from shoal.dataflow.coordinator import Coordinator
        from shoal.dataflow.simulation import cluster_for

        self._cluster = cluster_for(self.network)
        self._cluster.start()
        try:
            self._coordinator = Coordinator(
                self.network, self._cluster.client(), self.folder, loopback=True, echo=False
            )
            self._coordinator.start()
        except BaseException:
            self.close()
            raise

    def put(self, pipe_id: int, value: Any, head: int = 0) -> None:
        self._feeder(pipe_id).items.put((value, head))

    def put_many(self, pipe_id: int, values: Iterable[Any]) -> None:
        for value in values:
            self.put(pipe_id, value)

    def end(self, pipe_id: int | None = None) -> None:
        """No more values on ``pipe_id`` (every fed pipe when None)."""
        for one in [pipe_id] if pipe_id is not None else list(self.feeders):
            self._feeder(one).items.put(None)

    def get(self, pipe_id: int, timeout: float = _WAIT, with_head: bool = False) -> Any:
        collector = self.collectors.get(pipe_id)
        if collector is None:
            raise KeyError(f"pipe {pipe_id} is read by a job of the network; read {self.outputs}")
        try:
            value, head = collector.items.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"nothing arrived on pipe {pipe_id} in {timeout:g} s") from None
        return (value, head) if with_head else value

    @property
    def inputs(self) -> list[int]:
        """The pipes the test feeds."""
        return sorted(self.feeders)

    @property
    def outputs(self) -> list[int]:
        """The pipes the test reads."""
        return sorted(self.collectors)

    @property
    def errors(self) -> int:
        """Rounds whose ``run`` raised, over every job (those that reported so far)."""
        if self._coordinator is not None:
            return sum(s.errors for s in self._coordinator.states.values())
        return sum(one.runner.errors for one in self._hosted)

    def wait(self, timeout: float = _WAIT) -> None:
        """Wait for every job of the network to end (raises TimeoutError)."""
        if self._coordinator is not None:
            if not self._coordinator.wait(timeout):
                raise TimeoutError(f"the network did not end in {timeout:g} s")
            return
        for one in self._hosted:
            if not one.done.wait(timeout):
                raise TimeoutError(f"job {one.job.label} did not end in {timeout:g} s")

    def close(self) -> None:
        for feeder in self.feeders.values():
            feeder.stopped.set()
        for one in self._hosted:
            one.stop()
        for one in self._hosted:
            one.thread.join(5)
        if self._coordinator is not None:
            self._coordinator.stop()
            self._coordinator = None
        if self._cluster is not None:
            self._cluster.stop()
            self._cluster = None

    def _feeder(self, pipe_id: int) -> _Feeder:
        feeder = self.feeders.get(pipe_id)
        if feeder is None:
            raise KeyError(f"pipe {pipe_id} is written by a job of the network; feed {self.inputs}")
        return feeder

    def __enter__(self) -> NetworkEmulator:
        return self.start() if not self._started else self

    def __exit__(self, *exc: object) -> None:
        self.close()
