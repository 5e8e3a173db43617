"""The coordinator's way to hosts that cannot reach it: it opens their control links.

A host first connects to the coordinator's control port (:mod:`.control`). One
that cannot (the client behind NAT, or ``direct=False``) serves a control
endpoint on its node instead (:func:`.control_link.await_coordinator`), and
the coordinator opens a Channel to it, sending its control token first. The
Channel goes direct to the node or through the controller, as every channel
does; the client itself is never reached from outside.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from shoal.channel import Channel, ChannelError, connect
from shoal.channel.sync import channel_loop
from shoal.client.remote import RemoteClientException
from shoal.dataflow.control_link import ControlLink, control_endpoint
from shoal.dataflow.placement import START_TIMEOUT
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
    """Opens the control links of one run's hosts that did not connect themselves."""

    def __init__(self, run: Coordinator) -> None:
        self.run = run
        self.loop = channel_loop()
        self._reaching: set[tuple[int, int]] = set()  # (job, generation)

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
                    and (state.job.id, state.generation) not in self._reaching
                    and now - state.started_at >= grace
                ]
            for state, generation, node in due:
                assert node is not None
                self._reaching.add((state.job.id, generation))
                asyncio.run_coroutine_threadsafe(self._reach(state, generation, node), self.loop)

    def _waiting(self, state: JobState, generation: int) -> bool:
        return (
            not state.local
            and state.node not in (None, LOCAL_NODE)
            and state.status == "starting"
            and state.generation == generation
            and state.conn is None
            and not self.run.stopping.is_set()
        )

    async def _reach(self, state: JobState, generation: int, node: str) -> None:
        """Open ``state``'s control channel, again while its host does not serve it yet."""
        run = self.run
        endpoint = control_endpoint(run.control_token, state.job.id, generation)
        deadline = time.monotonic() + START_TIMEOUT
        reached = False
        try:
            while self._waiting(state, generation) and time.monotonic() < deadline:
                try:
                    token = await asyncio.to_thread(run.call, run.client.token)
                    channel = await connect(run.client.endpoint, token, node, endpoint)
                except (ChannelError, RemoteClientException) as exc:
                    log.debug("job %s: control channel not open yet: %s", state.job.id, exc)
                    await asyncio.sleep(RETRY_EVERY)  # a retry's pace, not a synchronisation
                    continue
                try:
                    await channel.send(run.control_token)
                except ChannelError:
                    await channel.aclose()
                    continue
                link = ControlLink(Channel(channel), plain=True)
                run.spawn(lambda held=link: run.control.serve_link(held), "control")
                reached = True
                return
        finally:
            if not reached:  # (a reached generation is never due again)
                self._reaching.discard((state.job.id, generation))


__all__ = ["HostReacher"]
