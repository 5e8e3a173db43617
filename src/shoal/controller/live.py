"""Live updates for the dashboard: one shared ticker feeding many event streams.

Watching must stay cheap however many pages are open and however busy the
controller is, so nothing here runs per event or per watcher:

* one task (``LiveHub.run``) wakes at most every ``TICK`` seconds, and only
  while some page is open;
* what lives in memory (nodes, their metrics, what runs where, the output of
  running commands) is read from memory;
* what lives in the store (experiment lists, an experiment's steps, flags and
  log tail) is read at most every ``STORED_TICK`` seconds, only for the
  experiments the services' change feeds name, and once for all the watchers
  that look at it;
* each watcher holds only the newest payload of each topic: a slow page skips
  states, it never queues them, and an unchanged payload is not sent again;
* a big graph session or network is sent as its counts and its running and
  failed items (``items_partial``), not as its thousands of tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

from fastapi import HTTPException
from sqlalchemy.ext.asyncio import AsyncConnection

from shoal.controller.auth import Principal
from shoal.controller.commands import CommandRecorder, LiveCommand
from shoal.controller.experiments import (
    TERMINAL_DEPLOYMENT,
    TERMINAL_EXPERIMENT,
    ExperimentService,
)
from shoal.controller.flags import FlagService
from shoal.controller.record_views import describe_records, item_json
from shoal.controller.registry import NodeRegistry
from shoal.store import experiments as exp_queries
from shoal.store import records as record_queries
from shoal.store import summaries
from shoal.store.database import Database
from shoal.store.faults import StoreError

log = logging.getLogger("shoal.controller.live")

TICK = 0.5  # seconds between looks at memory (nodes, running commands)
STORED_TICK = 1.0  # seconds between reads of the store for one experiment or list
LOG_TAIL = 200  # log lines an experiment page shows
OUTPUT_TAIL = 8192  # characters of each running command's streams sent
# A record with more items (tasks, objects, jobs) than this is sent as its counts
# and at most PARTIAL_ITEMS of its running and failed items.
FULL_ITEMS = 1000
PARTIAL_ITEMS = 200
SHOWN_WHEN_PARTIAL = ("running", "failed")
ITEM_KEYS = (("tasks", "task"), ("objects", "object"), ("jobs", "job"))

# The events of a stream: the topics a page asks for, and an experiment's.
NODES, EXPERIMENTS = "nodes", "experiments"
EXPERIMENT, OUTPUT, GONE = "experiment", "output", "gone"
TOPICS = frozenset({NODES, EXPERIMENTS})


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


@dataclass(eq=False)
class Watcher:
    """One open event stream: what it looks at and the newest payload of each topic."""

    caller: Principal
    topics: frozenset[str]
    experiment_id: str | None = None
    fresh: bool = True  # nothing sent yet: served at once, not at the next tick
    pending: dict[str, str] = field(default_factory=dict)
    posted: dict[str, str] = field(default_factory=dict)
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    def post(self, topic: str, data: str) -> None:
        """Queue ``data`` unless it is what this watcher got last; replaces an unsent one."""
        if self.posted.get(topic) == data:
            return
        self.posted[topic] = data
        self.pending[topic] = data
        self.ready.set()

    async def next(self, timeout: float) -> dict[str, str]:
        """What to send now: topic -> JSON; empty if ``timeout`` passed first."""
        try:
            async with asyncio.timeout(timeout):
                await self.ready.wait()
        except TimeoutError:
            return {}
        self.ready.clear()
        out, self.pending = self.pending, {}
        return out


@dataclass
class _View:
    """One watched experiment, as read from the store, shared by its watchers."""

    payload: str = "{}"  # what its watchers get (JSON)
    logs: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=LOG_TAIL))
    last_log: int = 0
    read_at: float = 0.0
    gone: bool = False


class LiveHub:
    """Computes what the dashboard's pages show, once per tick for all of them."""

    def __init__(
        self,
        db: Database,
        registry: NodeRegistry,
        experiments: ExperimentService,
        flags: FlagService,
        relay: CommandRecorder,
    ) -> None:
        self.db = db
        self.registry = registry
        self.experiments = experiments
        self.flags = flags
        self.relay = relay
        self.watchers: set[Watcher] = set()
        self._feeds = (experiments.feed, flags.feed, relay.feed)
        self._watched = asyncio.Event()
        self._wake = asyncio.Event()
        self._views: dict[str, _View] = {}
        self._changed: set[str] = set()  # watched experiments changed since last read
        self._lists_stale = False  # some experiment changed since the lists were read
        self._lists_read_at = 0.0
        self._run_names: dict[str, str] = {}  # run id -> name, for runs seen running
        # Counts and truthful state of ended experiments: they change no more.
        self._ended: dict[str, dict[str, Any]] = {}

    @contextlib.asynccontextmanager
    async def watch(self, watcher: Watcher) -> AsyncIterator[Watcher]:
        """Register ``watcher`` for as long as the block runs."""
        self.watchers.add(watcher)
        for feed in self._feeds:
            feed.active = True
        self._watched.set()
        self._wake.set()
        try:
            yield watcher
        finally:
            self.watchers.discard(watcher)
            if not self.watchers:
                self._watched.clear()
                for feed in self._feeds:
                    feed.stop()
                self._views.clear()
                self._changed.clear()
                self._ended.clear()
                self._lists_stale = False

    async def run(self) -> None:
        """Tick while anyone watches (runs for the controller's lifetime)."""
        while True:
            await self._watched.wait()
            self._wake.clear()
            try:
                await self._tick()
            except StoreError as fault:
                # The store is away: pages keep what they show and catch up after.
                log.debug("dashboard update skipped: %s", fault.message)
            except Exception:
                # A bug in a view must never take the controller down with it.
                log.exception("dashboard update failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TICK):
                    await self._wake.wait()

    # ------------------------------------------------------------------ ticks

    async def _tick(self) -> None:
        watchers = list(self.watchers)
        for feed in self._feeds:
            changed = feed.take()
            self._lists_stale |= bool(changed)
            for experiment_id in changed:
                self._ended.pop(experiment_id, None)
            # What no one looks at is not kept: it is read afresh when someone does.
            self._changed |= changed & {w.experiment_id for w in watchers}
        now = time.monotonic()
        if any(NODES in w.topics for w in watchers):
            await self._post_nodes(watchers)
        await self._post_lists(watchers, now)
        await self._post_experiments(watchers, now)
        self._post_output(watchers)
        for w in watchers:
            w.fresh = False

    async def _post_nodes(self, watchers: list[Watcher]) -> None:
        now = time.monotonic()
        nodes = []
        for node in sorted(self.registry.nodes.values(), key=lambda n: n.name):
            item = node.to_dict()
            last_seen = item.pop("last_seen")
            item["silent_for"] = round(now - last_seen) if last_seen else None
            nodes.append(item)
        running = await self._running()
        by_user: dict[int, str] = {}
        for w in watchers:
            if NODES not in w.topics:
                continue
            uid = w.caller.user_id
            if uid not in by_user:
                by_user[uid] = dumps({"nodes": _with_running(nodes, running, uid)})
            w.post(NODES, by_user[uid])

    async def _running(self) -> list[tuple[str, int | None, dict[str, Any]]]:
        """What runs on each node now: (node, owner id or None, what)."""
        out: list[tuple[str, int | None, dict[str, Any]]] = []
        for dep in self.experiments.deployments.values():
            live = self.experiments.live.get(dep.experiment_id)
            if dep.state in TERMINAL_DEPLOYMENT or live is None:
                continue
            what = {"experiment": live.name, "what": "deployment", "state": dep.state}
            out.append((dep.node, live.owner_id, what))
        commands = list(self.relay.live.values())
        await self._name_runs({c.experiment_id for c in commands} - {None})  # type: ignore[arg-type]
        for c in commands:
            owner = self.relay.run_owners.get(c.experiment_id) if c.experiment_id else None
            name = self._run_names.get(c.experiment_id or "")
            what = {"experiment": name, "what": "command", "cmd": c.cmd[:200]}
            out.append((c.node, owner, what))
        return out

    async def _name_runs(self, run_ids: set[str]) -> None:
        missing = run_ids - self._run_names.keys()
        if missing:
            async with self.db.read() as conn:
                for run_id in missing:
                    row = await exp_queries.get_experiment(conn, run_id)
                    self._run_names[run_id] = row["name"] if row else ""
        for run_id in self._run_names.keys() - run_ids:
            del self._run_names[run_id]

    async def _post_lists(self, watchers: list[Watcher], now: float) -> None:
        listing = [w for w in watchers if EXPERIMENTS in w.topics]
        due = self._lists_stale and now - self._lists_read_at >= STORED_TICK
        users = {w.caller.user_id for w in listing if w.fresh or due}
        lists: dict[int, str] = {}
        if users:
            async with self.db.read() as conn:
                for uid in users:
                    rows = await summaries.experiment_summaries(conn, uid)
                    await self._add_counts(conn, rows)
                    lists[uid] = dumps({"experiments": rows})
        if due:  # only once read: a store fault leaves the lists stale, to try again
            self._lists_stale = False
            self._lists_read_at = now
        for w in listing:
            if w.caller.user_id in lists:
                w.post(EXPERIMENTS, lists[w.caller.user_id])

    async def _add_counts(self, conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
        """Give each listed experiment its truthful state and counts; an ended one's
        are counted once and kept."""
        fresh = [r for r in rows if r["id"] not in self._ended]
        extras = await describe_records(conn, fresh, with_items=False)
        for row in rows:
            # What reproduces a run is on its own page; a list has no use for it.
            row.pop("reproduction", None)
            extra = self._ended.get(row["id"]) or extras[row["id"]]
            if row["status"] in TERMINAL_EXPERIMENT:
                self._ended[row["id"]] = extra
            row.update(extra)

    async def _post_experiments(self, watchers: list[Watcher], now: float) -> None:
        watched: defaultdict[str, list[Watcher]] = defaultdict(list)
        for w in watchers:
            if w.experiment_id is not None:
                watched[w.experiment_id].append(w)
        for experiment_id in self._views.keys() - watched.keys():
            del self._views[experiment_id]
        for experiment_id, its in watched.items():
            view = self._views.setdefault(experiment_id, _View())
            due = experiment_id in self._changed and now - view.read_at >= STORED_TICK
            if due or not view.read_at:
                await self._read(experiment_id, view, now)
                self._changed.discard(experiment_id)
            if not view.read_at:
                continue  # never read yet: nothing to show
            topic = GONE if view.gone else EXPERIMENT
            for w in its:
                w.post(topic, view.payload)

    async def _read(self, experiment_id: str, view: _View, now: float) -> None:
        """Read the experiment into ``view``; a store fault leaves the view as it was."""
        try:
            data = await self.experiments.describe(experiment_id, with_items=False)
        except HTTPException:
            # Deleted, or replaced by a run of the same name.
            view.gone, view.payload, view.read_at = True, "{}", now
            return
        data["flags"] = {
            name: {"text_value": text, "int_value": number}
            for name, (text, number) in (await self.flags.list(experiment_id)).items()
        }
        node_of = {d["executor_id"]: d["node"].get("name") for d in data["deployments"]}
        async with self.db.read() as conn:
            lines = await summaries.log_tail(conn, list(node_of), LOG_TAIL, view.last_log)
            if data["unit"] in ("task", "job"):
                data.update(await _record_items(conn, experiment_id, data))
        for line in lines:
            view.logs.append(
                {
                    "id": line["id"],
                    "node": node_of.get(line["deployment_id"]),
                    "ts": line["ts"],
                    "stream": line["stream"],
                    "line": line["line"],
                }
            )
            view.last_log = line["id"]
        view.payload = dumps({**data, "logs": list(view.logs)})
        view.read_at = now

    def _post_output(self, watchers: list[Watcher]) -> None:
        ids = {w.experiment_id for w in watchers if w.experiment_id is not None}
        if not ids:
            return
        running: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
        for c in self.relay.live.values():
            if c.experiment_id in ids:
                running[c.experiment_id].append(_running_command(c))
        payloads = {i: dumps({"commands": running.get(i, [])}) for i in ids}
        for w in watchers:
            if w.experiment_id is not None:
                w.post(OUTPUT, payloads[w.experiment_id])


async def _record_items(
    conn: AsyncConnection, experiment_id: str, data: dict[str, Any]
) -> dict[str, Any]:
    """A graph session's or network's tasks, objects and jobs, as the API gives them;
    a big one's running and failed items only (``items_partial``)."""
    total = data["counts"].get("total", 0) + data.get("objects_count", 0)
    partial = total > FULL_ITEMS
    if partial:
        items = await record_queries.list_items(
            conn, experiment_id, states=SHOWN_WHEN_PARTIAL, limit=PARTIAL_ITEMS
        )
    else:
        items = await record_queries.list_items(conn, experiment_id)
    out: dict[str, Any] = {
        key: [item_json(i) for i in items if i["kind"] == kind] for key, kind in ITEM_KEYS
    }
    out["items_partial"] = partial
    return out


def _running_command(c: LiveCommand) -> dict[str, Any]:
    return {
        "id": c.record_id,
        "node": c.node,
        "cmd": c.cmd,
        "pid": c.pid,
        "started_at": c.started_at,
        "stdout": _tail(c.stdout),
        "stderr": _tail(c.stderr),
        "truncated": c.truncated,
    }


def _tail(buffer: bytearray) -> str:
    return bytes(buffer[-OUTPUT_TAIL:]).decode("utf-8", errors="replace")


def _with_running(
    nodes: list[dict[str, Any]],
    running: Iterable[tuple[str, int | None, dict[str, Any]]],
    user_id: int,
) -> list[dict[str, Any]]:
    """Each node with what runs there: the caller's own work by name, others' as a count."""
    own: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
    others: defaultdict[str, int] = defaultdict(int)
    for node, owner, what in running:
        if owner == user_id:
            own[node].append(what)
        else:
            others[node] += 1
    return [
        {**n, "running": own.get(n["name"], []), "others": others.get(n["name"], 0)} for n in nodes
    ]
