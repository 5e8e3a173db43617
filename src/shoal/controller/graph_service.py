"""Task graphs on the controller: sessions, the scheduler, and object movement.

Clients submit tasks over data objects; the service keeps the graph in memory,
feeds ready tasks to agents, collects results, frees objects nobody needs, and
fails a session when one of its tasks fails or a node holding its work is lost.
Other sessions go on. Its parts, by responsibility:

- :mod:`~shoal.controller.graph_sessions`: what clients ask of sessions;
- :mod:`~shoal.controller.graph_submit`: a Submit checked, all or nothing;
- :mod:`~shoal.controller.graph_scheduler`: placing ready tasks, taking results;
- :mod:`~shoal.controller.graph_objects`: objects kept, freed and moved;
- :mod:`~shoal.controller.graph_prefetch`: inputs moved ahead of waiting tasks;
- :mod:`~shoal.controller.graph_state`: what is held in memory;
- :mod:`~shoal.controller.graph_records`: the records written behind it all.
"""

from __future__ import annotations

import asyncio
import gc
import secrets
from collections import defaultdict, deque

from shoal.controller.channel_relay import ChannelService
from shoal.controller.graph_records import RecordMarks
from shoal.controller.graph_scheduler import Scheduling
from shoal.controller.graph_sessions import SessionLifecycle
from shoal.controller.graph_state import FAILED, FINISHED, GNode, GSession, GTask
from shoal.controller.graph_submit import MAX_CONSTANT, GraphRequestError
from shoal.controller.metrics import PLACEMENT_BUCKETS, LatencyHistogram
from shoal.controller.registry import NodeRegistry

__all__ = ["CAPABILITY_TTL", "MAX_CONSTANT", "GraphRequestError", "GraphService"]

CAPABILITY_TTL = 60.0  # seconds a node has to start fetching an input it was sent
GC_THRESHOLDS = (50_000, 20, 10)  # gc.set_threshold while the service runs


class GraphService(SessionLifecycle, Scheduling):
    """The task graphs of all users: sessions, scheduling, and object movement.

    Objects move over channels (``channels``, set once the channel service is
    made) granted for one object, one reading node and ``capability_ttl``
    seconds, signed with the holder's own data key.
    """

    def __init__(self, registry: NodeRegistry, capability_ttl: float = CAPABILITY_TTL) -> None:
        self.registry = registry
        self.sessions: dict[int, GSession] = {}
        self.nodes: dict[str, GNode] = {}
        self.ready: deque[GTask] = deque()
        self.epoch = secrets.token_hex(8)
        self.capability_ttl = capability_ttl
        # Each node's data-server key, kept across reconnects (what the node was
        # told in its last Welcome).
        self._data_keys: dict[str, bytes] = {}
        self.channels: ChannelService | None = None
        self._frees = defaultdict(list)
        self.mean_duration = 1.0  # seconds a task takes, until tasks tell
        # Inputs moving ahead of the tasks still waiting for others (graph_prefetch).
        self._plans = {}
        self._ahead = defaultdict(list)
        # Since start, for /metrics.
        self.tasks_ended: dict[str, int] = {FINISHED: 0, FAILED: 0}
        self.placement = LatencyHistogram(PLACEMENT_BUCKETS)
        # What changed in sessions that have a record; GraphRecorder writes it.
        self.marks = RecordMarks()

    async def run(self) -> None:
        """Run until cancelled.

        While it runs, the cyclic garbage collector runs less often: a big graph
        is millions of long-lived objects, and with the default thresholds the
        collector walks them again and again (half the scheduler's time for a
        graph of no-op tasks). A closed session's tasks are still collected.
        """
        saved = gc.get_threshold()
        gc.set_threshold(*GC_THRESHOLDS)
        try:
            await asyncio.Event().wait()
        finally:
            gc.set_threshold(*saved)
