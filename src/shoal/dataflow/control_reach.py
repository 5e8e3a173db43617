"""The coordinator's way to hosts that cannot reach it: it opens their control links.

A host first connects to the coordinator's control port (:mod:`.control`). One
that cannot (the client behind NAT, or ``direct=False``) serves a control
endpoint on its node instead (:func:`.control_link.await_coordinator`), and
the coordinator opens a Channel to it, sending its control token first. The
Channel goes direct to the node or through the controller, as every channel
does; the client itself is never reached from outside.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import TYPE_CHECKING

from shoal.channel import Channel, ChannelError
from shoal.client.remote import RemoteClientException
from shoal.dataflow.control_link import ControlLink, control_endpoint
from shoal.dataflow.transport import LOCAL_NODE

if TYPE_CHECKING:
    from shoal.dataflow.coordinator import Coordinator
    from shoal.dataflow.job_state import JobState

log = logging.getLogger("shoal.dataflow")

SCAN_EVERY = 0.25  # seconds between looks for hosts still to reach
RETRY_EVERY = 0.5  # seconds between openings of a host's endpoint not served yet
# A host that may reach the control port tries that first (a few seconds at
# most): the coordinator comes only after this long, so it rarely knocks in vain.
DIRECT_GRACE = 3.0


class HostReacher:
    """Opens the control links of one run's hosts that did not connect themselves.

    One thread (:meth:`watch`) tries each such host in turn, at most every
    RETRY_EVERY seconds, until its host serves the endpoint. Blocking calls
    only: nothing here waits on the channel loop's worker threads, which LOCAL
    jobs may hold while their queues are full.
    """

    def __init__(self, run: Coordinator) -> None:
        self.run = run
        self._tried: dict[tuple[int, int], float] = {}  # (job, generation) -> last attempt

    def watch(self) -> None:
        """Until the run stops: reach every placed host not connected after its grace."""
        run = self.run
        grace = DIRECT_GRACE if run.client_hosts else 0.0
        while not run.stopping.wait(SCAN_EVERY):
            now = time.monotonic()
            with run.lock:
                due = [
                    (state, state.generation, state.node)
                    for state in run.states.values()
                    if self._waiting(state, state.generation)
                    and now - state.started_at >= grace
                    and now - self._tried.get((state.job.id, state.generation), 0.0) >= RETRY_EVERY
                ]
            for state, generation, node in due:
                assert node is not None
                self._tried[(state.job.id, generation)] = time.monotonic()
                self._reach(state, generation, node)

    def _waiting(self, state: JobState, generation: int) -> bool:
        return (
            not state.local
            and state.node not in (None, LOCAL_NODE)
            and state.status == "starting"
            and state.generation == generation
            and state.conn is None
            and not self.run.stopping.is_set()
        )

    def _reach(self, state: JobState, generation: int, node: str) -> None:
        """Try once to open ``state``'s control channel (its host may not serve it yet)."""
        run = self.run
        endpoint = control_endpoint(run.control_token, state.job.id, generation)
        try:
            token = run.call(run.client.token)
            channel = Channel.connect(run.client.endpoint, token, node, endpoint, timeout=5)
        except (ChannelError, RemoteClientException, TimeoutError) as exc:
            log.debug("job %s: control channel not open yet: %s", state.job.id, exc)
            return
        try:
            channel.send(run.control_token)
            channel.flush()
        except ChannelError as exc:
            log.info("job %s: its control channel broke at once: %s", state.job.id, exc)
            with contextlib.suppress(ChannelError):
                channel.close("broken")
            return
        log.info("job %s: control link opened to its host (%s)", state.job.id, channel.path)
        # No second attempt for this generation: its host serves the endpoint once.
        self._tried[(state.job.id, generation)] = float("inf")
        link = ControlLink(channel, plain=True)
        run.spawn(lambda: run.control.serve_link(link), "control")


__all__ = ["HostReacher"]
