"""The WebSocket every agent connects to, and the watchdog that notices silence."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time

import msgspec
from fastapi import WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from shoal.controller.commands import CommandRelay
from shoal.controller.experiments import ExperimentService
from shoal.controller.graph_service import GraphService
from shoal.controller.links import Link, write_frames
from shoal.controller.registry import NodeInfo, NodeRegistry
from shoal.protocol import (
    PROTOCOL_VERSION,
    AgentMessage,
    CommandExit,
    CommandOutput,
    CommandStarted,
    FrameDecoder,
    FrameEncoder,
    Heartbeat,
    Hello,
    Welcome,
)
from shoal.protocol.graph_messages import GraphDone, GraphFetch, ObjectChunk
from shoal.store import nodes as node_queries
from shoal.store.database import Database

log = logging.getLogger("shoal.controller.agents")

CLOSE_BAD_TOKEN = 4401
CLOSE_PROTOCOL = 4400


class AgentGateway:
    def __init__(
        self,
        db: Database,
        registry: NodeRegistry,
        experiments: ExperimentService,
        relay: CommandRelay,
        graphs: GraphService,
        agent_token: str,
        heartbeat_interval: float,
        heartbeat_timeout: float,
        lost_timeout: float | None = None,
    ) -> None:
        self.db = db
        self.registry = registry
        self.experiments = experiments
        self.relay = relay
        self.graphs = graphs
        self.agent_token = agent_token
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout
        self.lost_timeout = max(lost_timeout or heartbeat_timeout, heartbeat_timeout)
        self._decoder: FrameDecoder[AgentMessage] = FrameDecoder(AgentMessage)
        self._encoder = FrameEncoder()

    async def serve(self, ws: WebSocket) -> None:
        token = _bearer(ws.headers.get("authorization", "")) or ws.query_params.get("token", "")
        if not hmac.compare_digest(token.encode(), self.agent_token.encode()):
            log.warning("refused an agent from %s: wrong join token", ws.client)
            await ws.close(code=CLOSE_BAD_TOKEN, reason="wrong agent join token")
            return
        await ws.accept()
        try:
            first = await asyncio.wait_for(ws.receive_bytes(), timeout=10)
            messages = self._decoder.decode(first)
            if not messages or not isinstance(messages[0], Hello):
                raise ValueError("the first message must be Hello")
            hello = messages[0]
            if hello.version != PROTOCOL_VERSION:
                raise ValueError(
                    f"agent speaks protocol {hello.version}, controller {PROTOCOL_VERSION}"
                )
        except (ValueError, msgspec.ValidationError, TimeoutError, KeyError) as exc:
            await ws.close(code=CLOSE_PROTOCOL, reason=str(exc)[:120])
            return
        except WebSocketDisconnect:
            return
        host = ws.client.host if ws.client is not None else ""
        link = await self._register(hello, host)
        try:
            async with asyncio.TaskGroup() as tg:
                reader = tg.create_task(self._reader(ws, link, messages[1:]))
                await write_frames(ws, link, self._encoder)
                reader.cancel()
        except* (WebSocketDisconnect, RuntimeError):
            pass  # the agent went away while we were writing to it
        finally:
            link.close()
            if self.registry.links.get(link.name) is link:
                del self.registry.links[link.name]
            if ws.application_state != WebSocketState.DISCONNECTED:
                with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                    await ws.close()

    async def _register(self, hello: Hello, host: str) -> Link:
        old = self.registry.links.pop(hello.name, None)
        if old is not None:
            log.info("agent %s reconnected; closing its previous connection", hello.name)
            old.close()
        link = Link(hello.name)
        self.relay.agent_hello(hello.name, hello.commands)
        self.registry.links[hello.name] = link
        node = self.registry.nodes.get(hello.name) or NodeInfo(name=hello.name)
        node.architecture = hello.architecture
        node.cpus = hello.cpus
        node.properties = dict(hello.properties)
        node.online = True
        node.expected_until = None
        node.last_seen = time.monotonic()
        self.registry.nodes[hello.name] = node
        async with self.db.write() as conn:
            await node_queries.put_node(
                conn, hello.name, hello.architecture, hello.cpus, node.properties
            )
        forget, resend = await self.experiments.apply(
            lambda batch: self.experiments.on_agent_hello(hello.name, hello.deployments, batch)
        )
        link.send(
            Welcome(
                heartbeat_interval=self.heartbeat_interval,
                forget=forget,
                data_token=self.graphs.data_token,
                graph_epoch=self.graphs.epoch,
            )
        )
        data_address = f"{_host_for_url(host)}:{hello.data_port}" if hello.data_port else ""
        self.graphs.node_hello(hello.name, hello.cpus, data_address)
        await self.experiments.resend_prepare(resend)
        await self.registry.notify()
        log.info("agent %s online (%s, %d cpus)", hello.name, hello.architecture, hello.cpus)
        return link

    async def _reader(self, ws: WebSocket, link: Link, pending: list) -> None:
        """Handle frames until the agent goes away; then let the writer stop too."""
        messages = pending
        try:
            while True:
                await self._handle(link, messages)
                data = await ws.receive_bytes()
                messages = self._decoder.decode(data)
        except WebSocketDisconnect:
            pass
        except (msgspec.ValidationError, msgspec.DecodeError, KeyError) as exc:
            log.warning("agent %s sent a malformed frame, disconnecting it: %s", link.name, exc)
        finally:
            link.close()

    async def _handle(self, link: Link, messages: list) -> None:
        node = self.registry.nodes.get(link.name)
        silent = time.monotonic() - node.last_seen if node is not None else 0.0
        if self.registry.heard_from(link.name):
            # A suspect node speaks again: its work was kept, and what it reports
            # now (in this frame) is believed like any report.
            log.warning("node %s is back after %.1f s of silence", link.name, silent)
            await self.registry.notify()
        about_experiments = []
        for message in messages:
            if isinstance(message, Heartbeat):
                if node is not None:
                    node.metrics = {
                        "cpu": message.cpu,
                        "memory": message.memory,
                        "memory_used": message.memory_used,
                        "load": message.load,
                    }
            elif isinstance(message, CommandOutput | CommandStarted | CommandExit):
                self.relay.from_agent(link.name, message)
            elif isinstance(message, GraphDone):
                self.graphs.on_done(link.name, message)
            elif isinstance(message, ObjectChunk):
                self.graphs.on_chunk(message)
            elif isinstance(message, GraphFetch):
                self.graphs.on_fetch(link.name, message)
            elif isinstance(message, Hello):
                continue
            else:
                about_experiments.append(message)
        if about_experiments:
            await self.experiments.apply(
                lambda batch: [
                    self.experiments.on_agent_message(link.name, m, batch)
                    for m in about_experiments
                ]
            )

    async def watchdog(self) -> None:
        """Follow the nodes' silence: suspect after the heartbeat timeout, lost after
        the lost timeout.

        A suspect node keeps its connection, its deployments, commands and graph
        tasks; whatever it reports when it speaks again is taken. It gets no new
        work meanwhile (it is not online). Only a node silent past the lost
        timeout, or not back that long after a controller restart, has its
        running work declared lost.
        """
        while True:
            await asyncio.sleep(self.heartbeat_interval / 2)
            suspects, lost = self.registry.sweep(self.heartbeat_timeout, self.lost_timeout)
            for name in suspects:
                log.warning(
                    "node %s suspect: silent for %.1f s; its work is kept for %.1f s more",
                    name,
                    self.heartbeat_timeout,
                    self.lost_timeout - self.heartbeat_timeout,
                )
                async with self.db.write() as conn:
                    await node_queries.set_offline(conn, name)
            for name in lost:
                await self._node_lost(name)
            if suspects or lost:
                await self.registry.notify()

    async def _node_lost(self, name: str) -> None:
        node = self.registry.nodes[name]
        if node.last_seen == 0.0:
            reason = f"node {name!r} was lost: it did not reconnect after a controller restart"
        else:
            reason = f"node {name!r} was lost: silent for {self.lost_timeout:g} s"
        log.warning("%s; its running work is lost", reason)
        link = self.registry.links.pop(name, None)
        if link:
            link.close()
        await self.experiments.apply(
            lambda batch: self.experiments.on_node_lost(name, batch, reason)
        )
        self.relay.node_lost(name, reason)
        self.graphs.node_lost(name, reason)


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _bearer(header: str) -> str:
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""
