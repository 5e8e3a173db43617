"""Commands, as the controller knows them: who may run them, what runs where, records.

A command's bytes never pass through here: the client sends it over a channel
to the node's ``commands`` endpoint and its output comes back the same way.
The controller decides who gets such a channel (``may_open``, the guard of the
endpoint's grants: a user, on a run of theirs that is open), and the node
reports each command to it over the agent's WebSocket: what ran and for whom,
the first 256 KiB of each stream, the exit. That is the record (written behind
the traffic, in batches) and the dashboard's live view.

Nothing of it is lost to a dropped connection or a controller restart: a node
keeps each record of a run's command until told it is stored
(``CommandsStored``) and sends it whole again after a reconnect
(``CommandRecord``); the runs' owners and the nodes granted to them are in the
store, so a controller started later takes those records as the first would
have. A record that comes after its run ended is still taken, if the node was
granted to the run.
"""

from __future__ import annotations

import asyncio
import hashlib
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
    CommandRecord,
    CommandsStored,
    CommandStarted,
    EndRun,
    RunEnded,
)
from shoal.store import commands as command_queries
from shoal.store.database import Database
from shoal.store.faults import StoreError, retry_store

log = logging.getLogger("shoal.controller.commands")

ENDPOINT = "commands"  # the nodes' endpoint; ``commands/RUN_ID`` for a run's commands
END_RUN_TIMEOUT = 5.0  # how long a run's end waits for its nodes' last reports
# Records that end within this many seconds of each other are written in one
# transaction: one per command cost the controller more CPU than the command
# itself, which a small node shares with its commands and their clients.
RECORD_PERIOD = 0.05
Report = CommandStarted | CommandOutput | CommandExit | CommandRecord | RunEnded
COMMAND_REPORTS = (CommandStarted, CommandOutput, CommandExit, CommandRecord, RunEnded)


