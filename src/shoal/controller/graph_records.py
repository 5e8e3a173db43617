"""The records of graph sessions: written behind the scheduler, in batches.

The scheduler only adds a new or ended task or object to a set
(:class:`RecordMarks`); :class:`GraphRecorder` turns what changed into rows every
``interval`` seconds and upserts them, so a task's round trip never waits for
the store and a task that changes state several times within one interval is
written once. Tasks running at a write (on a node's queue) are written as
running then: a task that starts and ends between two writes costs nothing more.
A new task still waiting at its first write is held back to the next one (most
tasks of a big graph have ended by then, and cost one row, not two). Rows go to
the driver as tuples, a chunk at a time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from shoal.controller.graph_state import ASSIGNED, FINISHED, GObject, GSession, GTask
from shoal.store import experiments as exp_queries
from shoal.store import records as record_queries
from shoal.store.database import Database
from shoal.store.faults import retry_store

log = logging.getLogger("shoal.controller.graph")

INTERVAL = 1.0  # seconds between writes of what changed
CHUNK = 1000  # rows per transaction: the event loop gets a turn between them
MAX_DEBUG = 16 * 1024  # characters of a task's debug lines kept in its record
UNFINISHED = ("waiting", "ready", "running")


@dataclass
class RecordMarks:
    """What changed since the last write: filled by the scheduler, drained by the recorder."""

    tasks: set[GTask] = field(default_factory=set)
    objects: set[GObject] = field(default_factory=set)
    # record id -> (session, status, error, when): sessions that ended
    ended: dict[str, tuple[GSession, str, str | None, float]] = field(default_factory=dict)

    def end(self, session: GSession) -> None:
        """The session ended (closed, failed or cancelled): settle its record once."""
        if session.record_id is None or session.record_id in self.ended:
            return
        if session.cancelled is not None:
            status, error = "CANCELLED", session.cancelled
        elif session.error is not None:
            status, error = "FAILED", session.error
        else:
            unfinished = sum(1 for t in session.tasks.values() if not t.done)
            status = "CANCELLED" if unfinished else "FINISHED"
            error = (
                f"closed with {unfinished} of {len(session.tasks)} tasks unfinished"
                if unfinished
                else None
            )
        self.ended[session.record_id] = (session, status, error, time.time())

    def __bool__(self) -> bool:
        return bool(self.tasks or self.objects or self.ended)


def _plain(value: Any) -> Any:
    """A JSON-able copy of a user's value (bytes and the like become their repr)."""
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return json.loads(json.dumps(value, default=repr))


_encoder = msgspec.json.Encoder()


def _json(value: dict[str, Any]) -> str:
    # msgspec: json.dumps was a third of a row's cost. Values are JSON-able
    # already (a user's values went through _plain).
    return _encoder.encode(value).decode()


def task_row(task: GTask) -> tuple[Any, ...]:
    """The task's row of ``record_items``, in :data:`ITEM_COLUMNS` order."""
    info = task.info
    details: dict[str, Any] = {"cpus": task.cpus}
    details["inputs"] = [obj.id for obj, _ in task.inputs]
    details["outputs"] = [obj.id for obj in task.outputs]
    if "duration" in info:
        details["duration"] = info["duration"]
    if info.get("debug"):
        details["debug"] = str(info["debug"])[:MAX_DEBUG]
    if task.user:
        details["user"] = _plain(task.user)
    state = "running" if task.state == ASSIGNED else task.state
    task.recorded = state
    return (
        task.session.record_id,
        f"task:{task.id}",
        "task",
        task.id,
        task.name or task.task_type,
        task.task_type,
        task.node,
        state,
        task.started_at,
        task.finished_at,
        info.get("error"),
        _json(details),
    )


