"""The coordinator: the client process that places, wires and watches a network.

It allocates every job from the controller's live node list, starts each
placed job as a one-task shoal experiment on its node (:mod:`.placement`),
runs the LOCAL jobs in this process, and serves a small TCP control port that
every job host connects back to (:mod:`.control`; one that cannot is reached by
a channel this process opens to it, :mod:`.control_reach`). Through it, hosts
learn where their output pipes go (:mod:`.routing`) and when to start; the
coordinator learns that a job is up, has finished, or is gone. A host whose control connection
drops, or whose node leaves the controller's node list, is placed again by the
same rules on the nodes left (:mod:`.failover`).

This module holds the run itself: starting, waiting for and stopping it, and
the state the parts above share.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import threading
import time
from pathlib import Path
from typing import Any

from shoal.channel import ChannelUnavailable
from shoal.client.remote import RemoteClient, RemoteClientException
from shoal.dataflow.control import ControlServer
from shoal.dataflow.control_link import TOKEN_BYTES
from shoal.dataflow.control_reach import HostReacher
from shoal.dataflow.errors import DataflowError
from shoal.dataflow.failover import MAX_UNSTARTED, NOT_STARTED, Failover
from shoal.dataflow.job_state import JobState
from shoal.dataflow.jobs import BaseJob
from shoal.dataflow.network import Network
from shoal.dataflow.placement import START_TIMEOUT, Placement
from shoal.dataflow.record import NetworkRecord
from shoal.dataflow.routing import client_addresses, pipe_route, source_route
from shoal.dataflow.transport import Reach, Route

__all__ = [
    "MAX_UNSTARTED",
    "NOT_STARTED",
    "START_TIMEOUT",
    "Coordinator",
    "JobState",
]

log = logging.getLogger("shoal.dataflow")

# How long a stopping run waits for its turn at the controller's client: another
# thread may be retrying a call to a controller that is away, for up to the
# client's retry deadline (30 s), and a Ctrl-C must not wait for that.
STOP_CALL_WAIT = 5.0


class Coordinator:
    """Runs a :class:`Network` on the nodes of a controller.

    ::

        network = load_network("examples/dataflow/demo_network_v3")
        with Coordinator(network, client, "simulation") as coordinator:
            coordinator.wait()

    ``max_rounds`` stops every source after that many values, so the network
    ends by itself; without it the network runs until :meth:`stop`.
    ``loopback`` says every node runs on this machine (simulate).

    A run that cannot go on (a job that never starts) ends: :meth:`wait`
    returns and :attr:`error` says why.
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
        # The parts of a run share these: its jobs' states are changed under
        # ``lock``; ``stopping`` is set once stop() began.
        self.lock = threading.RLock()
        self._save_lock = threading.Lock()
        self.stopping = threading.Event()
        self.started = False
        self._client_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.control = ControlServer(self, "127.0.0.1" if loopback else "0.0.0.0")
        self.port = self.control.port
        # direct=False: hosts cannot reach this process (NAT); this process
        # opens their control links, as channels to their nodes.
        if not direct:
            self.client_hosts: list[str] = []
        elif loopback:
            self.client_hosts = ["127.0.0.1"]
        else:
            self.client_hosts = client_addresses(network, client.endpoint)
        self.reacher = HostReacher(self)
        self.placement = Placement(self)
        self.failover = Failover(self)
        self.error: str | None = None  # why the run ended before its jobs did
        self.record = NetworkRecord(self)  # its experiment record on the controller

    # ------------------------------------------------------------------ public

    def start(self, timeout: float = START_TIMEOUT) -> Coordinator:
        """Place and start every job; returns once all run (raises if one cannot start)."""
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.record.open()
        for job in self.network.jobs:
            folder = self.output_dir / str(job.id)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "info.txt").write_text(_info(job))
        self.spawn(self.control.accept, "control-accept")
        self.spawn(self.reacher.watch, "reach-hosts")
        try:
            placements = self.placement.place_all()
            if self.network.pre_copy:
                self.placement.pre_copy(timeout)
            for state in self.states.values():
                if state.local:
                    self.placement.start_local(state)
            names = [self.placement.prepare(state, node) for state, node in placements]
            for name in names:
                info = self.call(self.client.wait, name, until="ready", timeout=timeout)
                if info.status.name != "READY":
                    raise DataflowError(f"experiment {name} did not become READY: {info}")
            for name in names:
                self.call(self.client.start_execution, name)
            self._wait_all_ready(timeout)
        except BaseException:
            self.stop()
            raise
        with self.lock:
            self.started = True
            for state in self.states.values():
                state.send(("go",))
        self.spawn(self.failover.watch_nodes, "node-watch")
        self.spawn(self.failover.serve, "failover")
        self.save_state()
        log.info("network %s running: %s", self.network.name, self.placements())
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every job finished (True) or ``timeout`` passed (False)."""
        return self.finished.wait(timeout)

    def summary(self) -> str:
        """``"<rounds> rounds, <errors> errors"`` over every job that reported."""
        with self.lock:
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

    def route(self, pipe_id: int) -> Route | None:
        """Where pipe ``pipe_id``'s sender sends now (None: its receiver is not connected)."""
        return pipe_route(self.network, self.states, pipe_id, self.token)

    def source_route(self, pipe_id: int) -> Route | None:
        """Where pipe ``pipe_id``'s LOCAL receiver takes it from (None: not its business)."""
        return source_route(self.network, self.states, pipe_id, self.token)

    def reach(self) -> Reach:
        """How this process's LOCAL job hosts open their channels."""
        return Reach(self.client.endpoint, self._channel_token)

    def _channel_token(self) -> str:
        """The client's token for a LOCAL host's channel. Never waits long for the
        client (another thread may be retrying a call to a controller that is
        away): its pipe tries again later, and the process can exit meanwhile."""
        if self.stopping.is_set() or not self._client_lock.acquire(timeout=STOP_CALL_WAIT):
            raise ChannelUnavailable("the controller's client is busy or the run is stopping")
        try:
            return self.client.token()
        except RemoteClientException as exc:
            raise ChannelUnavailable(f"no token from the controller: {exc}") from None
        finally:
            self._client_lock.release()

    def stop(self) -> None:
        """Stop every job, cancel their experiments, close the control port."""
        if self.stopping.is_set():
            return
        self.stopping.set()
        self.failover.end()
        with self.lock:
            states = list(self.states.values())
        for state in states:
            state.send(("stop",))
        # A controller that is away (it died, or restarts) is not waited for: the
        # hosts were told to stop above, and end their experiments by ending.
        answers = self._controller_answers()
        if not answers:
            log.warning("the controller does not answer: the run stops without it")
        for state in states:
            if answers and state.experiment is not None:
                # Already finished, or its node is gone: nothing left to cancel.
                with contextlib.suppress(RemoteClientException):
                    self.call(self.client.cancel_experiment, state.experiment)
        self.control.close()
        for state in states:
            if state.conn is not None:
                state.conn.close()
            if state.output is not None:
                state.output.close()
        for thread in self._threads:
            thread.join(5)
        self.save_state()
        if answers:
            self.record.close()

    def _controller_answers(self) -> bool:
        """Whether the controller answers now (asked once, without retrying)."""
        if not self._client_lock.acquire(timeout=STOP_CALL_WAIT):
            return False  # another thread is still retrying a call to it
        try:
            return self.client.healthcheck()
        finally:
            self._client_lock.release()

    def __enter__(self) -> Coordinator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------- shared by a run's parts

    def check_finished(self) -> None:
        """A job ended: the run has finished once every job has."""
        self.save_state()
        with self.lock:
            if all(s.status in ("done", "failed") for s in self.states.values()):
                self.finished.set()

    def notify(self) -> None:
        """Wake :meth:`wait_for`: a job's state changed."""
        with self.changed:
            self.changed.notify_all()

    def fail_run(self, error: str) -> None:
        """End the run: it cannot go on. :meth:`wait` returns; :attr:`error` says why."""
        log.error("network %s failed: %s", self.network.name, error)
        with self.lock:
            if self.error is None:
                self.error = error
            for state in self.states.values():
                if state.status != "done":
                    state.status = "failed"
        self.failover.end()
        self.save_state()
        self.finished.set()

    def cancel_run(self, reason: str) -> None:
        """End the run because its user cancelled it: :meth:`wait` returns."""
        log.warning("network %s: %s", self.network.name, reason)
        with self.lock:
            if self.error is None:
                self.error = reason
        self.failover.end()
        self.notify()
        self.finished.set()

    def call(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        """Call the controller client's ``method``: one HTTP client, used from many threads."""
        with self._client_lock:
            return method(*args, **kwargs)

    def spawn(self, target: Any, name: str) -> None:
        """Run ``target`` in a thread that :meth:`stop` joins."""
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def save_state(self) -> None:
        """A job's state changed: write ``state.json`` in the output folder, wake
        :meth:`wait_for`, and report to the run's record.

        The file is written before waiters wake, so whoever waited for a change
        (``shoal dataflow show``, a test) finds it on disk; one save at a time,
        so an older snapshot never replaces a newer one."""
        with self._save_lock:
            self._write_state()
        self.notify()
        if not self.stopping.is_set():
            self.record.report()

    def _write_state(self) -> None:
        with self.lock:
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

    def _wait_all_ready(self, timeout: float) -> None:
        ok = self.wait_for(lambda c: all(s.ready for s in c.states.values()), timeout)
        if not ok:
            late = [s.job.name for s in self.states.values() if not s.ready]
            raise DataflowError(f"jobs not running after {timeout:g} s: {late}")


def _info(job: BaseJob) -> str:
    return (
        f"job {job.id}: {type(job).__module__}.{type(job).__qualname__}\n"
        f"inputs: {job.inputs}\noutputs: {job.outputs}\n"
    )
