"""The agent's main loop: connect out, say who we are, run what we are told.

Executors outlive connections: a dropped WebSocket only pauses reporting. On
every (re)connect the agent sends a full report of the deployments it holds,
so whatever finished while it was away reaches the controller.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import shutil
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from shoal.agent.channel_probes import register_probes
from shoal.agent.channel_server import ChannelServer
from shoal.agent.command import ENDPOINT as COMMANDS
from shoal.agent.command import CommandService
from shoal.agent.config import AgentConfig
from shoal.agent.deployment import TERMINAL, DeploymentRunner
from shoal.agent.metrics import MetricsSampler
from shoal.agent.object_store import serve_object
from shoal.channel import AsyncChannel, open_channel
from shoal.private import read_private, write_private
from shoal.protocol import (
    PROTOCOL_VERSION,
    Cancel,
    ControllerMessage,
    Forget,
    FrameDecoder,
    FrameEncoder,
    Hello,
    Prepare,
    Start,
    Welcome,
)
from shoal.protocol.agent_messages import ChannelOffer, CloseChannels
from shoal.protocol.channel_messages import ChannelGrant
from shoal.protocol.command_messages import CommandsStored, EndRun
from shoal.protocol.flag_messages import FlagAnswer
from shoal.protocol.graph_messages import (
    OBJECT_ENDPOINT,
    GraphCancel,
    GraphFree,
    GraphPrefetch,
    GraphRun,
)

if TYPE_CHECKING:
    from shoal.agent.graph_runtime import GraphRuntime

log = logging.getLogger("shoal.agent")

OUTBOX_LIMIT = 100_000
GRAPH_MESSAGES = (GraphRun, GraphCancel, GraphFree, GraphPrefetch)


CLOSE_REFUSED = 4403  # the controller's close code for "you may not be this node"


class AgentRefused(Exception):
    """The controller refused this agent (wrong join token, or the node name is
    enrolled with another credential); retrying cannot help."""


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.runners: dict[str, DeploymentRunner] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        # Runs what comes to the `commands` endpoint.
        self.commands = CommandService(self.emit, lambda: time.time() + self._clock_offset)
        self._outbox: deque[object] = deque(maxlen=OUTBOX_LIMIT)
        self._wake = asyncio.Event()
        self._encoder = FrameEncoder()
        self._decoder: FrameDecoder[ControllerMessage] = FrameDecoder(ControllerMessage)
        self._sampler = MetricsSampler()
        self._tg: asyncio.TaskGroup | None = None
        self.graph: GraphRuntime | None = None
        # Channels to this node: direct ones on this listener, relayed ones when offered.
        self._channel_server = ChannelServer(
            config.name, lambda: (self._data_key, self._clock_offset)
        )
        register_probes(self._channel_server)
        self._channel_server.register(COMMANDS, self.commands.serve)  # outside a run
        self._channel_server.register(COMMANDS + "/", self.commands.serve)  # a run's
        self._channel_server.register(OBJECT_ENDPOINT, self._serve_object)
        self._data_key = b""
        self._clock_offset = 0.0  # the controller's clock minus ours
        self._graph_epoch = ""
        self._graph_root: Path | None = None
        # Plain TCP must not carry what a TLS controller protects: behind TLS,
        # channels (graph objects too) go through the controller's relay instead.
        self._serve_data = config.data_server and not config.controller.startswith("https://")
        self._credential: str | None = None

    def emit(self, message: object) -> None:
        self._outbox.append(message)
        self._wake.set()

    async def run(self) -> None:
        """Serve until cancelled; raises AgentRefused if the controller refuses this node."""
        self._credential = self._load_credential()
        if self._credential is None and not self.config.join_token:
            raise AgentRefused(
                f"node {self.config.name!r} has no credential yet "
                f"({self.config.credential_path}) and no join token was given: "
                "give --token-file FILE or set SHOAL_AGENT_TOKEN"
            )
        if self.config.data_server and not self._serve_data:
            log.warning(
                "the controller runs TLS: channels to this node (graph objects too) go "
                "through the controller, not this agent's (unencrypted) channel server"
            )
        if self.config.isolate_users:
            log.warning("graph tasks run under one OS user per shoal user (--isolate-users)")
        else:
            log.warning(
                "graph tasks of all shoal users run as this agent's OS user (uid %d) and can "
                "read each other's objects and files; --isolate-users (as root) separates them",
                os.getuid(),
            )
        try:
            await self._serve()
        finally:
            await self._channel_server.stop()
            if self._graph_root is not None and self.config.workdir is None:
                shutil.rmtree(self._graph_root, ignore_errors=True)

    async def _serve(self) -> None:
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            backoff = 0.05
            while True:
                try:
                    async with connect(
                        self.config.ws_url,
                        additional_headers={"Authorization": f"Bearer {self._secret()}"},
                        max_size=256 * 1024 * 1024,
                        # Frames are msgpack and object data, often incompressible;
                        # deflate cost more CPU than the bytes it saved.
                        compression=None,
                        open_timeout=10,
                        ping_interval=10,
                        ping_timeout=30,
                    ) as ws:
                        backoff = 0.05
                        await self._session(ws)
                except AgentRefused:
                    raise
                except InvalidStatus as exc:
                    if exc.response.status_code in (401, 403):
                        self._refused()
                    else:
                        log.warning("controller answered %s; retrying", exc.response.status_code)
                except (OSError, TimeoutError, websockets.InvalidHandshake) as exc:
                    log.info("cannot reach %s (%s); retrying", self.config.controller, exc)
                except Exception:
                    # An agent must outlive whatever went wrong with one connection:
                    # its executors are still running and their results still due.
                    log.exception("connection to %s failed; retrying", self.config.controller)
                # Jitter spreads the reconnects of a whole fleet after a controller restart.
                await asyncio.sleep(backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, self.config.max_backoff)

    async def _listen_for_peers(self, ws: ClientConnection) -> str:
        """(Re)start the channel server where peers can reach it; the host to tell them."""
        local = str(ws.local_address[0]) if ws.local_address else "127.0.0.1"
        host = self.config.data_address or local
        if self._channel_server.server is None or self._channel_server.host != host:
            port = await self._channel_server.start(host)
            log.info("serving channels on %s:%d", host, port)
        # A wildcard is no address to reach us at: the controller then uses the
        # one it sees us connect from.
        return "" if host in ("0.0.0.0", "::", local) else host

    def _secret(self) -> str:
        return self._credential or self.config.join_token or ""

    async def _serve_object(self, channel: AsyncChannel) -> None:
        await serve_object(self.graph.store if self.graph is not None else None, channel)

    async def _open_channel(self, grant: ChannelGrant) -> AsyncChannel:
        """A channel this node opens with a grant the controller sent it (its
        credential stands for ``node:NAME`` on the relay)."""
        return await open_channel(grant, controller=self.config.controller, token=self._secret())

    def _refused(self) -> None:
        """The controller did not accept what we showed: enroll again, or give up."""
        if self._credential is not None and self.config.join_token:
            # A controller with a new database, or an operator forgot this node.
            log.warning(
                "the controller does not know node %s's credential; enrolling again "
                "with the join token",
                self.config.name,
            )
            self._credential = None
            return
        shown = "node credential" if self._credential else "join token"
        raise AgentRefused(
            f"the controller at {self.config.controller} refused agent "
            f"{self.config.name!r}: wrong {shown}"
        )

    def _load_credential(self) -> str | None:
        path = self.config.credential_path
        if not path.exists():
            return None
        try:
            return read_private(path)
        except ValueError as exc:
            log.warning("no node credential: %s", exc)
            return None

    def _enrolled(self, credential: str) -> None:
        """Keep the credential the controller issued at enrollment; show it from now on."""
        path = self.config.credential_path
        try:
            write_private(path, credential + "\n")
        except OSError as exc:
            # The controller bound the name already: without the file, a restarted
            # agent cannot be this node until an operator forgets it.
            log.error("cannot store this node's credential in %s: %s", path, exc)
        else:
            log.info("node %s enrolled; its credential is in %s", self.config.name, path)
        self._credential = credential

    def _write_status(self, *, connected: bool) -> None:
        """Say in the workdir whether the controller has us now: what `shoal deploy`
        waits for and `shoal deploy --status` shows, read over SSH."""
        if self.config.workdir is None:
            return
        status = {
            "connected": connected,
            "controller": self.config.controller,
            "since": time.time(),
        }
        with contextlib.suppress(OSError):
            path = Path(self.config.workdir) / "agent-status.json"
            partial = path.with_suffix(".partial")
            partial.write_text(json.dumps(status), encoding="utf-8")
            partial.replace(path)

    async def _session(self, ws: ClientConnection) -> None:
        data_host = await self._listen_for_peers(ws) if self._serve_data else ""
        hello = Hello(
            name=self.config.name,
            version=PROTOCOL_VERSION,
            architecture=self.config.architecture,
            cpus=self.config.cpus,
            properties=self.config.properties,
            deployments=[r.report() for r in self.runners.values()],
            commands=list(self.commands.running),
            data_host=data_host,
            channel_port=self._channel_server.port if self._serve_data else 0,
        )
        await ws.send(self._encoder.encode([hello]))
        log.info("connected to %s as %s", self.config.controller, self.config.name)
        refusal: str | None = None
        async with asyncio.TaskGroup() as tg:
            sender = tg.create_task(self._sender(ws))
            beats = None
            try:
                async for data in ws:
                    if isinstance(data, str):
                        continue
                    for message in self._decoder.decode(data):
                        if isinstance(message, Welcome) and beats is None:
                            beats = tg.create_task(self._heartbeats(message.heartbeat_interval))
                        self._handle(message)
            except ConnectionClosed as exc:
                log.info("connection to %s closed (%s)", self.config.controller, exc)
                if exc.rcvd is not None and exc.rcvd.code == CLOSE_REFUSED:
                    refusal = exc.rcvd.reason
            finally:
                sender.cancel()
                if beats is not None:
                    beats.cancel()
                self._write_status(connected=False)
        if refusal is not None:
            raise AgentRefused(
                f"the controller at {self.config.controller} refused agent "
                f"{self.config.name!r}: {refusal}"
            )

    def _handle(self, message: ControllerMessage) -> None:
        assert self._tg is not None
        if isinstance(message, Welcome):
            if message.credential:
                self._enrolled(message.credential)
            self._write_status(connected=True)
            for dep_id in message.forget:
                self._forget(dep_id)
            self._data_key, self._graph_epoch = message.data_key, message.graph_epoch
            if message.clock:
                self._clock_offset = message.clock - time.time()
            # The graph runtime and its warm workers come up now, not with the
            # first task: a graph submitted right after the agent joined runs
            # on every cpu at once.
            self._graph().welcome(message.graph_epoch)
            self._resend_flag_calls()
            self.commands.resend_records()
        elif isinstance(message, ChannelOffer):
            url = self.config.ws_url.removesuffix("/api/agents/ws")
            url += f"/api/channels/target/{quote(message.ticket, safe='')}"
            self._tg.create_task(self._channel_server.take_relayed(url))
        elif isinstance(message, FlagAnswer):
            runner = self.runners.get(message.deployment)
            if runner is not None:
                runner.flag_answer(message)
        elif isinstance(message, GRAPH_MESSAGES):
            self._graph().handle(message)
        elif isinstance(message, Prepare):
            if message.deployment in self.runners:
                return  # a resent Prepare: we already have it
            endpoint = self.config.controller.rstrip("/")
            runner = DeploymentRunner(message, self.emit, endpoint, self._channel_server)
            self.runners[runner.id] = runner
            self._tasks[runner.id] = self._tg.create_task(runner.run())
        elif isinstance(message, Start):
            runner = self.runners.get(message.deployment)
            if runner is not None:
                runner.start()
        elif isinstance(message, Cancel):
            runner = self.runners.get(message.deployment)
            if runner is not None:
                self._tg.create_task(self._cancel(runner))
        elif isinstance(message, Forget):
            self._forget(message.deployment)
        else:
            self._handle_command(message)

    def _resend_flag_calls(self) -> None:
        """Send again the flag calls a dropped connection may have swallowed
        (the controller answers a repeated change without applying it twice)."""
        queued = {id(message) for message in self._outbox}
        for runner in self.runners.values():
            for call in runner.flag_calls.values():
                if id(call) not in queued:
                    self.emit(call)

    def _handle_command(self, message: ControllerMessage) -> None:
        assert self._tg is not None
        if isinstance(message, EndRun):
            self.commands.end_run(message, self._tg)
        elif isinstance(message, CommandsStored):
            self.commands.records_stored(message)
        elif isinstance(message, CloseChannels):
            self._channel_server.close_token(message.token, message.reason, self._tg)

    def _graph(self) -> GraphRuntime:
        if self.graph is None:
            # Imported here: `shoal` commands that start no agent need none of it.
            from shoal.agent.graph_runtime import GraphRuntime

            assert self._tg is not None
            if self.config.workdir is not None:
                self._graph_root = Path(self.config.workdir) / "graph"
            else:
                self._graph_root = Path(tempfile.mkdtemp(prefix=f"shoal-graph-{self.config.name}-"))
            self.graph = GraphRuntime(
                self.config.name,
                self._graph_root,
                self.config.cpus,
                self.emit,
                self._tg,
                self._open_channel,
                isolate_users=self.config.isolate_users,
            )
            self.graph.welcome(self._graph_epoch)
        return self.graph

    async def _cancel(self, runner: DeploymentRunner) -> None:
        await runner.cancel()
        task = self._tasks.get(runner.id)
        if task is not None and not task.done():
            task.cancel()

    def _forget(self, dep_id: str) -> None:
        runner = self.runners.pop(dep_id, None)
        task = self._tasks.pop(dep_id, None)
        if runner is not None and runner.state not in TERMINAL and task and not task.done():
            task.cancel()  # the controller no longer wants it

    async def _sender(self, ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self._send_loop(ws)

    async def _send_loop(self, ws: ClientConnection) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._outbox:
                batch: list[object] = []
                while self._outbox and len(batch) < 1000:
                    batch.append(self._outbox.popleft())
                await ws.send(self._encoder.encode(batch))

    async def _heartbeats(self, interval: float) -> None:
        while True:
            self.emit(self._sampler.sample())
            await asyncio.sleep(interval)
