"""Which agents are connected, what their nodes are, and how to reach them."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from shoal.controller.links import Link


@dataclass
class NodeInfo:
    name: str
    architecture: str = "unknown"
    cpus: int = 1
    properties: dict[str, Any] = field(default_factory=dict)
    online: bool = False
    last_seen: float = 0.0
    metrics: dict[str, Any] = field(default_factory=dict)
    address: str = ""  # host:port of the agent's graph data server ("" when it has none)
    # After a controller restart: the node had running work and may come back until then.
    expected_until: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "architecture": self.architecture,
            "cpus": self.cpus,
            "properties": self.properties,
            "online": self.online,
            "last_seen": self.last_seen,
            "metrics": self.metrics,
            "address": self.address,
        }


class NodeRegistry:
    def __init__(self) -> None:
        self.nodes: dict[str, NodeInfo] = {}
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
        """After a restart: a node with running work has ``grace`` seconds to reconnect."""
        node = self.nodes.setdefault(name, NodeInfo(name=name))
        node.expected_until = time.monotonic() + grace

    def stale(self, timeout: float) -> list[str]:
        """Nodes to declare lost: silent for ``timeout``, or expected back and not back."""
        now = time.monotonic()
        out = []
        for n in self.nodes.values():
            if n.online and now - n.last_seen > timeout:
                out.append(n.name)
            elif not n.online and n.expected_until is not None and now > n.expected_until:
                n.expected_until = None
                out.append(n.name)
        return out
