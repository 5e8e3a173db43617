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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shoal.client import serialize
from shoal.dataflow.control_link import ControlLink, await_coordinator, open_connection
from shoal.dataflow.job_runner import GuardedRunner, JobRunner
from shoal.dataflow.jobs import BaseJob, call_setup
from shoal.dataflow.out_pipe import OutPipe
from shoal.dataflow.rounds import InputAligner
from shoal.dataflow.segments import Segment
from shoal.dataflow.transport import LOCAL_NODE, PipeLinks, Reach, Route
from shoal.model.pipeline import Task

log = logging.getLogger("shoal.dataflow")

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
            self.job.serve(GuardedRunner(self.runner))
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
