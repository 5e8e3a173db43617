"""One simulated agent: its own WebSocket, the real agent protocol, no executor
processes (see ``shoal.agent.simulated``)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from shoal.agent.simulated_deployment import SimulatedDeployment
from shoal.protocol import (
    PROTOCOL_VERSION,
    Cancel,
    ControllerMessage,
    Forget,
    FrameDecoder,
    FrameEncoder,
    Heartbeat,
    Hello,
    Prepare,
    Start,
    Welcome,
)
from shoal.protocol.flag_messages import FlagAnswer, FlagCall

if TYPE_CHECKING:
    from shoal.agent.swarm import HeartbeatWheel

log = logging.getLogger("shoal.agent.simulated")

CLOSE_REFUSED = 4403


@dataclass
class SwarmStats:
    """What the nodes of a swarm saw, summed (read from any thread)."""

    welcomed: int = 0  # Welcome messages received (first connections and reconnects)
    reconnects: int = 0  # connections after the first one of a node
    closed: dict[int, int] = field(default_factory=dict)  # close code -> count
    refused: int = 0  # nodes the controller refused for good
    heartbeats: int = 0
    flag_calls: int = 0
    flag_answers: int = 0
    deployments_done: int = 0
    frames_in: int = 0
    frames_out: int = 0


class SimulatedNode:
    """One simulated agent on its own WebSocket; reconnects like a real one."""

    def __init__(
        self,
        name: str,
        ws_url: str,
        join_token: str,
        stats: SwarmStats,
        cpus: int = 1,
        properties: dict[str, str] | None = None,
        on_welcome: Callable[[str], None] | None = None,
        beats: HeartbeatWheel | None = None,
    ) -> None:
        self.name = name
        self.beats = beats
        self.properties = {"simulated": "true", **(properties or {})}
        self.on_welcome = on_welcome
        self.ws_url = ws_url
        self.join_token = join_token
        self.credential: str | None = None
        self.stats = stats
        self.cpus = cpus
        self.online = asyncio.Event()
        self.deployments: dict[str, SimulatedDeployment] = {}
        self.call_ids = itertools.count(1)
        self._calls: dict[int, tuple[FlagCall, asyncio.Future[FlagAnswer]]] = {}
        self._outbox: list[object] = []
        self._wake = asyncio.Event()
        self._encoder = FrameEncoder()
        self._decoder: FrameDecoder[ControllerMessage] = FrameDecoder(ControllerMessage)
        self._tg: asyncio.TaskGroup | None = None
        self._connections = 0

    def emit(self, message: object) -> None:
        self._outbox.append(message)
        self._wake.set()

    async def flag_call(self, call: FlagCall, patience: float) -> FlagAnswer:
        """Send ``call`` and wait for its answer; sent again after a reconnect."""
        future: asyncio.Future[FlagAnswer] = asyncio.get_running_loop().create_future()
        self._calls[call.id] = (call, future)
        self.stats.flag_calls += 1
        self.emit(call)
        try:
            async with asyncio.timeout(patience):
                return await future
        finally:
            self._calls.pop(call.id, None)

    async def run(self) -> None:
        """Serve until cancelled, reconnecting with a jittered backoff."""
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            backoff = 0.05
            while True:
                secret = self.credential or self.join_token
                try:
                    async with connect(
                        self.ws_url,
                        additional_headers={"Authorization": f"Bearer {secret}"},
                        max_size=256 * 1024 * 1024,
                        compression=None,
                        open_timeout=30,
                        ping_interval=None,  # heartbeats say we are alive
                    ) as ws:
                        backoff = 0.05
                        await self._session(ws)
                except InvalidStatus as exc:
                    if exc.response.status_code in (401, 403):
                        if self.credential is None:
                            self.stats.refused += 1
                            log.warning("node %s refused: wrong join token", self.name)
                            return
                        self.credential = None  # a controller with a new database: enroll
                except (OSError, TimeoutError, InvalidHandshake) as exc:
                    log.debug("node %s cannot connect: %s", self.name, exc)
                self.online.clear()
                await asyncio.sleep(backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, 5.0)

    async def _session(self, ws: ClientConnection) -> None:
        hello = Hello(
            name=self.name,
            version=PROTOCOL_VERSION,
            architecture="simulated",
            cpus=self.cpus,
            properties=self.properties,
        )
        await ws.send(self._encoder.encode([hello]))
        self._connections += 1
        if self._connections > 1:
            self.stats.reconnects += 1
        async with asyncio.TaskGroup() as tg:
            sender = tg.create_task(self._send_loop(ws))
            beats: asyncio.Task[None] | None = None
            beating = False
            try:
                async for data in ws:
                    if isinstance(data, str):
                        continue
                    self.stats.frames_in += 1
                    for message in self._decoder.decode(data):
                        if isinstance(message, Welcome) and not beating:
                            beating = True
                            if self.beats is not None:
                                self.beats.add(self, message.heartbeat_interval)
                            else:
                                beats = tg.create_task(self._heartbeats(message.heartbeat_interval))
                        self._handle(message)
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd is not None else 1006
                self.stats.closed[code] = self.stats.closed.get(code, 0) + 1
            finally:
                sender.cancel()
                if beats is not None:
                    beats.cancel()
                if beating and self.beats is not None:
                    self.beats.remove(self)

    def _handle(self, message: ControllerMessage) -> None:
        assert self._tg is not None
        if isinstance(message, Welcome):
            if message.credential:
                self.credential = message.credential
            self.stats.welcomed += 1
            if self.on_welcome is not None:
                self.on_welcome(self.name)
            self.online.set()
            for dep_id in message.forget:
                self._forget(dep_id)
            # Calls a dropped connection may have swallowed go again (answered once).
            for call, future in self._calls.values():
                if not future.done():
                    self.emit(call)
        elif isinstance(message, FlagAnswer):
            self.stats.flag_answers += 1
            waiting = self._calls.get(message.id)
            if waiting is not None and not waiting[1].done():
                waiting[1].set_result(message)
        elif isinstance(message, Prepare):
            if message.deployment not in self.deployments:
                dep = SimulatedDeployment(message, self)
                self.deployments[dep.id] = dep
                dep.task = self._tg.create_task(dep.run())
        elif isinstance(message, Start):
            dep = self.deployments.get(message.deployment)
            if dep is not None:
                dep.go.set()
        elif isinstance(message, Cancel):
            dep = self.deployments.get(message.deployment)
            if dep is not None and dep.task is not None:
                dep.task.cancel()
                dep._state("cancelled", error="cancelled")
        elif isinstance(message, Forget):
            self._forget(message.deployment)
        # Commands and graph work are not simulated: a simulated node runs pipelines.

    def _forget(self, dep_id: str) -> None:
        dep = self.deployments.pop(dep_id, None)
        if dep is not None and dep.task is not None and not dep.task.done():
            dep.task.cancel()

    async def _send_loop(self, ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await self._wake.wait()
                self._wake.clear()
                if self._outbox:
                    batch, self._outbox = self._outbox, []
                    await ws.send(self._encoder.encode(batch))
                    self.stats.frames_out += 1

    def beat(self) -> None:
        self.stats.heartbeats += 1
        self.emit(Heartbeat(cpu=1.0, memory=10.0, memory_used=50 << 20, load=0.1))

    async def _heartbeats(self, interval: float) -> None:
        # Spread the fleet's beats over the interval instead of all at once.
        await asyncio.sleep(random.random() * interval)
        while True:
            self.beat()
            await asyncio.sleep(interval)
