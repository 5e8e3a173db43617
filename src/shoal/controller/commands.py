"""Commands, as the controller knows them: who may run them, what runs where, records.

A command's bytes never pass through here: the client sends it over a channel
to the node's ``commands`` endpoint and its output comes back the same way.
The controller decides who gets such a channel (``may_open``, the guard of the
endpoint's grants: a user, on a run of theirs that is open), and the node
reports each command to it over the agent's WebSocket: what ran and for whom,
the first 256 KiB of each stream, the exit. That is the record (written behind
the traffic, in batches) and the dashboard's live view.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from shoal.controller.auth import Authenticator, Principal
from shoal.controller.changes import ChangeFeed
from shoal.controller.registry import NodeRegistry
from shoal.protocol.command_messages import (
    KEEP,
    CommandExit,
    CommandOutput,
    CommandStarted,
    EndRun,
    RunEnded,
)
from shoal.store import commands as command_queries
from shoal.store.database import Database
from shoal.store.faults import retry_store

log = logging.getLogger("shoal.controller.commands")

ENDPOINT = "commands"  # the nodes' endpoint; ``commands/RUN_ID`` for a run's commands
END_RUN_TIMEOUT = 5.0  # how long a run's end waits for its nodes' last reports
# Records that end within this many seconds of each other are written in one
# transaction: one per command cost the controller more CPU than the command
# itself, which a small node shares with its commands and their clients.
RECORD_PERIOD = 0.05


@dataclass
class LiveCommand:
    """A command running on a node, as its node reported it."""

    id: str
    node: str
    experiment_id: str | None
    cmd: str
    opener: str = ""
    started_at: float = field(default_factory=time.time)
    pid: int | None = None
    stdout: bytearray = field(default_factory=bytearray)
    stderr: bytearray = field(default_factory=bytearray)
    truncated: bool = False
    # The client chose ``id``, so two users' ids may meet: the record and the
    # live view go by the controller's own.
    record_id: str = field(default_factory=lambda: secrets.token_hex(16))

    def keep(self, stream: str, data: bytes) -> None:
        buffer = self.stdout if stream == "stdout" else self.stderr
        room = KEEP - len(buffer)
        if room > 0:
            buffer += data[:room]
        if len(data) > room:
            self.truncated = True

    def record(self, code: int | None, error: str | None) -> dict[str, Any]:
        return {
            "id": self.record_id,
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


class CommandRecorder:
    """Guards the nodes' ``commands`` endpoint, follows the commands nodes report,
    and keeps their records."""

    def __init__(self, db: Database, registry: NodeRegistry, auth: Authenticator) -> None:
        self.db = db
        self.registry = registry
        self.auth = auth
        self.live: dict[tuple[str, str], LiveCommand] = {}  # (node, command id) ->
        self.run_owners: dict[str, int] = {}  # open run id -> user id
        # Open run id -> the nodes granted a channel for its commands: only they
        # may report commands of the run, and they are told when it ends.
        self.run_nodes: defaultdict[str, set[str]] = defaultdict(set)
        self._run_ended: dict[tuple[str, str], asyncio.Event] = {}
        self._records: list[dict[str, Any]] = []
        self._record_ready = asyncio.Event()
        # Output reported by nodes since start, for /metrics.
        self.output_messages = 0
        self.output_bytes = 0
        self.feed = ChangeFeed()  # runs whose command records were stored

    # ------------------------------------------------------------ who may run

    def may_open(self, caller: Principal, node: str, endpoint: str) -> str:
        """Why ``caller`` may not open a channel to ``endpoint`` on ``node`` ("": it may)."""
        if caller.kind != "user":
            return "running commands on nodes needs a user token"
        run = "" if endpoint == ENDPOINT else endpoint.removeprefix(ENDPOINT + "/")
        if run and self.run_owners.get(run) != caller.user_id:
            return f"no run {run!r} of user {caller.login!r} is open"
        if run:
            self.run_nodes[run].add(node)
        return ""

    async def end_run(self, run: str, *, kill: bool = False) -> int:
        """Close run ``run`` to new commands (``kill``: end its running ones too) and
        wait (briefly) until its nodes have reported all they ran; then store its
        records. Returns how many commands were running."""
        self.run_owners.pop(run, None)
        running = sum(1 for c in self.live.values() if c.experiment_id == run)
        waits = []
        for node in self.run_nodes.pop(run, set()):
            link = self.registry.link(node)
            if link is None:
                continue
            ended = self._run_ended[(node, run)] = asyncio.Event()
            link.send(EndRun(run=run, kill=kill))
            waits.append(ended.wait())
        try:
            async with asyncio.timeout(END_RUN_TIMEOUT):
                await asyncio.gather(*waits)
        except TimeoutError:
            log.warning("run %s ended without the last reports of some of its nodes", run)
        finally:
            for key in [k for k in self._run_ended if k[1] == run]:
                del self._run_ended[key]
        await self.flush()
        return running

    # ------------------------------------------------------------- from agents

    def from_agent(
        self, node: str, message: CommandStarted | CommandOutput | CommandExit | RunEnded
    ) -> None:
        if isinstance(message, RunEnded):
            ended = self._run_ended.get((node, message.run))
            if ended is not None:
                ended.set()
            return
        if isinstance(message, CommandStarted):
            self._started(node, message)
            return
        live = self.live.get((node, message.command))
        if live is None:
            return
        if isinstance(message, CommandOutput):
            live.keep(message.stream, message.data)
            self.output_messages += 1
            self.output_bytes += len(message.data)
        else:
            self._finish(live, message.code, message.error)

    def _started(self, node: str, message: CommandStarted) -> None:
        run = message.run or None
        if run is not None and node not in self.run_nodes.get(run, ()):
            # Only a node the run's owner was granted a channel to runs its commands.
            log.warning(
                "dropped the report of command %s on node %r: no channel to it for run %r",
                message.command,
                node,
                run,
            )
            return
        key = (node, message.command)
        if key in self.live:
            return
        self.live[key] = LiveCommand(
            message.command, node, run, message.cmd, message.opener, pid=message.pid
        )

    def agent_hello(self, node: str, running: list[str]) -> None:
        """An agent (re)connected: commands it does not report are gone (or never arrived).

        Called before the new connection carries anything, so what the node said
        about its commands before came over the old one.
        """
        still = set(running)
        for live in list(self.live.values()):
            if live.node == node and live.id not in still:
                self._finish(live, None, f"the agent on {node!r} restarted; the command is gone")

    def node_lost(self, node: str, reason: str) -> None:
        for live in list(self.live.values()):
            if live.node == node:
                self._finish(live, None, reason)

    def _finish(self, live: LiveCommand, code: int | None, error: str | None) -> None:
        del self.live[(live.node, live.id)]
        if live.experiment_id is not None:
            self._records.append(live.record(code, error))
            self._record_ready.set()

    # ------------------------------------------------------------ the records

    async def recorder(self) -> None:
        """Write finished commands in batches (runs for the controller's lifetime)."""
        while True:
            await self._record_ready.wait()
            await asyncio.sleep(RECORD_PERIOD)  # a batching period, not a wait for an event
            self._record_ready.clear()
            batch, self._records = self._records, []
            if not batch:
                continue
            try:
                # A finished command's record waits out a store outage.
                await retry_store(lambda batch=batch: self._store(batch), "storing command records")
            except Exception:
                # A record must never take the controller down; the commands themselves ran.
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
