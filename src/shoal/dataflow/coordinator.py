"""The coordinator: the client process that places, wires and watches a network.

It allocates every job from the controller's live node list, starts each
placed job as a one-task shoal experiment on its node, runs the LOCAL jobs
in this process, and serves a small TCP control port that every job host
connects back to. Through it, hosts learn where their output pipes go and
when to start; the coordinator learns that a job is up, has finished, or is
gone. A host whose control connection drops, or whose node leaves the
controller's node list, is placed again by the same rules on the nodes left.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shoal.client.channels import ChannelError, ChannelListener
from shoal.client.remote import RemoteClient, RemoteClientException
from shoal.client.retry import RECONNECT_DEADLINE, retry_call
from shoal.dataflow.allocation import allocate, node_infos
from shoal.dataflow.errors import AllocationError, DataflowError
from shoal.dataflow.host import CopyFilesTask, HostSpec, JobHost, JobHostTask
from shoal.dataflow.jobs import BaseJob
from shoal.dataflow.network import Network, dependency_files
from shoal.dataflow.record import NetworkRecord
from shoal.dataflow.transport import TOKEN_BYTES, Route, channel_name, read_token
from shoal.dataflow.wire import FrameSocket
from shoal.model import Experiment, Pipeline

log = logging.getLogger("shoal.dataflow")

START_TIMEOUT = 60.0
# Placements in a row of one job that never started before the run fails: its
# host cannot reach this process (nor through the controller).
MAX_UNSTARTED = 3
NOT_STARTED = "it did not start"
# How long a channel listener lost with its controller is reopened for.
CHANNEL_DEADLINE = 2 * RECONNECT_DEADLINE
_PRINT_LOCK = threading.Lock()


@dataclass
class JobState:
    """What the coordinator knows of one job."""

    job: BaseJob
    local: bool
    generation: int = 0
    node: str | None = None
    experiment: str | None = None
    status: str = "pending"
    conn: FrameSocket | None = None
    port: int = 0
    addresses: list[str] = field(default_factory=list)
    restarts: list[str] = field(default_factory=list)
    unstarted: int = 0  # placements in a row that never started
    ready: bool = False
    started_at: float = 0.0
    output: Any = None
    rounds: int = 0
    errors: int = 0
    last_error: str | None = None


class Coordinator:
    """Runs a :class:`Network` on the nodes of a controller.

    ::

        network = load_network("examples/dataflow/demo_network_v3")
        with Coordinator(network, client, "simulation") as coordinator:
            coordinator.wait()

    ``max_rounds`` stops every source after that many values, so the network
    ends by itself; without it the network runs until :meth:`stop`.
    ``loopback`` says every node runs on this machine (simulate).

    A run that cannot go on (a job that never starts, the controller's channel
    gone for good) ends: :meth:`wait` returns and :attr:`error` says why.
    """

    def __init__(
        self,
        network: Network,
        client: RemoteClient,
        output_dir: str | Path,
        *,
        max_rounds: int | None = None,
        loopback: bool = False,
        poll_interval: float = 0.5,
        echo: bool = True,
        direct: bool = True,
    ) -> None:
        self.network = network
        self.client = client
        self.output_dir = Path(output_dir).resolve()
        self.max_rounds = max_rounds
        self.loopback = loopback
        self.poll_interval = poll_interval
        self.echo = echo
        self.run_id = secrets.token_hex(3)
        self.token = secrets.token_hex(TOKEN_BYTES // 2).encode()  # between job hosts
        # Job hosts reach the coordinator with a token of their own, so a host's
        # data server token (which every other host of the run holds) does not.
        self.control_token = secrets.token_hex(TOKEN_BYTES // 2).encode()
        self.epoch = 0
        self.states = {job.id: JobState(job, network.is_local(job)) for job in network.jobs}
        self.finished = threading.Event()
        self.changed = threading.Condition()
        self._lock = threading.RLock()
        self._client_lock = threading.Lock()
        self._stopping = threading.Event()
        self._started = False
        self._suspects: dict[str, bool] = {}  # node -> seen offline since suspected
        self._failovers: queue.Queue[tuple[int, int, str] | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._listener = socket.create_server(("127.0.0.1" if loopback else "0.0.0.0", 0))
        self.port = self._listener.getsockname()[1]
        # direct=False: hosts cannot reach this process (NAT); they come in
        # through the controller's channel, which is always open as well.
        self._client_hosts = self._own_addresses() if direct else []
        self._channel: ChannelListener | None = None
        self.error: str | None = None  # why the run ended before its jobs did
        self.record = NetworkRecord(self)  # its experiment record on the controller
        self._progress_reported = 0.0

    # ------------------------------------------------------------------ public

    def start(self, timeout: float = START_TIMEOUT) -> Coordinator:
        """Place and start every job; returns once all run (raises if one cannot start)."""
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.record.open()
        for job in self.network.jobs:
            folder = self.output_dir / str(job.id)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "info.txt").write_text(_info(job))
        self._spawn(self._accept, "control-accept")
        self._channel = self._open_channel()
        self._spawn(self._accept_channel, "channel-accept")
        try:
            placements = self._place_all()
            if self.network.pre_copy:
                self._pre_copy(timeout)
            for state in self.states.values():
                if state.local:
                    self._start_local(state)
            names = [self._prepare(state, node) for state, node in placements]
            for name in names:
                info = self._call(self.client.wait, name, until="ready", timeout=timeout)
                if info.status.name != "READY":
                    raise DataflowError(f"experiment {name} did not become READY: {info}")
            for name in names:
                self._call(self.client.start_execution, name)
            self._wait_all_ready(timeout)
        except BaseException:
            self.stop()
            raise
        with self._lock:
            self._started = True
            for state in self.states.values():
                self._send(state, ("go",))
        self._spawn(self._watch_nodes, "node-watch")
        self._spawn(self._run_failovers, "failover")
        self._save_state()
        log.info("network %s running: %s", self.network.name, self.placements())
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every job finished (True) or ``timeout`` passed (False)."""
        return self.finished.wait(timeout)

    def summary(self) -> str:
        """``"<rounds> rounds, <errors> errors"`` over every job that reported."""
        with self._lock:
            states = list(self.states.values())
        rounds = sum(s.rounds for s in states)
        return f"{rounds} rounds, {sum(s.errors for s in states)} errors"

    def placements(self) -> dict[int, str]:
        """Job id -> where it runs now (``client`` for LOCAL jobs)."""
        return {
            i: ("client" if s.local else (s.node or "-")) for i, s in sorted(self.states.items())
        }

    def wait_for(self, predicate: Any, timeout: float) -> bool:
        """Block until ``predicate(coordinator)`` holds (checked on every change)."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.changed.wait(left)
        return True

    def stop(self) -> None:
        """Stop every job, cancel their experiments, close the control port."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._failovers.put(None)
        with self._lock:
            states = list(self.states.values())
        for state in states:
            self._send(state, ("stop",))
        for state in states:
            if state.experiment is not None:
                # Already finished, or its node is gone: nothing left to cancel.
                with contextlib.suppress(RemoteClientException):
                    self._call(self.client.cancel_experiment, state.experiment)
        _close_listener(self._listener)
        if self._channel is not None:
            self._channel.close()
        for state in states:
            if state.conn is not None:
                state.conn.close()
            if state.output is not None:
                state.output.close()
        for thread in self._threads:
            thread.join(5)
        self._save_state()
        self.record.close()

    def __enter__(self) -> Coordinator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --------------------------------------------------------------- placement

    def _live_infos(self, state: JobState, exclude: set[str]) -> list[Any]:
        nodes = self._call(self.client.get_nodes)
        counts: dict[str, int] = {}
        for other in self.states.values():
            active = other.status not in ("done", "failed")
            if other.node and not other.local and active and other is not state:
                counts[other.node] = counts.get(other.node, 0) + 1
        neighbours = [
            n for i in self.network.neighbours(state.job) if (n := self.states[i].node) is not None
        ]
        return node_infos(nodes, self.network.nodes, counts, exclude, neighbours)

    def _place(self, state: JobState) -> str:
        suspects = set(self._suspects)
        infos = self._live_infos(state, suspects)
        try:
            chosen = allocate(state.job, infos)
        except AllocationError:
            if not suspects:
                raise
            # Only a suspect node fits: it may have lost the job, not its life.
            chosen = allocate(state.job, self._live_infos(state, set()))
        state.node = chosen.name
        return chosen.name

    def _place_all(self) -> list[tuple[JobState, str]]:
        placements = []
        for state in self.states.values():
            if not state.local:
                placements.append((state, self._place(state)))
        return placements

    def _prepare(self, state: JobState, node: str) -> str:
        state.generation += 1
        state.ready = False
        state.status = "starting"
        state.started_at = time.monotonic()
        name = f"dataflow-{self.network.name}-{self.run_id}-job{state.job.id}-g{state.generation}"
        state.experiment = name
        directory = self._directory(state.job)
        spec = HostSpec(
            job_id=state.job.id,
            generation=state.generation,
            coordinator=tuple(self._client_hosts),
            port=self.port,
            token=self.token,
            coordinator_token=self.control_token,
            directory=directory,
            node=node,
            # With PRE_COPY every node has them already.
            files={} if self.network.pre_copy else self._dependencies(state.job),
        )
        pipeline = Pipeline(JobHostTask(state.job, spec), name=f"job-{state.job.id}")
        experiment = Experiment().append(node, pipeline)
        self._call(self.client.prepare_experiment, experiment, name)
        log.info("job %s placed on %s (%s)", state.job.name, node, name)
        return name

    def _directory(self, job: BaseJob) -> str:
        """The job's folder on its node (relative: under the node's temp folder)."""
        if self.loopback:
            return str(self.output_dir / str(job.id))
        return f"shoal-dataflow/{self.network.name}/{job.id}"

    def _pre_copy(self, timeout: float) -> None:
        """PRE_COPY: every job's dependencies onto every node now, so a failover
        does not wait for them."""
        files = {
            self._directory(state.job): self._dependencies(state.job)
            for state in self.states.values()
            if not state.local and state.job.DEPENDENCIES
        }
        if not files:
            return
        online = {n.name for n in self._call(self.client.get_nodes)}
        nodes = [n.name for n in self.network.nodes if n.name in online]
        name = f"dataflow-{self.network.name}-{self.run_id}-pre-copy"
        experiment = Experiment()
        for node in nodes:
            experiment.append(node, Pipeline(CopyFilesTask(files), name="pre-copy"))
        self._call(self.client.prepare_experiment, experiment, name)
        self._call(self.client.wait, name, until="ready", timeout=timeout)
        self._call(self.client.start_execution, name)
        info = self._call(self.client.wait, name, timeout=timeout)
        if info.status.name != "FINISHED":
            raise DataflowError(f"PRE_COPY: copying the dependencies failed: {info}")
        log.info("PRE_COPY: dependencies copied to %s", ", ".join(nodes))

    def _dependencies(self, job: BaseJob) -> dict[str, bytes]:
        return dependency_files(self.network.directory, job)

    def _start_local(self, state: JobState) -> None:
        state.generation += 1
        state.status = "starting"
        state.node = "client"
        spec = HostSpec(
            job_id=state.job.id,
            generation=state.generation,
            coordinator=("127.0.0.1",),
            port=self.port,
            token=self.token,
            coordinator_token=self.control_token,
            directory=str(self.output_dir / str(state.job.id)),
            node="client",
            forward_output=False,
        )
        host = JobHost(state.job, spec)
        self._spawn(host.run, f"local-job-{state.job.id}")

    def _wait_all_ready(self, timeout: float) -> None:
        ok = self.wait_for(lambda c: all(s.ready for s in c.states.values()), timeout)
        if not ok:
            late = [s.job.name for s in self.states.values() if not s.ready]
            raise DataflowError(f"jobs not running after {timeout:g} s: {late}")

    # ----------------------------------------------------------------- control

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            self._spawn(lambda s=sock: self._serve_host(s), "control")

    def _open_channel(self) -> ChannelListener:
        """Listen on the run's channel through the controller, retrying while it restarts."""
        return retry_call(
            lambda: ChannelListener(
                self.client.endpoint,
                self._call(self.client.token),
                channel_name(self.control_token),
                # the executors of this run's jobs may connect (see _prepare's names)
                experiments=f"dataflow-{self.network.name}-{self.run_id}-",
            ),
            what="listening on the coordinator's channel through the controller",
            retry_on=(ChannelError, RemoteClientException),
            deadline=CHANNEL_DEADLINE,
            stop_event=self._stopping,
        )

    def _accept_channel(self) -> None:
        """Hand each host that comes in through the controller to its own thread.

        The listener lives on the controller: when the controller restarts it
        is gone, and it is opened again (hosts placed meanwhile retry their
        connection). If it cannot be for CHANNEL_DEADLINE, the run fails.
        """
        while not self._stopping.is_set():
            channel = self._channel
            assert channel is not None
            try:
                sock = channel.accept()
            except ChannelError as exc:
                if self._stopping.is_set():
                    return
                log.warning("the channel through the controller closed (%s); reopening it", exc)
                try:
                    self._channel = self._open_channel()
                except (ChannelError, RemoteClientException) as again:
                    if not self._stopping.is_set():
                        self._fail_run(
                            "the channel through the controller was lost and could not be "
                            f"opened again in {CHANNEL_DEADLINE:g} s: {again}"
                        )
                    return
                if self._stopping.is_set():
                    self._channel.close()
                continue
            self._spawn(lambda s=sock: self._serve_host(s), "control")

    def _serve_host(self, sock: socket.socket) -> None:
        if not read_token(sock, self.control_token):
            sock.close()
            return
        # Only plain values from hosts: a node must not get code run in the client.
        conn = FrameSocket(sock, plain=True)
        try:
            hello = conn.receive()
        except (EOFError, OSError):
            conn.close()
            return
        if hello[0] == "relay":
            self._relay(conn, *hello[1:])
            return
        _, job_id, generation, port, addresses, _node, _pid = hello
        with self._lock:
            state = self.states.get(job_id)
            if state is None or state.generation != generation or self._stopping.is_set():
                conn.send(("stop",))
                conn.close()
                return
            state.conn, state.port, state.addresses = conn, port, list(addresses)
            state.status = "setup"
            routes = {p.id: self._route(p.id) for p in state.job.outputs}
            conn.send(("welcome", routes, self.epoch, self.max_rounds))
            self._announce(state)
        try:
            while True:
                message = conn.receive()
                self._on_message(state, generation, message)
        except (EOFError, OSError):
            pass
        with self._lock:
            current = state.generation == generation
            if current:
                state.conn = None
            lost = (
                current and state.status not in ("done", "failed") and not self._stopping.is_set()
            )
        conn.close()
        if lost:
            self._failovers.put((job_id, generation, "its host's connection dropped"))

    def _on_message(self, state: JobState, generation: int, message: Any) -> None:
        kind = message[0]
        if kind == "print":
            self._print(state, message[1])
        elif kind == "ready":
            with self._lock:
                state.ready = True
                state.unstarted = 0
                state.status = "running"
                restarted = self._started and state.generation == generation
                if restarted:
                    # The network lines up again from a new epoch of source rounds.
                    self.epoch += 1
                    for other in self.states.values():
                        self._send(other, ("reset", self.epoch))
                    self._send(state, ("go",))
            self._notify()
            self._save_state()
        elif kind == "done":
            with self._lock:
                state.status = "done"
                state.rounds, state.errors = message[1], state.errors + message[2]
            log.info("job %s finished (%s rounds, %s errors)", state.job.name, *message[1:3])
            self._check_finished()
        elif kind == "error":
            with self._lock:
                state.status = "failed"
                state.errors += 1
                state.last_error = str(message[1])
            log.error("job %s: %s", state.job.name, message[1])
            self._check_finished()
        elif kind == "progress":
            # Rounds so far, about once a second from a running job: the record
            # (and the dashboard's rates) follow them, at most once a second.
            with self._lock:
                state.rounds = int(message[1])
            now = time.monotonic()
            if now - self._progress_reported >= 1.0:
                self._progress_reported = now
                self.record.report()

    def _announce(self, state: JobState) -> None:
        """Tell the jobs that write to ``state``'s inputs where it listens now."""
        for pipe in state.job.inputs:
            source = self.states[self.network.pipes[pipe.id].source]
            self._send(source, ("routes", {pipe.id: self._route(pipe.id)}))

    def _route(self, pipe_id: int) -> Route | None:
        ends = self.network.pipes[pipe_id]
        dest, src = self.states[ends.destination], self.states[ends.source]
        if dest.conn is None:
            return None
        loop = [a for a in dest.addresses if a.startswith("127.")] or ["127.0.0.1"]
        remote = [a for a in dest.addresses if not a.startswith("127.")]
        same_node = dest.node == src.node or self.loopback
        hosts = (*loop, *remote) if same_node else (*remote, *loop)
        # The coordinator relays when the sender cannot reach the receiver (NAT,
        # firewalls); the sender comes through the controller if not directly.
        relay = (self._client_hosts[0], self.port) if self._client_hosts else None
        return Route(hosts, dest.port, dest.job.id, dest.generation, relay)

    def _send(self, state: JobState, message: Any) -> None:
        conn = state.conn
        if conn is None:
            return
        # On error its reader notices the drop and fails the job over.
        with contextlib.suppress(OSError):
            conn.send(message)

    def _relay(self, conn: FrameSocket, pipe_id: int, job_id: int, generation: int) -> None:
        """Carry a pipe for hosts that cannot reach each other, over the receiver's control link."""
        state = self.states.get(job_id)
        try:
            while state is not None and state.generation == generation:
                # Passed on as it came: values are never unpickled in the client.
                frame = conn.receive_raw()
                if state.generation != generation:
                    return  # the receiver moved: the sender reconnects on its new route
                self._send(state, ("relayed", pipe_id, frame))
        except (EOFError, OSError):
            return
        finally:
            conn.close()

    def _print(self, state: JobState, line: str) -> None:
        if self.echo:
            with _PRINT_LOCK:  # one line at a time from the many host threads
                print(
                    f"[{state.job.id} {type(state.job).__name__}@{state.node}] {line}", flush=True
                )
        if state.output is None:
            state.output = open(self.output_dir / str(state.job.id) / "output.log", "a")  # noqa: SIM115
        state.output.write(line + "\n")
        state.output.flush()

    def _check_finished(self) -> None:
        self._notify()
        self._save_state()
        with self._lock:
            if all(s.status in ("done", "failed") for s in self.states.values()):
                self.finished.set()

    def _notify(self) -> None:
        with self.changed:
            self.changed.notify_all()

    def _fail_run(self, error: str) -> None:
        """End the run: it cannot go on. :meth:`wait` returns; :attr:`error` says why."""
        log.error("network %s failed: %s", self.network.name, error)
        with self._lock:
            if self.error is None:
                self.error = error
            for state in self.states.values():
                if state.status != "done":
                    state.status = "failed"
        self._failovers.put(None)
        self._notify()
        self._save_state()
        self.finished.set()

    def _cancel_run(self, reason: str) -> None:
        """End the run because its user cancelled it: :meth:`wait` returns."""
        log.warning("network %s: %s", self.network.name, reason)
        with self._lock:
            if self.error is None:
                self.error = reason
        self._failovers.put(None)
        self._notify()
        self.finished.set()

    # ---------------------------------------------------------------- failover

    def _watch_nodes(self) -> None:
        polls = 0
        while not self._stopping.wait(self.poll_interval):
            polls += 1
            if polls % 4 == 0:
                self.record.check()
            try:
                online = {n.name for n in self._call(self.client.get_nodes)}
            except RemoteClientException as exc:
                log.warning("cannot list nodes: %s", exc)
                continue
            with self._lock:
                for name in list(self._suspects):
                    if name not in online:
                        self._suspects[name] = True
                    elif self._suspects[name]:
                        del self._suspects[name]  # it went away and came back: usable again
                for state in self.states.values():
                    if state.local or state.status in ("done", "failed", "placing"):
                        continue
                    if state.node is not None and state.node not in online:
                        self._failovers.put(
                            (state.job.id, state.generation, f"node {state.node} went offline")
                        )
                    elif (
                        not state.ready
                        and state.conn is None
                        and time.monotonic() - state.started_at > START_TIMEOUT
                    ):
                        self._failovers.put((state.job.id, state.generation, NOT_STARTED))

    def _run_failovers(self) -> None:
        while True:
            item = self._failovers.get()
            if item is None or self._stopping.is_set():
                return
            job_id, generation, reason = item
            state = self.states[job_id]
            if state.generation != generation or state.status in ("done", "failed", "placing"):
                continue  # already handled
            if reason == NOT_STARTED:
                state.unstarted += 1
                if state.unstarted >= MAX_UNSTARTED:
                    how = "" if self._client_hosts else " through the controller"
                    self._fail_run(
                        f"job {state.job.name} did not start in {state.unstarted} placements "
                        f"in a row ({START_TIMEOUT:g} s each, last on {state.node}): its host "
                        f"cannot reach this coordinator{how}"
                    )
                    return
            self._fail_over(state, reason)

    def _fail_over(self, state: JobState, reason: str) -> None:
        old_node, old_experiment = state.node, state.experiment
        with self._lock:
            state.status = "placing"
            state.ready = False
            if old_node is not None:
                self._suspects.setdefault(old_node, False)
        log.warning("job %s lost on %s: %s", state.job.name, old_node, reason)
        if old_experiment is not None:
            # Its node is gone: the controller marks the experiment lost by itself.
            with contextlib.suppress(RemoteClientException):
                self._call(self.client.cancel_experiment, old_experiment)
        while not self._stopping.is_set():
            try:
                node = self._place(state)
                name = self._prepare(state, node)
                self._call(self.client.wait, name, until="ready", timeout=START_TIMEOUT)
                self._call(self.client.start_execution, name)
            except (AllocationError, RemoteClientException, TimeoutError) as exc:
                log.error("job %s cannot be placed again yet: %s", state.job.name, exc)
                self._stopping.wait(self.poll_interval * 4)
                continue
            entry = f"{time.strftime('%H:%M:%S')} {old_node} -> {node}: {reason}"
            state.restarts.append(entry)
            log.warning(
                "job %s restarted on %s (was %s): %s", state.job.name, node, old_node, reason
            )
            self._notify()
            self._save_state()
            return

    # ------------------------------------------------------------------ helpers

    def _call(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        with self._client_lock:  # one HTTP client, used from several threads
            return method(*args, **kwargs)

    def _spawn(self, target: Any, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _own_addresses(self) -> list[str]:
        if self.loopback:
            return ["127.0.0.1"]
        found = []
        if self.network.client_ip:
            found.append(self.network.client_ip)
        host = self.client.endpoint.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.connect((host.strip("[]"), 9))  # no packet: just picks the route
                found.append(probe.getsockname()[0])
        except OSError:
            pass
        found.append("127.0.0.1")
        return list(dict.fromkeys(found))

    def _save_state(self) -> None:
        with self._lock:
            data = {
                "network": self.network.name,
                "epoch": self.epoch,
                "jobs": {
                    str(i): {
                        "job": s.job.name,
                        "node": "client" if s.local else s.node,
                        "status": s.status,
                        "generation": s.generation,
                        "restarts": s.restarts,
                    }
                    for i, s in sorted(self.states.items())
                },
            }
        try:
            tmp = self.output_dir / "state.json.tmp"
            tmp.write_text(json.dumps(data, indent=1))
            tmp.replace(self.output_dir / "state.json")
        except OSError as exc:
            log.debug("cannot save state: %s", exc)
        if not self._stopping.is_set():
            self.record.report()


def _info(job: BaseJob) -> str:
    return (
        f"job {job.id}: {type(job).__module__}.{type(job).__qualname__}\n"
        f"inputs: {job.inputs}\noutputs: {job.outputs}\n"
    )


def _close_listener(listener: socket.socket) -> None:
    # close() alone does not wake a thread blocked in accept(); shutdown() does.
    with contextlib.suppress(OSError):
        listener.shutdown(socket.SHUT_RDWR)
    listener.close()
