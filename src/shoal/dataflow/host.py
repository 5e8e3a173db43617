"""A job host: runs one job, wired to its pipes and to the coordinator.

On a node it runs inside a shoal pipeline task (:class:`JobHostTask`); jobs
of group LOCAL run in the client process in a thread, with the same code.
The host serves its pipes' endpoints on its node's channel server
(:mod:`.transport`), connects back to the coordinator's control server (or,
when it cannot, serves a control endpoint the coordinator opens a channel to),
waits for the word, then calls the job's ``setup`` and runs it.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shoal.client import serialize
from shoal.dataflow.control_link import ControlLink, await_coordinator, open_connection
from shoal.dataflow.jobs import BaseJob, call_setup
from shoal.dataflow.out_pipe import OutPipe
from shoal.dataflow.rounds import InputAligner, Key
from shoal.dataflow.segments import Segment
from shoal.dataflow.transport import LOCAL_NODE, PipeLinks, Reach, Route
from shoal.model.pipeline import Task

log = logging.getLogger("shoal.dataflow")

_NO_HEADS = (0,)  # the heads of a round of one input whose value carries none

# How long a host that cannot reach the coordinator waits for it to come (as
# long as the coordinator gives a placed host to start: placement.START_TIMEOUT).
COORDINATOR_TIMEOUT = 60.0


@dataclass
class HostSpec:
    """What a job host needs to know before it reaches the coordinator."""

    job_id: int
    generation: int
    coordinator: tuple[str, ...]
    port: int
    token: bytes  # between job hosts (pipes)
    coordinator_token: bytes  # to the coordinator (control)
    directory: str
    node: str
    files: dict[str, bytes] = field(default_factory=dict)
    forward_output: bool = True


class JobRunner:
    """The :class:`shoal.dataflow.jobs.JobContext` a job runs against.

    ``outputs``: anything with put(key, value, head)/finish()/close(), one per
    output pipe: the channel pipes of a host, or the in-process pipes of an
    emulation."""

    def __init__(
        self,
        job: BaseJob,
        max_rounds: int | None,
        outputs: list[Any],
        aligner: InputAligner | None = None,
    ) -> None:
        self.job = job
        self.aligner = aligner or InputAligner(job.inputs)
        self.outputs = outputs
        self.in_heads: tuple[Any, ...] = ()
        self.directory = job.directory
        self.max_rounds = max_rounds
        self.rounds_done = 0
        self.errors = 0
        self._stop = threading.Event()
        self._stopped = False  # the event's flag, read once per value without a call
        self._epoch = 0
        self._counter = 0
        self._key: Key = (0, 0)
        self._lock = threading.Lock()
        self._output_counters = [0] * len(self.job.outputs)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def stop(self) -> None:
        self._stopped = True
        self._stop.set()
        self.aligner.stop()

    def reset(self, epoch: int) -> None:
        """Start numbering source values again in a new epoch (after a failover)."""
        with self._lock:
            if epoch > self._epoch:
                self._epoch = epoch
                self._counter = 0
                self._output_counters = [0] * len(self.job.outputs)

    def rounds(self) -> Iterator[tuple[Any, ...]]:
        # One generator, not one delegating to another: a frame less per round.
        if self.aligner.plain is not None:
            return self._plain_rounds()
        return self._aligned_rounds()

    def _aligned_rounds(self) -> Iterator[tuple[Any, ...]]:
        own_keys = all(p.OPTIONAL for p in self.job.inputs)
        while not self._stop.is_set():
            found = self.aligner.next_rounds_with_heads()
            if not found:
                return
            for key, values, heads in found:
                # A job fed by optional inputs only numbers its rounds itself, like a source.
                self._key = self._next_source_key() if own_keys else key
                self.in_heads = heads
                yield values
                self.rounds_done += 1
                if self._stop.is_set():
                    return

    def _plain_rounds(self) -> Iterator[tuple[Any, ...]]:
        """The rounds of one plain input: each value as it came, no alignment to do."""
        take = self.aligner.next_segments
        while not self._stopped:
            segments = take()
            if not segments:
                return
            for epoch, first, values, heads in segments:
                self.in_heads = _NO_HEADS
                for index, value in enumerate(values, first):
                    self._key = (epoch, index)
                    if heads is not None:
                        self.in_heads = (heads[index - first],)
                    yield (value,)
                    self.rounds_done += 1
                    if self._stopped:
                        return

    def _next_source_key(self) -> Key:
        # No lock: only the job's thread numbers, and a reset landing mid-way
        # at worst starts the new epoch one value late.
        key = (self._epoch, self._counter)
        self._counter += 1
        return key

    def failed(self) -> None:
        """Count a round whose ``run`` raised (the job prints why)."""
        self.errors += 1

    def emit(self, result: Any, heads: list[int] | None = None) -> None:
        if result is None or not self.outputs:
            return
        if len(self.outputs) == 1 and not isinstance(result, tuple):
            self.outputs[0].put(self._key, result, heads[0] if heads else 0)
            return
        if isinstance(result, tuple):
            if len(result) != len(self.outputs):
                raise ValueError(
                    f"job {self.job.name} returned a tuple of {len(result)} values "
                    f"for {len(self.outputs)} outputs"
                )
            values: Iterable[Any] = result
        else:
            values = [result] * len(self.outputs)
        for index, (out, value) in enumerate(zip(self.outputs, values, strict=True)):
            out.put(self._key, value, heads[index] if heads else 0)

    def emit_to(self, index: int, value: Any, head: int = 0) -> None:
        with self._lock:
            key = (self._epoch, self._output_counters[index])
            self._output_counters[index] += 1
        self.outputs[index].put(key, value, head)

    def produce(
        self, values: Iterable[Any], heads: Callable[[], list[int] | None] | None = None
    ) -> None:
        iterator = iter(values)
        limit, job = self.max_rounds, self.job
        if len(self.outputs) == 1 and heads is None and limit is None:
            self._produce_plain(iterator)
            return
        # One output and no heads (the common source): a value goes straight to
        # its pipe, without the calls emit() makes to find where it goes.
        put = self.outputs[0].put if len(self.outputs) == 1 and heads is None else None
        while not self._stopped:
            if limit is not None and self.rounds_done >= limit:
                return
            try:
                value = next(iterator)
            except StopIteration:
                return
            except Exception:
                self.errors += 1
                log.error("job %s failed:\n%s", self.job.name, traceback.format_exc())
                return
            if value is None:
                return  # a FISSION source ends so
            if put is not None and not isinstance(value, tuple):
                # _next_source_key, inline: this runs once per value of a source.
                key = (self._epoch, self._counter)
                self._counter += 1
                try:
                    put(key, value)
                except (TypeError, ValueError) as exc:
                    self.errors += 1
                    print(f"job {self.job.name}: {exc}", file=sys.stderr)
            else:
                self._key = self._next_source_key()
                self._emit_guarded(value, heads() if heads is not None else None)
            self.rounds_done += 1
            if job.finished:
                return

    def _produce_plain(self, iterator: Iterator[Any]) -> None:
        """``produce`` for the common source (one output, no heads, no round
        limit): each value goes straight to its pipe, numbered here. The
        source's throughput is this loop's, so its counters are locals, kept in
        step with the runner's (a failover's reset starts a new epoch at once)."""
        if self._stopped:
            return
        put, job = self.outputs[0].put, self.job
        epoch, counter = self._epoch, self._counter
        done = self.rounds_done
        try:
            for value in iterator:
                if value is None:
                    return  # a FISSION source ends so
                if self._epoch != epoch:
                    with self._lock:
                        epoch, counter = self._epoch, self._counter
                if isinstance(value, tuple):
                    # One value per output, as emit() sends it.
                    self._counter = counter
                    self._key = self._next_source_key()
                    self._emit_guarded(value)
                    counter = self._counter
                else:
                    try:
                        put((epoch, counter), value)
                    except (TypeError, ValueError) as exc:
                        self.errors += 1
                        print(f"job {job.name}: {exc}", file=sys.stderr)
                    counter += 1
                done += 1
                self.rounds_done = done
                if job.finished or self._stopped:
                    return
        except Exception:
            self.errors += 1
            log.error("job %s failed:\n%s", job.name, traceback.format_exc())
        finally:
            with self._lock:
                if self._epoch == epoch:
                    self._counter = counter

    def _emit_guarded(self, value: Any, heads: list[int] | None = None) -> None:
        try:
            self.emit(value, heads)
        except (TypeError, ValueError) as exc:
            self.errors += 1
            print(f"job {self.job.name}: {exc}", file=sys.stderr)


class JobHost:
    """Runs one job until it ends or the coordinator stops it.

    ``reach``: how this host opens channels (None: from the executor's
    environment, as on a node)."""

    def __init__(self, job: BaseJob, spec: HostSpec, reach: Reach | None = None) -> None:
        self.job = job
        self.spec = spec
        self.reach = reach
        self.runner: JobRunner | None = None
        self.control: ControlLink | None = None
        self._go = threading.Event()
        self._stopped = threading.Event()
        self._max_rounds: int | None = None

    def run(self) -> str:
        spec = self.spec
        directory = Path(spec.directory)
        directory.mkdir(parents=True, exist_ok=True)
        write_files(spec.directory, spec.files)
        self.job.directory = directory
        local = spec.node == LOCAL_NODE
        aligner = InputAligner(self.job.inputs)
        links = PipeLinks(
            spec.token,
            spec.job_id,
            spec.generation,
            self.reach if local else Reach.from_environment(),
            self._deliver,
            aligner.end,
            aligner.has_room,
            inputs={p.id for p in self.job.inputs},
        )
        self._aligner = aligner
        links.start(serve=not local)
        outputs = [OutPipe(pipe, links) for pipe in self.job.outputs]
        try:
            self.control = self._connect()
        except BaseException:
            links.stop()
            raise
        self.control.send(("hello", spec.job_id, spec.generation, spec.node, os.getpid()))
        welcome = self.control.receive()
        _, routes, sources, epoch, self._max_rounds = welcome
        self.runner = runner = JobRunner(self.job, self._max_rounds, outputs, aligner)
        self.links = links
        runner.reset(epoch)
        self._apply_routes(routes)
        links.set_sources(sources)
        threading.Thread(target=self._listen, name="control", daemon=True).start()
        try:
            try:
                call_setup(self.job)  # FISSION's setup(root, ...) overrides work too
            except Exception:
                self._send(("error", f"setup() failed:\n{traceback.format_exc()}"))
                return "setup failed"
            self._send(("ready",))
            self._go.wait()
            if self._stopped.is_set():
                return "stopped"
            worker = threading.Thread(target=self._serve, name=f"job-{spec.job_id}", daemon=True)
            worker.start()
            reported = 0
            while worker.is_alive() and not self._stopped.is_set():
                worker.join(1.0)
                if runner.rounds_done != reported:  # for the record's rates
                    reported = runner.rounds_done
                    self._send(("progress", reported))
            if self._stopped.is_set():
                runner.stop()
                worker.join(2.0)  # a job stuck in its own code is left behind (daemon)
                return "stopped"
            for out in runner.outputs:
                out.finish()
            self._send(("done", runner.rounds_done, runner.errors))
            return f"finished after {runner.rounds_done} rounds"
        finally:
            runner.stop()
            for out in runner.outputs:
                out.close()
            links.stop()
            self.control.close()

    def _serve(self) -> None:
        assert self.runner is not None
        try:
            self.job.serve(_Guarded(self.runner))
        except Exception:
            self.runner.errors += 1
            self._send(("error", f"job {self.job.name} failed:\n{traceback.format_exc()}"))

    def _connect(self) -> ControlLink:
        last: OSError | None = None
        for host in self.spec.coordinator:
            try:
                return open_connection(host, self.spec.port, self.spec.coordinator_token)
            except OSError as exc:
                last = exc
        if self.spec.node == LOCAL_NODE:
            raise ConnectionError(
                f"cannot reach the coordinator at {self.spec.coordinator}: {last}"
            )
        try:
            # The client cannot be reached from here: it comes to this host's node.
            return await_coordinator(
                self.spec.coordinator_token,
                self.spec.job_id,
                self.spec.generation,
                timeout=COORDINATOR_TIMEOUT,
            )
        except ConnectionError as exc:
            raise ConnectionError(
                f"cannot reach the coordinator at {self.spec.coordinator} ({last}), "
                f"and it did not come through a channel ({exc})"
            ) from None

    def _send(self, message: Any) -> None:
        try:
            assert self.control is not None
            self.control.send(message)
        except OSError:
            self._stopped.set()

    def _listen(self) -> None:
        assert self.control is not None and self.runner is not None
        try:
            while True:
                message = self.control.receive()
                kind = message[0]
                if kind == "routes":
                    self._apply_routes(message[1])
                elif kind == "sources":
                    self.links.set_sources(message[1])
                elif kind == "reset":
                    self.runner.reset(message[1])
                elif kind == "go":
                    self._go.set()
                elif kind == "stop":
                    break
        except (EOFError, OSError):
            pass  # the coordinator is gone: stop, nobody would read our outputs
        # The run is stopping (or its coordinator is gone, which a controller
        # restart is not: control links do not go through the controller unless
        # the node serves no channels, and then this job is placed again): a pipe
        # must not hold its values for a receiver or controller stopping with it.
        for out in self.runner.outputs:
            out.give_up()
        self._stopped.set()
        self._go.set()
        self.runner.stop()

    def _apply_routes(self, routes: dict[int, Route | None]) -> None:
        assert self.runner is not None
        for out in self.runner.outputs:
            if out.pipe.id in routes:
                out.set_route(routes[out.pipe.id])

    def _deliver(self, pipe_id: int, segments: list[Segment]) -> None:
        pipe = next(p for p in self.job.inputs if p.id == pipe_id)
        if not pipe.transparent:
            from_wire = pipe.from_wire
            for segment in segments:
                segment[2] = [from_wire(data) for data in segment[2]]
        self._aligner.put_segments(pipe_id, segments)


class _Guarded:
    """The runner as the job sees it: a round whose ``run`` raises is reported and skipped."""

    def __init__(self, runner: JobRunner) -> None:
        self._runner = runner
        self.directory = runner.directory

    @property
    def stopping(self) -> bool:
        return self._runner.stopping

    def rounds(self) -> Iterator[tuple[Any, ...]]:
        return self._runner.rounds()

    @property
    def in_heads(self) -> tuple[Any, ...]:
        return self._runner.in_heads

    def failed(self) -> None:
        self._runner.failed()

    def emit(self, result: Any, heads: list[int] | None = None) -> None:
        self._runner._emit_guarded(result, heads)

    def emit_to(self, index: int, value: Any, head: int = 0) -> None:
        self._runner.emit_to(index, value, head)

    def produce(
        self, values: Iterable[Any], heads: Callable[[], list[int] | None] | None = None
    ) -> None:
        self._runner.produce(values, heads)


class _Forward:
    """A stdout that also sends each printed line to the coordinator."""

    def __init__(self, host: JobHost, original: Any) -> None:
        self._host, self._original, self._buffer = host, original, ""

    def write(self, text: str) -> int:
        self._original.write(text)
        self._buffer += text
        while "\n" in self._buffer:
            line, self._buffer = self._buffer.split("\n", 1)
            self._host._send(("print", line))
        return len(text)

    def flush(self) -> None:
        self._original.flush()


def write_files(directory: str, files: dict[str, bytes]) -> Path:
    """Write ``files`` (relative path -> data) under the job folder ``directory``
    (a relative one lives in the node's temp folder); return the folder."""
    folder = Path(tempfile.gettempdir()) / directory
    for relative, data in files.items():
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        if data.startswith(b"#!"):
            # Only bytes travel: a script keeps running as a program (FISSION's scp -p kept modes).
            target.chmod(0o755)
    return folder


class CopyFilesTask(Task):
    """PRE_COPY's pipeline task: job folder -> {relative path: data}, written on the node."""

    def __init__(self, files: dict[str, dict[str, bytes]]) -> None:
        super().__init__(name="dataflow-pre-copy")
        self.files = files

    def run(self) -> int:
        for directory, files in self.files.items():
            write_files(directory, files)
        return sum(len(f) for f in self.files.values())


class JobHostTask(Task):
    """The shoal pipeline task that hosts one dataflow job on a node."""

    def __init__(self, job: BaseJob, spec: HostSpec) -> None:
        super().__init__(name=f"dataflow-job-{spec.job_id}")
        classes = {type(job), *type(job).__mro__}
        classes |= {type(p) for p in [*job.inputs, *job.outputs]}
        # By value: the node cannot import the user's network package.
        self.job_bytes = serialize.dumps(job, classes)
        self.spec = spec

    def run(self) -> str:
        job = serialize.loads(self.job_bytes)
        assert isinstance(job, BaseJob)
        host = JobHost(job, self.spec)
        original, original_err = sys.stdout, sys.stderr
        if self.spec.forward_output:
            # What the job prints shows on the user's console, as FISSION's debug window did.
            sys.stdout = _Forward(host, original)  # type: ignore[assignment]
            sys.stderr = _Forward(host, original_err)  # type: ignore[assignment]
        try:
            # Relative paths in the job mean its own folder, as on a FISSION node.
            directory = Path(tempfile.gettempdir()) / self.spec.directory
            directory.mkdir(parents=True, exist_ok=True)
            self.spec.directory = str(directory)
            os.chdir(directory)
            return host.run()
        finally:
            sys.stdout, sys.stderr = original, original_err
