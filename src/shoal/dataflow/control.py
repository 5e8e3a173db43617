"""The coordinator's control port: every job host connects back to it (or, when
it cannot, the coordinator opens a channel to the host: :mod:`.control_reach`).

A host opens with the coordinator's token and a hello (its job, generation
and node); it is told where its pipes' other ends are (:mod:`.routing`) and
when to start, and reports that it is ready, its progress, that it is done or
failed, and what its job prints. Pipes themselves never come here: they are
channels between the hosts.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

from shoal.dataflow.control_link import ControlLink, read_token
from shoal.dataflow.job_state import JobState

if TYPE_CHECKING:
    from shoal.dataflow.coordinator import Coordinator

log = logging.getLogger("shoal.dataflow")

_PRINT_LOCK = threading.Lock()


class ControlServer:
    """Serves the control connections of one run's job hosts."""

    def __init__(self, run: Coordinator, host: str) -> None:
        self.run = run
        self._listener = socket.create_server((host, 0))
        self.port: int = self._listener.getsockname()[1]
        self._progress_reported = 0.0

    def accept(self) -> None:
        """Hand each host that connects to its own thread, until :meth:`close`."""
        while not self.run.stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            self.run.spawn(lambda s=sock: self.serve_host(s), "control")

    def close(self) -> None:
        # close() alone does not wake a thread blocked in accept(); shutdown() does.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()

    def serve_host(self, sock: socket.socket) -> None:
        """One host's direct connection, until it drops."""
        if not read_token(sock, self.run.control_token):
            sock.close()
            return
        # Only plain values from hosts: a node must not get code run in the client.
        self.serve_link(ControlLink(sock, plain=True))

    def serve_link(self, conn: ControlLink) -> None:
        """One host's control link (its direct connection, or the channel this
        coordinator opened to it, :mod:`.control_reach`), until it drops."""
        run = self.run
        try:
            hello = conn.receive()
            _, job_id, generation, _node, _pid = hello
        except (EOFError, OSError, ValueError, TypeError):
            conn.close()
            return
        with run.lock:
            state = run.states.get(job_id)
            if state is None or state.generation != generation or run.stopping.is_set():
                conn.send(("stop",))
                conn.close()
                return
            state.conn = conn
            state.status = "setup"
            routes = {p.id: run.route(p.id) for p in state.job.outputs}
            sources = {p.id: run.source_route(p.id) for p in state.job.inputs}
            conn.send(("welcome", routes, sources, run.epoch, run.max_rounds))
            self._announce(state)
        try:
            while True:
                message = conn.receive()
                self._on_message(state, generation, message)
        except (EOFError, OSError):
            pass
        with run.lock:
            current = state.generation == generation
            if current:
                state.conn = None
            lost = current and state.status not in ("done", "failed") and not run.stopping.is_set()
        conn.close()
        if lost:
            run.failover.report(job_id, generation, "its host's connection dropped")

    def _on_message(self, state: JobState, generation: int, message: Any) -> None:
        run = self.run
        kind = message[0]
        if kind == "print":
            self._print(state, message[1])
        elif kind == "ready":
            with run.lock:
                state.ready = True
                state.unstarted = 0
                state.status = "running"
                restarted = run.started and state.generation == generation
                if restarted:
                    # The network lines up again from a new epoch of source rounds.
                    run.epoch += 1
                    for other in run.states.values():
                        other.send(("reset", run.epoch))
                    state.send(("go",))
            run.save_state()
        elif kind == "done":
            with run.lock:
                state.status = "done"
                state.rounds, state.errors = message[1], state.errors + message[2]
            log.info("job %s finished (%s rounds, %s errors)", state.job.name, *message[1:3])
            run.check_finished()
        elif kind == "error":
            with run.lock:
                state.status = "failed"
                state.errors += 1
                state.last_error = str(message[1])
            log.error("job %s: %s", state.job.name, message[1])
            run.check_finished()
        elif kind == "progress":
            # Rounds so far, about once a second from a running job: the record
            # (and the dashboard's rates) follow them, at most once a second.
            with run.lock:
                state.rounds = int(message[1])
            now = time.monotonic()
            if now - self._progress_reported >= 1.0:
                self._progress_reported = now
                run.record.report()

    def _announce(self, state: JobState) -> None:
        """Tell the jobs that write to ``state``'s inputs where it is now, and the
        LOCAL jobs that read its outputs (they open those channels)."""
        run = self.run
        for pipe in state.job.inputs:
            source = run.states[run.network.pipes[pipe.id].source]
            source.send(("routes", {pipe.id: run.route(pipe.id)}))
        for pipe in state.job.outputs:
            destination = run.states[run.network.pipes[pipe.id].destination]
            if destination.local:
                destination.send(("sources", {pipe.id: run.source_route(pipe.id)}))

    def _print(self, state: JobState, line: str) -> None:
        run = self.run
        if run.echo:
            with _PRINT_LOCK:  # one line at a time from the many host threads
                print(
                    f"[{state.job.id} {type(state.job).__name__}@{state.node}] {line}", flush=True
                )
        if state.output is None:
            state.output = open(run.output_dir / str(state.job.id) / "output.log", "a")  # noqa: SIM115
        state.output.write(line + "\n")
        state.output.flush()
