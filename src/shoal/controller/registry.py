"""Which agents are connected, what their nodes are, and how to reach them."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from shoal.controller.links import Link
from shoal.protocol import Heartbeat

ONLINE, SUSPECT, OFFLINE = "online", "suspect", "offline"


@dataclass
class KnownNode:
    """What the controller knows of one node.

    Its liveness ``state``: ``online`` (heard from within the heartbeat
    timeout), ``suspect`` (silent, or not back since a controller restart, but
    its work is kept and its late reports believed until ``expected_until``),
    or ``offline`` (gone; whatever ran there was declared lost).
    """

    name: str
    architecture: str = "unknown"
    cpus: int = 1
    properties: dict[str, Any] = field(default_factory=dict)
    online: bool = False
    last_seen: float = 0.0
    # The newest heartbeat, kept as it came: a thousand nodes beat every second,
    # and its dict is built only when someone asks (``metrics``).
    heartbeat: Heartbeat | None = None
    address: str = ""  # host:port of the agent's channel server ("" when it has none)
    # Not online, but expected back until then (monotonic time): the node is
    # suspect. Past it, its work is lost.
    expected_until: float | None = None

    @property
    def metrics(self) -> dict[str, Any]:
        beat = self.heartbeat
        if beat is None:
            return {}
        return {
            "cpu": beat.cpu,
            "memory": beat.memory,
            "memory_used": beat.memory_used,
            "load": beat.load,
        }

    @property
    def state(self) -> str:
        if self.online:
            return ONLINE
        return SUSPECT if self.expected_until is not None else OFFLINE

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "architecture": self.architecture,
            "cpus": self.cpus,
            "properties": self.properties,
            "online": self.online,
            "state": self.state,
            "last_seen": self.last_seen,
            "metrics": self.metrics,
            "address": self.address,
        }


class NodeRegistry:
    """The nodes known to this controller, their connections, and their liveness."""

    def __init__(self) -> None:
        self.nodes: dict[str, KnownNode] = {}
        self.links: dict[str, Link] = {}
        self.changed = asyncio.Condition()

    def link(self, name: str) -> Link | None:
        return self.links.get(name)

    def is_online(self, name: str) -> bool:
        node = self.nodes.get(name)
        return bool(node and node.online)

    async def notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def wait_online(self, names: list[str], timeout: float) -> bool:
        async def all_online() -> None:
            async with self.changed:
                await self.changed.wait_for(lambda: all(self.is_online(n) for n in names))

        try:
            async with asyncio.timeout(timeout):
                await all_online()
            return True
        except TimeoutError:
            return False

    def expect(self, name: str, grace: float) -> None:
        """After a restart: a node with running work is suspect for ``grace`` seconds."""
        node = self.nodes.setdefault(name, KnownNode(name=name))
        if not node.online:
            node.expected_until = time.monotonic() + grace

    @staticmethod
    def heard_from(node: KnownNode, now: float) -> bool:
        """A frame came from ``node`` at ``now`` (monotonic): it is online. True if
        it was not before."""
        node.last_seen = now
        if node.online:
            return False
        node.expected_until = None
        node.online = True
        return True

    def pardon(self, seconds: float) -> None:
        """The controller itself could not listen for ``seconds`` (its event loop
        stalled): that time does not count as anyone's silence."""
        for n in self.nodes.values():
            if n.online:
                n.last_seen += seconds
            elif n.expected_until is not None:
                n.expected_until += seconds

    def sweep(self, heartbeat_timeout: float, lost_timeout: float) -> tuple[list[str], list[str]]:
        """Move nodes on by their silence; the names that became suspect, and lost.

        Online and silent for ``heartbeat_timeout``: suspect, until
        ``lost_timeout`` after it was last heard from. Suspect past that: lost
        (offline).
        """
        now = time.monotonic()
        quiet_since = now - heartbeat_timeout
        suspect, lost = [], []
        # One pass over all nodes serves them all (no timer per node); it runs a
        # few times a second, so the common case (online, heard lately) is one test.
        for n in self.nodes.values():
            if n.last_seen >= quiet_since and n.online:
                continue
            if n.online:
                n.online = False
                n.expected_until = max(n.last_seen + lost_timeout, now)
                suspect.append(n.name)
            elif n.expected_until is not None and now > n.expected_until:
                n.expected_until = None
                lost.append(n.name)
        return suspect, lost
