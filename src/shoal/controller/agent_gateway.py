"""The WebSocket every agent connects to, and the watchdog that notices silence.

The store before the word: what an agent reports about its deployments is
stored before the agent may drop it (``Forget``, or ``forget`` in ``Welcome``).
While the store is away the agent stays connected and its reports wait here, in
order, until the store takes them; meanwhile heartbeats, commands and graph
traffic go on. The agent keeps every step and final state until it is told to
forget it, so a report that never got stored (the connection dropped, or too
many were waiting) comes again in the agent's next ``Hello``.

The reports of all agents are stored together: one task takes whatever every
agent reported since the last commit and stores it in one transaction (each
agent's reports in the order it sent them), so a thousand nodes finishing a
step at once cost a few commits, not a thousand.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable

import msgspec
from fastapi import WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from shoal.controller.batch import WriteBatch
from shoal.controller.channel_relay import ChannelService
from shoal.controller.commands import COMMAND_REPORTS, CommandRecorder
from shoal.controller.enrollment import EnrollmentRefused, NodeEnrollment
from shoal.controller.experiments import ExperimentService, LiveDeployment
from shoal.controller.flag_calls import ExecutorFlagCalls
from shoal.controller.graph_service import GraphService
from shoal.controller.links import Link, write_frames
from shoal.controller.registration import Registered, Registrar
from shoal.controller.registry import KnownNode, NodeRegistry
from shoal.controller.report_queue import MAX_WAITING_REPORTS, ReportQueue
from shoal.controller.ws_protocol import TAP, FrameTap
from shoal.protocol import (
    PROTOCOL_VERSION,
    AgentMessage,
    FrameDecoder,
    FrameEncoder,
    Heartbeat,
    Hello,
    Welcome,
)
from shoal.protocol.flag_messages import FlagCall
from shoal.protocol.graph_messages import GraphDone, GraphPrefetched
from shoal.store import nodes as node_queries
from shoal.store.database import Database
from shoal.store.faults import StoreError, retry_store

log = logging.getLogger("shoal.controller.agents")

CLOSE_BAD_TOKEN = 4401
CLOSE_PROTOCOL = 4400
CLOSE_TRY_AGAIN_LATER = 1013  # RFC 6455: the server cannot serve this connection now
CLOSE_REFUSED = 4403  # this agent may not be this node; the reason says why


class AgentGateway:
    def __init__(
        self,
        db: Database,
        registry: NodeRegistry,
        experiments: ExperimentService,
        relay: CommandRecorder,
        graphs: GraphService,
        channels: ChannelService,
        enrollment: NodeEnrollment,
        flag_calls: ExecutorFlagCalls,
        heartbeat_interval: float,
        heartbeat_timeout: float,
        lost_timeout: float | None = None,
    ) -> None:
        self.db = db
        self.registry = registry
        self.experiments = experiments
        self.relay = relay
        self.graphs = graphs
        self.channels = channels
        self.enrollment = enrollment
        self.flag_calls = flag_calls
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout
        self.lost_timeout = max(lost_timeout or heartbeat_timeout, heartbeat_timeout)
        self._decoder: FrameDecoder[AgentMessage] = FrameDecoder(AgentMessage)
        self._encoder = FrameEncoder()
        self._reports = ReportQueue()
        self.registrar = Registrar(db, enrollment, experiments)
        # Times the watchdog found the controller too busy to listen, and for how long.
        self.stalls = 0
        self.stalled_for = 0.0

    async def serve(self, ws: WebSocket) -> None:
        secret = _bearer(ws.headers.get("authorization", "")) or ws.query_params.get("token", "")
        admission = await self.registrar.admit(secret)
        if admission is None:
            log.warning("refused an agent from %s: wrong join token or node credential", ws.client)
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
        try:
            # Who may be this node is settled before anything it reports is believed.
            registered = await self.registrar.register(admission, hello)
        except EnrollmentRefused as exc:
            log.warning("refused an agent from %s: %s", ws.client, exc)
            await ws.close(code=CLOSE_REFUSED, reason=_close_reason(str(exc)))
            return
        except StoreError as exc:
            # The agent keeps what it holds and comes back by itself.
            with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                await ws.close(code=CLOSE_TRY_AGAIN_LATER, reason=_close_reason(exc.message))
            return
        tap: FrameTap | None = ws.scope.get("extensions", {}).get(TAP)
        link = await self._online(hello, host, registered, tap.write if tap else None)
        resend = registered.resend
        try:
            # What came with the Hello is taken before any later frame can be.
            if self._take(link, messages[1:]):
                await self.registry.notify()
            if tap is not None:
                tap.sink = functools.partial(self._take_at_once, link)
            async with asyncio.TaskGroup() as tg:
                reader = tg.create_task(self._reader(ws, link))
                resender = tg.create_task(self._resend_prepare(resend))
                await write_frames(ws, link, self._encoder)
                for task in (reader, resender):
                    task.cancel()
        except* (WebSocketDisconnect, RuntimeError):
            pass  # the agent went away while we were writing to it
        finally:
            if tap is not None:
                tap.sink = None
            link.close()
            # What it reported and was not stored yet comes again in its next Hello.
            self._reports.drop(link)
            if self.registry.links.get(link.name) is link:
                del self.registry.links[link.name]
            if ws.application_state != WebSocketState.DISCONNECTED:
                with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                    await ws.close(code=link.close_code, reason=_close_reason(link.reason or ""))

    async def forget(self, name: str) -> bool:
        """Free node ``name``: its credential stops working, and its agent, if
        connected, is told so and disconnected. False if it was not enrolled."""
        freed = await self.enrollment.forget(name)
        link = self.registry.links.get(name)
        if link is not None:
            log.warning("node %s was forgotten by an operator; disconnecting it", name)
            link.close(f"node {name!r} was forgotten by an operator", CLOSE_REFUSED)
        return freed

    async def _online(
        self,
        hello: Hello,
        host: str,
        registered: Registered,
        write: Callable[[bytes], bool] | None = None,
    ) -> Link:
        """Take a registered node online (its writes are committed): its link, its
        Welcome, its place in the registry and the graph scheduler."""
        old = self.registry.links.pop(hello.name, None)
        if old is not None:
            log.info("agent %s reconnected; closing its previous connection", hello.name)
            old.close()
        link = Link(hello.name, write)
        self.relay.agent_hello(hello.name, hello.commands)
        self.registry.links[hello.name] = link
        node = self.registry.nodes.get(hello.name) or KnownNode(name=hello.name)
        node.architecture = hello.architecture
        node.cpus = hello.cpus
        node.properties = dict(hello.properties)
        node.online = True
        node.expected_until = None
        node.last_seen = time.monotonic()
        self.registry.nodes[hello.name] = node
        link.send(
            Welcome(
                heartbeat_interval=self.heartbeat_interval,
                forget=registered.forget,
                data_key=self.graphs.data_key(hello.name),
                clock=time.time(),
                graph_epoch=self.graphs.epoch,
                credential=registered.credential or "",
            )
        )
        data_address = (
            f"{_host_for_url(hello.data_host or host)}:{hello.channel_port}"
            if hello.channel_port
            else ""
        )
        node.address = data_address
        self.graphs.node_hello(hello.name, hello.cpus, data_address)
        self.channels.node_hello(hello.name, data_address)
        await self.registry.notify()
        log.info("agent %s online (%s, %d cpus)", hello.name, hello.architecture, hello.cpus)
        return link

    async def _resend_prepare(self, deps: list[LiveDeployment]) -> None:
        if deps:
            await retry_store(
                lambda: self.experiments.resend_prepare(deps), "sending Prepare again"
            )

    async def store_reports(self) -> None:
        """Store what all agents report about experiments, until cancelled.

        Each round takes everything waiting, from every agent, and stores it in
        one transaction. A batch the store refuses leaves the live state as it
        was (see ``ExperimentService.apply``) and is tried again until the
        store takes it; reports that arrive meanwhile wait for the next round.
        """
        while True:
            taken = await self._reports.take()
            try:
                await self._store_round(taken)
            finally:
                self._reports.done(taken)

    async def _store_round(self, taken: list[tuple[Link, list]]) -> None:
        """Store one round of reports. A round the store refuses for a reason other
        than its being away is stored again agent by agent: one agent's report that
        cannot be stored holds up no other agent's."""
        failed = await self._try_store(taken)
        if failed is None:
            return
        if len(taken) == 1:
            await self._store_alone(taken[0], failed)
            return
        for one in taken:
            await self._store_alone(one)

    async def _store_alone(self, one: tuple[Link, list], failed: Exception | None = None) -> None:
        link, messages = one
        if failed is None:
            failed = await self._try_store([one])
            if failed is None:
                return
        # Reports about deployments the store lost can never be stored; without
        # them, the rest can.
        reported = {m.deployment for m in messages if hasattr(m, "deployment")}
        try:
            vanished = await retry_store(
                lambda: self.experiments.forget_vanished(reported),
                "looking up reported deployments",
            )
        except Exception as exc:
            vanished, failed = [], exc
        if vanished:
            failed = await self._try_store([one])
            if failed is None:
                return
        # A bug in handling a report must not stop the agent's other work for
        # good: it is sent away and reports again.
        log.error("storing the reports of agent %s failed", link.name, exc_info=failed)
        link.close("the controller failed to store your reports", CLOSE_TRY_AGAIN_LATER)

    async def _try_store(self, taken: list[tuple[Link, list]]) -> Exception | None:
        """Store ``taken`` (waiting while the store is away); what refused it, if anything."""
        try:
            await retry_store(lambda: self._apply_reports(taken), "storing what agents report")
        except Exception as exc:
            return exc
        return None

    async def _apply_reports(self, taken: list[tuple[Link, list]]) -> None:
        def change(batch: WriteBatch) -> None:
            for link, messages in taken:
                for message in messages:
                    self.experiments.on_agent_message(link.name, message, batch)

        await self.experiments.apply(change)

    async def _reader(self, ws: WebSocket, link: Link) -> None:
        """Handle the frames the tap did not take, until the agent goes away; then
        let the writer stop too."""
        try:
            while True:
                data = await ws.receive_bytes()
                if self._take(link, self._decoder.decode(data)):
                    await self.registry.notify()
        except WebSocketDisconnect:
            pass
        except (msgspec.ValidationError, msgspec.DecodeError, KeyError) as exc:
            log.warning("agent %s sent a malformed frame, disconnecting it: %s", link.name, exc)
        finally:
            link.close()

    def _take_at_once(self, link: Link, data: bytes) -> bool:
        """The tap's sink (see ``ws_protocol``): take a frame of an online node in
        the callback that received it. False leaves it to the reader: a node
        coming back (its waiters are notified, which takes awaiting) or a frame
        that does not decode (the reader says why and sends the agent away).

        Frames reach the sink only when the reader has none waiting, and
        ``_take`` never awaits, so each agent's messages are taken in order.
        """
        node = self.registry.nodes.get(link.name)
        if node is None or not node.online or link.closed.is_set():
            return False
        try:
            messages = self._decoder.decode(data)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return False
        try:
            self._take(link, messages)
        except Exception:
            # Half of the frame may be taken: the agent reports it all again.
            log.exception("taking a frame of agent %s failed; disconnecting it", link.name)
            link.close("the controller failed to take your frame", CLOSE_TRY_AGAIN_LATER)
        return True

    def _take(self, link: Link, messages: list) -> bool:
        """Take one frame's messages, in order, without awaiting; True if the node
        came back online (the caller then notifies the registry's waiters)."""
        back = False
        node = self.registry.nodes.get(link.name)
        if node is not None:
            now = time.monotonic()
            if not node.online:
                # A suspect node speaks again: its work was kept, and what it
                # reports now (in this frame) is believed like any report.
                silent = now - node.last_seen
                log.warning("node %s is back after %.1f s of silence", link.name, silent)
            if self.registry.heard_from(node, now):
                back = True
                self.graphs.node_back(link.name)
            if len(messages) == 1 and type(messages[0]) is Heartbeat:
                node.heartbeat = messages[0]  # most frames while idle: nothing else to do
                return back
        about_experiments = []
        for message in messages:
            if isinstance(message, Heartbeat):
                if node is not None:
                    node.heartbeat = message
            elif isinstance(message, COMMAND_REPORTS):
                self.relay.from_agent(link.name, message)
            elif isinstance(message, GraphDone):
                self.graphs.on_done(link.name, message)
            elif isinstance(message, GraphPrefetched):
                self.graphs.on_prefetched(link.name, message)
            elif isinstance(message, FlagCall):
                self.flag_calls.submit(link.name, message)
            elif isinstance(message, Hello):
                continue
            else:
                about_experiments.append(message)
        if link.closed.is_set():
            return back  # being sent away: the agent reports all of it again when it is back
        if about_experiments and not self._reports.put(link, about_experiments):
            log.warning(
                "agent %s: %d reports are waiting for the store; sending it away to "
                "report them again when it reconnects",
                link.name,
                MAX_WAITING_REPORTS,
            )
            link.close(
                "controller storage unavailable: too many reports waiting; reconnect",
                CLOSE_TRY_AGAIN_LATER,
            )
        return back

    async def watchdog(self) -> None:
        """Follow the nodes' silence: suspect after the heartbeat timeout, lost after
        the lost timeout.

        A suspect node keeps its connection, its deployments, commands and graph
        tasks; whatever it reports when it speaks again is taken. It gets no new
        work meanwhile (it is not online). Only a node silent past the lost
        timeout, or not back that long after a controller restart, has its
        running work declared lost.

        One sweep over all nodes serves them all (no timer per node), and what it
        finds is stored in one transaction per sweep. A controller too busy to
        listen does not blame the nodes: when this task wakes late, the time
        its event loop was stalled is not counted as anyone's silence, and it
        says so in the log.
        """
        period = self.heartbeat_interval / 2
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + period
            await asyncio.sleep(period)
            late = loop.time() - due
            if late > self.heartbeat_interval:
                self.stalls += 1
                self.stalled_for += late
                self.registry.pardon(late)
                log.warning(
                    "controller overloaded: it could not listen to nodes for %.1f s; "
                    "that silence is not held against them",
                    late,
                )
                # Frames that waited meanwhile are read before the next sweep.
                continue
            suspects, lost = self.registry.sweep(self.heartbeat_timeout, self.lost_timeout)
            for name in suspects:
                log.warning(
                    "node %s suspect: silent for %.1f s; its work is kept for %.1f s more",
                    name,
                    self.heartbeat_timeout,
                    self.lost_timeout - self.heartbeat_timeout,
                )
            if suspects:
                await retry_store(
                    lambda suspects=suspects: self._store_offline(suspects),
                    "recording suspect nodes",
                )
            if lost:
                await self._nodes_lost(lost)
            if suspects or lost:
                await self.registry.notify()

    async def _nodes_lost(self, names: list[str]) -> None:
        reasons = {}
        for name in names:
            node = self.registry.nodes[name]
            if node.last_seen == 0.0:
                reason = f"node {name!r} was lost: it did not reconnect after a controller restart"
            else:
                reason = f"node {name!r} was lost: silent for {self.lost_timeout:g} s"
            log.warning("%s; its running work is lost", reason)
            reasons[name] = reason
            link = self.registry.links.pop(name, None)
            if link:
                link.close()

        def change(batch: WriteBatch) -> None:
            for name, reason in reasons.items():
                self.experiments.on_node_lost(name, batch, reason)

        await retry_store(lambda: self.experiments.apply(change), "recording lost nodes")
        for name, reason in reasons.items():
            self.relay.node_lost(name, reason)
            self.graphs.node_lost(name, reason)

    async def _store_offline(self, names: list[str]) -> None:
        async with self.db.write() as conn:
            await node_queries.set_offline(conn, names)


def _close_reason(text: str) -> str:
    """A WebSocket close reason holds at most 123 bytes of UTF-8."""
    data = text.encode()
    return text if len(data) <= 123 else data[:120].decode(errors="ignore") + "..."


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _bearer(header: str) -> str:
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""
