"""Failover: a job whose host is lost is placed again, by the same rules, on the nodes left.

A host is lost when its control connection drops, when its node leaves the
controller's node list (at once if its connection is down too, else after
NODE_GRACE: a controller that restarts lists its nodes only as they connect
back, while their jobs run on), or when it never connects back after being
placed.
The node it was on is suspect: avoided while another node fits, and usable
again once it has gone offline and come back.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import time
from typing import TYPE_CHECKING

from shoal.client.remote import RemoteClientException
from shoal.dataflow.errors import AllocationError
from shoal.dataflow.job_state import JobState
from shoal.dataflow.placement import START_TIMEOUT

if TYPE_CHECKING:
    from shoal.dataflow.coordinator import Coordinator

log = logging.getLogger("shoal.dataflow")

# Placements in a row of one job that never started before the run fails: its
# host cannot reach this process (nor through the controller).
MAX_UNSTARTED = 3
NOT_STARTED = "it did not start"
# Seconds a node may be missing from the controller's list while its job's
# control connection stays up (agents reconnect within a few seconds of a
# controller restart).
NODE_GRACE = 10.0


class Failover:
    """Notices lost jobs of one run and places them again, one at a time."""

    def __init__(self, run: Coordinator) -> None:
        self.run = run
        self.suspects: dict[str, bool] = {}  # node -> seen offline since suspected
        self._missing: dict[str, float] = {}  # node -> when it was first missing from the list
        self._lost: queue.Queue[tuple[int, int, str] | None] = queue.Queue()

    def report(self, job_id: int, generation: int, reason: str) -> None:
        """Job ``job_id``'s host of ``generation`` is lost for ``reason``."""
        self._lost.put((job_id, generation, reason))

    def end(self) -> None:
        """Wake :meth:`serve` so it returns: the run is over."""
        self._lost.put(None)

    def watch_nodes(self) -> None:
        """Poll the controller's node list: a job on a node gone offline, or one
        that never connected back, is lost."""
        run = self.run
        polls = 0
        while not run.stopping.wait(run.poll_interval):
            polls += 1
            if polls % 4 == 0:
                run.record.check()
            try:
                online = {n.name for n in run.call(run.client.get_nodes)}
            except RemoteClientException as exc:
                log.warning("cannot list nodes: %s", exc)
                continue
            now = time.monotonic()
            self._missing = {name: self._missing.get(name, now) for name in self._placed() - online}
            with run.lock:
                for name in list(self.suspects):
                    if name not in online:
                        self.suspects[name] = True
                    elif self.suspects[name]:
                        del self.suspects[name]  # it went away and came back: usable again
                for state in run.states.values():
                    if state.local or state.status in ("done", "failed", "placing"):
                        continue
                    missing = self._missing.get(state.node or "")
                    if missing is not None and (state.conn is None or now - missing > NODE_GRACE):
                        self.report(
                            state.job.id, state.generation, f"node {state.node} went offline"
                        )
                    elif (
                        not state.ready
                        and state.conn is None
                        and time.monotonic() - state.started_at > START_TIMEOUT
                    ):
                        self.report(state.job.id, state.generation, NOT_STARTED)

    def _placed(self) -> set[str]:
        """The nodes jobs of this run are placed on."""
        with self.run.lock:
            return {s.node for s in self.run.states.values() if s.node and not s.local}

    def serve(self) -> None:
        """Place lost jobs again, in the order they were reported, until :meth:`end`."""
        run = self.run
        while True:
            item = self._lost.get()
            if item is None or run.stopping.is_set():
                return
            job_id, generation, reason = item
            state = run.states[job_id]
            if state.generation != generation or state.status in ("done", "failed", "placing"):
                continue  # already handled
            if reason == NOT_STARTED:
                state.unstarted += 1
                if state.unstarted >= MAX_UNSTARTED:
                    run.fail_run(
                        f"job {state.job.name} did not start in {state.unstarted} placements "
                        f"in a row ({START_TIMEOUT:g} s each, last on {state.node}): its host "
                        "and this coordinator cannot reach each other"
                    )
                    return
            self._fail_over(state, reason)

    def _fail_over(self, state: JobState, reason: str) -> None:
        run = self.run
        old_node, old_experiment = state.node, state.experiment
        with run.lock:
            state.status = "placing"
            state.ready = False
            if old_node is not None:
                self.suspects.setdefault(old_node, False)
        log.warning("job %s lost on %s: %s", state.job.name, old_node, reason)
        if old_experiment is not None:
            # Its node is gone: the controller marks the experiment lost by itself.
            with contextlib.suppress(RemoteClientException):
                run.call(run.client.cancel_experiment, old_experiment)
        while not run.stopping.is_set():
            try:
                node = run.placement.place(state, set(self.suspects))
                name = run.placement.prepare(state, node)
                run.call(run.client.wait, name, until="ready", timeout=START_TIMEOUT)
                run.call(run.client.start_execution, name)
            except (AllocationError, RemoteClientException, TimeoutError) as exc:
                log.error("job %s cannot be placed again yet: %s", state.job.name, exc)
                run.stopping.wait(run.poll_interval * 4)
                continue
            entry = f"{time.strftime('%H:%M:%S')} {old_node} -> {node}: {reason}"
            state.restarts.append(entry)
            log.warning(
                "job %s restarted on %s (was %s): %s", state.job.name, node, old_node, reason
            )
            run.save_state()
            return