def object_row(obj: GObject) -> tuple[Any, ...]:
    """The object's row of ``record_items``, in :data:`ITEM_COLUMNS` order."""
    producer = obj.producer
    if obj.holders:
        placement = sorted(obj.holders)
    elif producer is None:
        placement = ["controller"]  # a constant: uploaded by the client
    elif obj.state == FINISHED and producer.node is not None:
        placement = [producer.node]  # freed since: it was made (and held) there
    else:
        placement = []
    info = {
        "size": obj.size,
        "producer": producer.id if producer is not None else None,
        "placement": placement,
        "keep": obj.keep,
        "data_type": obj.data_type,
        "content_type": obj.content_type,
    }
    return (
        obj.session.record_id,
        f"object:{obj.id}",
        "object",
        obj.id,
        obj.label or "",
        obj.content_type or obj.data_type,
        placement[0] if placement else None,
        obj.state,
        None,
        None,
        obj.info.get("error"),
        _json(info),
    )


_ROW_ORDER = (
    "experiment_id",
    "item",
    "kind",
    "seq",
    "name",
    "type",
    "node",
    "state",
    "started_at",
    "finished_at",
    "error",
    "info",
)
if _ROW_ORDER != record_queries.ITEM_COLUMNS:  # the rows above are built in this order
    raise RuntimeError(f"record_items columns changed: {record_queries.ITEM_COLUMNS}")


class GraphRecorder:
    """Writes the marks of a :class:`~shoal.controller.graph_service.GraphService` to
    the store for the controller's lifetime.

    ``on_change`` gets the ids of the records each write changed (once per write,
    not per row): the dashboard refreshes those.
    """

    def __init__(
        self,
        db: Database,
        marks: RecordMarks,
        on_change: Callable[[set[str]], Awaitable[None]],
        interval: float = INTERVAL,
        running: Callable[[], Iterable[GTask]] = tuple,
    ) -> None:
        self.db = db
        self.marks = marks
        self.running = running
        self.on_change = on_change
        self.interval = interval
        self._young: set[GTask] = set()  # new tasks held back once (see flush)

    async def run(self) -> None:
        """Write what changed every ``interval`` seconds, until cancelled."""
        while True:
            await asyncio.sleep(self.interval)  # a batching period, not a wait for an event
            await self.flush()

    async def flush(self) -> None:
        """Write what changed now, a chunk at a time (the rows of a million tasks
        are never all in memory at once)."""
        marks = self.marks
        tasks, marks.tasks = marks.tasks, set()
        objects, marks.objects = marks.objects, set()
        ended, marks.ended = marks.ended, {}
        # A new task still waiting is written at the next write, not this one: most
        # tasks of a big graph end before that, and are written once, ended.
        young, self._young = self._young, set()
        for task in tasks:
            if task.recorded or task.done or task in young or task.session.closed:
                continue
            if task.session.error is None and task.state != ASSIGNED:
                self._young.add(task)
        if self._young:
            tasks -= self._young
            marks.tasks |= self._young
        for task in self.running():
            if task.recorded != "running" and task.session.record_id is not None:
                tasks.add(task)
        if not tasks and not objects and not ended:
            return
        changed: set[str] = set(ended)
        items: list[GTask | GObject] = [*tasks, *objects]
        del tasks, objects
        try:
            for start in range(0, len(items), CHUNK):
                chunk = [
                    task_row(i) if isinstance(i, GTask) else object_row(i)
                    for i in items[start : start + CHUNK]
                ]
                changed.update(row[0] for row in chunk)
                await retry_store(lambda c=chunk: self._put(c), "storing graph records")
            if ended:
                await retry_store(lambda: self._end(ended), "storing graph records")
        except Exception:
            # A record must never take the scheduler down; the tasks themselves ran.
            log.exception("could not store the records of %d graph items", len(items))
        await self.on_change(changed)

    async def _put(self, rows: list[tuple[Any, ...]]) -> None:
        async with self.db.write() as conn:
            await record_queries.put_item_tuples(conn, rows)

    async def _end(self, ended: dict[str, tuple[GSession, str, str | None, float]]) -> None:
        async with self.db.write() as conn:
            for record_id, (_session, status, error, when) in ended.items():
                await record_queries.cancel_unfinished(conn, record_id, UNFINISHED, when)
                await exp_queries.update_experiment(
                    conn, record_id, status=status, error=error, finished_at=when
                )
