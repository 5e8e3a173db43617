"""Commands: relayed between a client's stream and the agent of the node they run on.

The controller keeps only what it needs to route messages and to keep a record
(who ran what where, the return code, timings, the first 256 KiB of each
stream). Records are written behind the traffic, in batches, so a command's
round trip never waits for the disk.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from shoal.controller.auth import Principal
from shoal.controller.changes import ChangeFeed
from shoal.controller.links import Link
from shoal.controller.registry import NodeRegistry
from shoal.protocol import (
    CommandAck,
    CommandExit,
    CommandInput,
    CommandKill,
    CommandOutput,
    CommandSignal,
    CommandStarted,
    PutFile,
    RunCommand,
)
from shoal.store import commands as command_queries
from shoal.store.database import Database
from shoal.store.faults import retry_store

log = logging.getLogger("shoal.controller.commands")

KEEP = 256 * 1024  # bytes of each stream kept in the record


@dataclass
class LiveCommand:
    id: str
    node: str
    client: Link
    experiment_id: str | None
    cmd: str
    started_at: float = field(default_factory=time.time)
    pid: int | None = None
    stdout: bytearray = field(default_factory=bytearray)
    stderr: bytearray = field(default_factory=bytearray)
    truncated: bool = False
    is_file: bool = False

    def keep(self, stream: str, data: bytes) -> None:
        buffer = self.stdout if stream == "stdout" else self.stderr
        room = KEEP - len(buffer)
        if room > 0:
            buffer += data[:room]
        if len(data) > room:
            self.truncated = True

    def record(self, code: int | None, error: str | None) -> dict[str, Any]:
        return {
            "id": self.id,
            "experiment_id": self.experiment_id,
            "node": self.node,
            "cmd": self.cmd,
            "pid": self.pid,
            "started_at": self.started_at,
            "finished_at": time.time(),
            "return_code": code,
            "error": error,
            "stdout": self.stdout.decode("utf-8", errors="replace"),
            "stderr": self.stderr.decode("utf-8", errors="replace"),
            "truncated": self.truncated,
        }


class CommandRelay:
    def __init__(self, db: Database, registry: NodeRegistry) -> None:
        self.db = db
        self.registry = registry
        self.live: dict[str, LiveCommand] = {}
        self.run_owners: dict[str, int] = {}  # experiment id -> user id, for runs
        self._records: list[dict[str, Any]] = []
        self._record_ready = asyncio.Event()
        # Output relayed to clients since start, for /metrics.
        self.output_messages = 0
        self.output_bytes = 0
        self.feed = ChangeFeed()  # runs whose command records were stored

    # ------------------------------------------------------------ from clients

    def from_client(self, client: Link, caller: Principal, message: Any) -> None:
        if isinstance(message, RunCommand | PutFile):
            self._start(client, caller, message)
            return
        live = self.live.get(message.command)
        if live is None or live.client is not client:
            return  # finished already, or not this client's: nothing to do
        if isinstance(message, CommandInput | CommandSignal | CommandKill | CommandAck):
            self._to_node(live.node, message)

    def _start(self, client: Link, caller: Principal, message: RunCommand | PutFile) -> None:
        cid = message.command
        error = None
        if not cid or cid in self.live:
            error = f"command id {cid!r} is empty or already in use"
        elif message.node not in self.registry.nodes:
            known = ", ".join(sorted(self.registry.nodes)) or "none"
            error = f"unknown node {message.node!r} (known nodes: {known})"
        elif not self.registry.is_online(message.node):
            error = f"node {message.node!r} is offline"
        experiment = getattr(message, "experiment", "") or None
        owner = self.run_owners.get(experiment) if experiment is not None else caller.user_id
        if error is None and owner != caller.user_id:
            error = f"no run {experiment!r} of user {caller.login!r} is open"
        if error is not None:
            client.send(CommandExit(command=cid, error=error))
            return
        if isinstance(message, PutFile):
            text = f"<upload {len(message.data)} bytes to {message.path}>"
            self.live[cid] = LiveCommand(cid, message.node, client, None, text, is_file=True)
        else:
            self.live[cid] = LiveCommand(cid, message.node, client, experiment, message.cmd)
        if not self._to_node(message.node, message):
            error = f"node {message.node!r} is not connected right now (its agent is reconnecting)"
            self._finish(self.live[cid], CommandExit(command=cid, error=error))

    def cancel_run(self, experiment_id: str) -> int:
        """Close a run to new commands and kill the ones it runs; how many were killed.

        Each killed command ends as usual (its exit reaches the client and the
        record), with the signal that killed it.
        """
        self.run_owners.pop(experiment_id, None)
        killed = 0
        for live in list(self.live.values()):
            if live.experiment_id == experiment_id:
                killed += self._to_node(live.node, CommandKill(command=live.id, grace=0.5))
        return killed

    def client_gone(self, client: Link) -> None:
        """A client that goes away takes its running commands with it."""
        for live in list(self.live.values()):
            if live.client is client:
                self._to_node(live.node, CommandKill(command=live.id, grace=0.5))

    # ------------------------------------------------------------- from agents

    def from_agent(self, node: str, message: CommandStarted | CommandOutput | CommandExit) -> None:
        live = self.live.get(message.command)
        if live is None:
            return
        if live.node != node:
            log.warning(
                "dropped a %s about command %s from node %r: it runs on node %r",
                type(message).__name__,
                live.id,
                node,
                live.node,
            )
            return
        if isinstance(message, CommandOutput):
            live.keep(message.stream, message.data)
            self.output_messages += 1
            self.output_bytes += len(message.data)
        elif isinstance(message, CommandStarted):
            live.pid = message.pid
        else:
            self._finish(live, message)
            return
        live.client.send(message)

    def agent_hello(self, node: str, running: list[str]) -> None:
        """An agent (re)connected: commands it does not report are gone (or never arrived).

        Called before the new connection carries anything, so every command
        meant for this node went over the old one.
        """
        still = set(running)
        for live in list(self.live.values()):
            if live.node == node and live.id not in still:
                error = f"the agent on {node!r} restarted; the command is gone"
                self._finish(live, CommandExit(command=live.id, error=error))

    def node_lost(self, node: str, reason: str) -> None:
        for live in list(self.live.values()):
            if live.node == node:
                self._finish(live, CommandExit(command=live.id, error=reason))

    def _finish(self, live: LiveCommand, message: CommandExit) -> None:
        del self.live[live.id]
        live.client.send(message)
        if live.experiment_id is not None and not live.is_file:
            self._records.append(live.record(message.code, message.error))
            self._record_ready.set()

    def _to_node(self, node: str, message: Any) -> bool:
        link = self.registry.link(node)
        if link is None:
            return False
        link.send(message)
        return True

    # ------------------------------------------------------------ the records

    async def recorder(self) -> None:
        """Write finished commands in batches (runs for the controller's lifetime)."""
        while True:
            await self._record_ready.wait()
            self._record_ready.clear()
            batch, self._records = self._records, []
            if not batch:
                continue
            try:
                # A finished command's record waits out a store outage.
                await retry_store(lambda batch=batch: self._store(batch), "storing command records")
            except Exception:
                # A record must never take the relay down; the commands themselves ran.
                log.exception("could not store %d command records", len(batch))

    async def _store(self, batch: list) -> None:
        async with self.db.write() as conn:
            await command_queries.put_commands(conn, batch)
        self.feed.touch(row["experiment_id"] for row in batch)

    async def flush(self) -> None:
        """Store what is pending now (used when a run finishes)."""
        batch, self._records = self._records, []
        if batch:
            try:
                await self._store(batch)
            except BaseException:
                self._records[:0] = batch  # kept for the recorder to store later
                self._record_ready.set()
                raise