def record_id(node: str, node_record: str) -> str:
    """The id of the record a node calls ``node_record``: under the node's name, so
    one node's ids cannot reach another's records."""
    return hashlib.sha256(f"{node}\0{node_record}".encode()).hexdigest()[:32]


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
    node_record: str = ""  # the node's id for the record ("": it keeps none)
    # The client chose ``id``, so two users' ids may meet: the record and the
    # live view go by the controller's own.
    record_id: str = ""

    def __post_init__(self) -> None:
        if not self.record_id:
            kept = self.node_record
            self.record_id = record_id(self.node, kept) if kept else secrets.token_hex(16)

    @classmethod
    def from_record(cls, node: str, message: CommandRecord) -> LiveCommand:
        return cls(
            message.command,
            node,
            message.run,
            message.cmd,
            message.opener,
            started_at=message.started_at or time.time(),
            pid=message.pid,
            stdout=bytearray(message.stdout[:KEEP]),
            stderr=bytearray(message.stderr[:KEEP]),
            truncated=message.truncated,
            node_record=message.record,
        )

    def keep(self, stream: str, data: bytes) -> None:
        buffer = self.stdout if stream == "stdout" else self.stderr
        room = KEEP - len(buffer)
        if room > 0:
            buffer += data[:room]
        if len(data) > room:
            self.truncated = True

    def record(
        self, code: int | None, error: str | None, finished_at: float | None = None
    ) -> dict[str, Any]:
        return {
            "id": self.record_id,
            "experiment_id": self.experiment_id,
            "node": self.node,
            "cmd": self.cmd,
            "pid": self.pid,
            "started_at": self.started_at,
            "finished_at": finished_at or time.time(),
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
        # Records to store: (row, node, the node's id to confirm it by, or "").
        self._records: list[tuple[dict[str, Any], str, str]] = []
        # Records resent for runs no longer open: stored if the node was granted.
        self._late: list[tuple[str, CommandRecord]] = []
        self._record_ready = asyncio.Event()
        # Output reported by nodes since start, for /metrics.
        self.output_messages = 0
        self.output_bytes = 0
        self.feed = ChangeFeed()  # runs whose command records were stored

    # ------------------------------------------------------------ who may run

    async def load(self) -> None:
        """Take up the runs still open, with the nodes granted to them (a run
        outlives the controller: its client drives it)."""
        async with self.db.read() as conn:
            runs = await command_queries.open_runs(conn)
        for run, (owner, nodes) in runs.items():
            self.run_owners[run] = owner
            self.run_nodes[run] = nodes

    async def may_open(self, caller: Principal, node: str, endpoint: str) -> str:
        """Why ``caller`` may not open a channel to ``endpoint`` on ``node`` ("": it may)."""
        if caller.kind != "user":
            return "running commands on nodes needs a user token"
        run = "" if endpoint == ENDPOINT else endpoint.removeprefix(ENDPOINT + "/")
        if not run:
            return ""
        refused = f"no run {run!r} of user {caller.login!r} is open"
        if self.run_owners.get(run) != caller.user_id:
            return refused
        if node not in self.run_nodes[run]:
            # Stored before the grant is given: the node's reports of the run's
            # commands are believed by whichever controller takes them.
            async with self.db.write() as conn:
                await command_queries.put_grant(conn, run, node)
            if run not in self.run_owners:
                return refused  # it ended meanwhile
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

    def from_agent(self, node: str, message: Report) -> None:
        if isinstance(message, RunEnded):
            ended = self._run_ended.get((node, message.run))
            if ended is not None:
                ended.set()
            return
        if isinstance(message, CommandStarted):
            self._started(node, message)
            return
        if isinstance(message, CommandRecord):
            self._resent(node, message)
            return
        live = self.live.get((node, message.command))
        if live is None:
            return
        if isinstance(message, CommandOutput):
            live.keep(message.stream, message.data)
            self.output_messages += 1
            self.output_bytes += len(message.data)
        else:
            self._finish(live, message.code, message.error, confirm=True)

    def _started(self, node: str, message: CommandStarted) -> None:
        run = message.run or None
        if run is not None and node not in self.run_nodes.get(run, ()):
            self._refuse(node, message.command, run, message.record)
            return
        key = (node, message.command)
        if key in self.live:
            return
        self.live[key] = LiveCommand(
            message.command,
            node,
            run,
            message.cmd,
            message.opener,
            pid=message.pid,
            node_record=message.record if run is not None else "",
        )

    def _resent(self, node: str, message: CommandRecord) -> None:
        """A node's whole record of a command: it replaces what was known of it."""
        if message.run not in self.run_owners:
            # Its run ended (or never was): the store knows whether it was granted.
            self._late.append((node, message))
            self._record_ready.set()
            return
        if node not in self.run_nodes.get(message.run, ()):
            self._refuse(node, message.command, message.run, message.record)
            return
        live = self.live[(node, message.command)] = LiveCommand.from_record(node, message)
        if message.ended:
            self._finish(live, message.code, message.error, message.finished_at, confirm=True)

    def _refuse(self, node: str, command: str, run: str, node_record: str) -> None:
        # Only a node the run's owner was granted a channel to runs its commands.
        log.warning(
            "dropped the report of command %s on node %r: no channel to it for run %r",
            command,
            node,
            run,
        )
        if node_record:
            self._confirm({node: [node_record]})  # it will never be stored: forget it

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

    def _finish(
        self,
        live: LiveCommand,
        code: int | None,
        error: str | None,
        finished_at: float | None = None,
        *,
        confirm: bool = False,
    ) -> None:
        """End ``live``; ``confirm``: the node said how it ended, so the node may
        forget its record once this is stored (an end the controller guessed,
        node lost or restarted, does not let it)."""
        del self.live[(live.node, live.id)]
        if live.experiment_id is not None:
            node_record = live.node_record if confirm else ""
            self._records.append((live.record(code, error, finished_at), live.node, node_record))
            self._record_ready.set()

    # ------------------------------------------------------------ the records

    async def recorder(self) -> None:
        """Write finished commands in batches (runs for the controller's lifetime)."""
        while True:
            await self._record_ready.wait()
            await asyncio.sleep(RECORD_PERIOD)  # a batching period, not a wait for an event
            self._record_ready.clear()
            try:
                # A finished command's record waits out a store outage.
                await retry_store(self.flush, "storing command records")
            except Exception:
                # A record must never take the controller down; the commands
                # themselves ran, and their nodes keep the records to send again.
                log.exception("could not store %d command records", len(self._records))

    async def flush(self) -> None:
        """Store what is pending now (also when a run finishes) and tell the nodes."""
        batch, self._records = self._records, []
        late, self._late = self._late, []
        if not batch and not late:
            return
        try:
            if late:
                batch += await self._granted(late)
            await self._store(batch)
        except StoreError:
            self._requeue(batch, late)  # the store is away: the recorder tries again
            raise
        except Exception:
            # Not an outage: a row the store refuses for good (its run was deleted
            # meanwhile). Row by row, so that one does not take the others down,
            # nor come back every period.
            log.exception("the store refused a batch of %d command records", len(batch))
            await self._store_each(batch)
        except BaseException:
            self._requeue(batch, late)
            raise

    def _requeue(self, batch: list[Any], late: list[tuple[str, CommandRecord]]) -> None:
        self._records[:0] = batch
        self._late[:0] = late
        self._record_ready.set()

    async def _store_each(self, batch: list[tuple[dict[str, Any], str, str]]) -> None:
        for item in batch:
            try:
                await self._store([item])
            except StoreError:
                self._requeue([item], [])
            except Exception as exc:
                row, node, node_record = item
                log.warning(
                    "dropped the record of command %r on %r (run %s): %s",
                    row["cmd"][:80],
                    node,
                    row["experiment_id"],
                    type(exc).__name__,
                )
                if node_record:
                    self._confirm({node: [node_record]})  # it will never be stored

    async def _granted(self, late: list[tuple[str, CommandRecord]]) -> list:
        """The late records whose node was granted to their run, as rows to store
        (one still running is followed live until it ends); the others are refused."""
        async with self.db.read() as conn:
            granted = await command_queries.granted(conn, [(m.run, n) for n, m in late])
        rows = []
        for node, message in late:
            if (message.run, node) not in granted:
                self._refuse(node, message.command, message.run, message.record)
                continue
            live = LiveCommand.from_record(node, message)
            if message.ended:
                row = live.record(message.code, message.error, message.finished_at)
                rows.append((row, node, message.record))
            else:
                self.live.setdefault((node, message.command), live)
        return rows

    async def _store(self, batch: list[tuple[dict[str, Any], str, str]]) -> None:
        # A record sent again may meet its first version in one batch: the last wins.
        rows = {row["id"]: row for row, _, _ in batch}
        async with self.db.write() as conn:
            await command_queries.put_commands(conn, list(rows.values()))
        self.feed.touch(row["experiment_id"] for row in rows.values())
        confirmed: defaultdict[str, list[str]] = defaultdict(list)
        for _, node, node_record in batch:
            if node_record:
                confirmed[node].append(node_record)
        self._confirm(confirmed)

    def _confirm(self, records: dict[str, list[str]]) -> None:
        # A node not connected now sends its records again when it is; stored twice,
        # a record is the same row.
        for node, ids in records.items():
            link = self.registry.link(node)
            if link is not None:
                link.send(CommandsStored(records=ids))
