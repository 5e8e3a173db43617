"""A swarm of simulated nodes on an event loop in a background thread, and the
one heartbeat wheel that serves them all (see ``shoal.agent.simulated``)."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping

from shoal.agent.simulated_node import SimulatedNode, SwarmStats

log = logging.getLogger("shoal.agent.simulated")


class HeartbeatWheel:
    """The heartbeats of a swarm's nodes from one task, not a timer per node.

    A thousand sleeping tasks cost the swarm more than its beats; the swarm
    shares the machine with the controller it measures, so it spends as little
    as it can. Each node beats at the interval its Welcome gave, the first beat
    at a random point of it (a fleet's beats spread out, as real agents' do).
    """

    TICK = 0.02  # seconds between looks at who is due

    def __init__(self) -> None:
        # (due, turn, node): a node's turn changes when it is added again, so an
        # entry from its previous connection is dropped when it comes up.
        self._due: list[tuple[float, int, SimulatedNode]] = []  # a heap
        self._beating: dict[SimulatedNode, tuple[float, int]] = {}  # node -> (interval, turn)
        self._turns = itertools.count()

    def add(self, node: SimulatedNode, interval: float) -> None:
        turn = next(self._turns)
        self._beating[node] = (interval, turn)
        first = time.monotonic() + random.random() * interval
        heapq.heappush(self._due, (first, turn, node))

    def remove(self, node: SimulatedNode) -> None:
        self._beating.pop(node, None)  # its entry in the heap is dropped when due

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.TICK)
            now = time.monotonic()
            while self._due and self._due[0][0] <= now:
                due, turn, node = heapq.heappop(self._due)
                interval, current = self._beating.get(node, (0.0, -1))
                if turn != current:
                    continue
                node.beat()
                # Due times advance by the interval, so a late tick does not drift the beat.
                heapq.heappush(self._due, (max(due + interval, now), turn, node))


class Swarm:
    """Simulated nodes on an event loop in a background thread::

        with Swarm(endpoint, join_token, [f"sim-{i}" for i in range(300)]) as swarm:
            swarm.wait_online(timeout=60)

    ``connect_rate`` spreads the first connections (nodes a second; 0: all at
    once), as a fleet that boots does. ``properties`` gives nodes properties of
    their own (by name; every node also says ``simulated=true``).
    ``on_welcome(name)`` is called on the swarm's thread the moment a node gets
    its Welcome, before anything else it does (a test looks at the store then).
    """

    def __init__(
        self,
        endpoint: str,
        join_token: str,
        names: Iterable[str],
        connect_rate: float = 0.0,
        properties: Mapping[str, dict[str, str]] | None = None,
        on_welcome: Callable[[str], None] | None = None,
    ) -> None:
        base = endpoint.rstrip("/")
        self.ws_url = base.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
        self.ws_url += "/api/agents/ws"
        self.join_token = join_token
        self.names = list(names)
        self.connect_rate = connect_rate
        self.properties = dict(properties or {})
        self.on_welcome = on_welcome
        self._beats = HeartbeatWheel()
        self.stats = SwarmStats()
        self.nodes: dict[str, SimulatedNode] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    def __enter__(self) -> Swarm:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name="swarm", daemon=True)
        self._thread.start()
        self._started.wait()

    def stop(self, timeout: float = 30.0) -> None:
        if self._loop is not None and self._stop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout)

    def online_count(self) -> int:
        return sum(node.online.is_set() for node in self.nodes.values())

    def wait_online(self, timeout: float) -> float:
        """Block until every node got its Welcome; the seconds it took. Raises TimeoutError."""
        t0 = time.monotonic()
        while self.online_count() < len(self.names):
            if self._error is not None:
                raise RuntimeError("the swarm stopped") from self._error
            if time.monotonic() - t0 > timeout:
                raise TimeoutError(
                    f"{self.online_count()} of {len(self.names)} simulated nodes online "
                    f"after {timeout:g} s"
                )
            time.sleep(0.01)
        return time.monotonic() - t0

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:
            self._error = exc
            self._started.set()
            log.exception("the swarm stopped")

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        for name in self.names:
            self.nodes[name] = SimulatedNode(
                name,
                self.ws_url,
                self.join_token,
                self.stats,
                properties=self.properties.get(name),
                on_welcome=self.on_welcome,
                beats=self._beats,
            )
        self._started.set()
        async with asyncio.TaskGroup() as tg:
            wheel = tg.create_task(self._beats.run())
            runs = [
                tg.create_task(
                    self._run_node(node, i / self.connect_rate if self.connect_rate else 0)
                )
                for i, node in enumerate(self.nodes.values())
            ]
            await self._stop.wait()
            for run in [*runs, wheel]:
                run.cancel()

    @staticmethod
    async def _run_node(node: SimulatedNode, delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        await node.run()


def node_names(count: int, prefix: str = "sim") -> list[str]:
    return [f"{prefix}-{i:04d}" for i in range(count)]
