"""The network's record on the controller: its jobs, their placement, restarts,
rounds and errors, kept as an experiment of kind ``dataflow``.

The coordinator opens it when it starts, reports the jobs whenever their state
changes, and closes it with the outcome. A record that cannot be written never
stops the network: it is logged, and the next report tries again.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from shoal.client.remote import RemoteClientException
from shoal.client.reproduction import reproduction
from shoal.client.serialize import _is_installed

if TYPE_CHECKING:
    from shoal.dataflow.coordinator import Coordinator
    from shoal.dataflow.job_state import JobState

log = logging.getLogger("shoal.dataflow")

CANCELLED = "cancelled by its user"


def _job_state(state: JobState) -> str:
    # The coordinator's words for a job, in the states every record uses.
    return {
        "pending": "waiting",
        "starting": "running",
        "setup": "running",
        "placing": "running",
        "running": "running",
        "done": "finished",
        "failed": "failed",
    }.get(state.status, state.status)


class NetworkRecord:
    """One network run's record; every method is safe to call from any thread."""

    def __init__(self, coordinator: Coordinator) -> None:
        self.coordinator = coordinator
        self.name: str | None = None
        self.cancelled = False
        self._lock = threading.Lock()
        self._first_seen: dict[int, float] = {}
        self._finished: dict[int, float] = {}

    def open(self) -> None:
        c = self.coordinator
        network = c.network
        modules = []
        for job in network.jobs:
            module = sys.modules.get(type(job).__module__)
            if module is not None and not _is_installed(module):
                modules.append(module)
        parameters = {
            "network": network.name,
            "directory": str(network.directory),
            "jobs": {
                str(j.id): f"{type(j).__module__}.{type(j).__qualname__}" for j in network.jobs
            },
            "pipes": len(network.pipes),
            "nodes": [n.name for n in network.nodes],
            "max_rounds": c.max_rounds,
            "loopback": c.loopback,
            "run_id": c.run_id,
        }
        info = reproduction(parameters, shipped=modules)
        try:
            self.name = c.call(
                c.client.open_record, f"dataflow-{network.name}-{c.run_id}", "dataflow", info
            )
        except RemoteClientException as exc:
            log.warning("the network's record could not be opened: %s", exc)

    def report(self, status: str | None = None, error: str | None = None) -> None:
        """Send the jobs as they are now (and, at the end, the outcome)."""
        if self.name is None:
            return
        c = self.coordinator
        if status is None and c.stopping.is_set():
            return  # only the outcome is reported once the run stops (close())
        with c.lock:
            items = [self._item(s) for s in c.states.values()]
            summary = {"epoch": c.epoch, "rounds": sum(s.rounds for s in c.states.values())}
            summary["errors"] = sum(s.errors for s in c.states.values())
        # An update while another is on its way is left out (the next one carries
        # it): a controller that is away must not hold every control thread,
        # each retrying, behind it. The outcome waits its turn.
        if not self._lock.acquire(blocking=status is not None):
            return
        try:
            now = c.call(c.client.update_record, self.name, items, summary, status, error)
        except RemoteClientException as exc:
            log.warning("the network's record could not be updated: %s", exc)
            return
        finally:
            self._lock.release()
        if now == "CANCELLED" and status is None and not self.cancelled:
            self.cancelled = True
            c.cancel_run(CANCELLED)

    def check(self) -> None:
        """Ask whether its user cancelled the network (from the node watcher)."""
        if self.name is None or self.cancelled:
            return
        c = self.coordinator
        with contextlib.suppress(RemoteClientException):
            if c.call(c.client.raw_status, self.name)["status"] == "CANCELLED":
                self.cancelled = True
                c.cancel_run(CANCELLED)

    def close(self) -> None:
        c = self.coordinator
        with c.lock:
            statuses = [s.status for s in c.states.values()]
        failed = statuses.count("failed")
        if self.cancelled:
            status, error = "CANCELLED", CANCELLED
        elif c.error is not None:
            status, error = "FAILED", c.error
        elif failed:
            status, error = "FAILED", f"{failed} of {len(statuses)} jobs failed"
        elif all(s == "done" for s in statuses):
            status, error = "FINISHED", None
        else:
            running = len(statuses) - statuses.count("done")
            status, error = "CANCELLED", f"stopped with {running} jobs still running"
        self.report(status, error)

    def _item(self, state: JobState) -> dict[str, Any]:
        job = state.job
        now = time.time()
        first = self._first_seen.setdefault(job.id, now)
        if state.status in ("done", "failed"):
            finished: float | None = self._finished.setdefault(job.id, now)
        else:
            self._finished.pop(job.id, None)  # placed again: it runs anew
            finished = None
        return {
            "id": job.id,
            "kind": "job",
            "name": job.name,
            "type": type(job).__name__,
            "node": "client" if state.local else state.node,
            "state": _job_state(state),
            "started_at": first,
            "finished_at": finished,
            "error": state.last_error,
            "info": {
                "generation": state.generation,
                "experiment": state.experiment,
                "restarts": list(state.restarts),
                "rounds": state.rounds,
                "errors": state.errors,
                "local": state.local,
                "inputs": [p.id for p in job.inputs],
                "outputs": [p.id for p in job.outputs],
            },
        }
