"""What the controller holds of task graphs: sessions, tasks, objects, waiters.

All of it lives in memory (the hot path); the service in
:mod:`shoal.controller.graph_service` changes it from one event loop, so no locks.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

# Task states, in order of their lifecycle.
WAITING, READY, ASSIGNED, FINISHED, FAILED = "waiting", "ready", "assigned", "finished", "failed"
TASK_STATES = (WAITING, READY, ASSIGNED, FINISHED, FAILED)
# Object states.
PENDING = "pending"
# Shared by the many tasks and objects that have none (a million tasks hold a
# million empty dicts otherwise). Never changed in place: a new one replaces it.
NO_INFO: dict[str, Any] = {}
NO_USER: dict[str, Any] = {}


@dataclass(eq=False, slots=True)
class GObject:
    session: GSession
    id: int
    label: str | None
    content_type: str | None
    data_type: str
    user: dict[str, Any]
    keep: bool = False
    state: str = PENDING
    producer: GTask | None = None
    consumers: list[GTask] = field(default_factory=list)
    unfinished_consumers: int = 0
    data: bytes | None = None  # inline (small objects, constants)
    holders: set[str] = field(default_factory=set)  # nodes that hold the data
    size: int = 0
    info: dict[str, Any] = field(default_factory=lambda: NO_INFO)
    freed: bool = False
    waiters: list[GraphWaiter] | None = None  # made by the first wait

    @property
    def done(self) -> bool:
        return self.state != PENDING

    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"id": [self.session.id, self.id], "data_type": self.data_type}
        if self.label is not None:
            spec["label"] = self.label
        if self.content_type is not None:
            spec["content_type"] = self.content_type
        if self.user:
            spec["user"] = self.user
        return spec

    def needed(self) -> bool:
        """Whether anyone still needs the data: a keep, or a consumer still to run."""
        return self.keep or self.unfinished_consumers > 0


@dataclass(eq=False, slots=True)
class GTask:
    """A task of a session's graph. Kept small (a graph may hold a million):
    slots, shared empty values, and its config dropped once it has run."""

    session: GSession
    id: int
    task_type: str
    config: bytes
    inputs: tuple[tuple[GObject, str | None], ...]
    outputs: tuple[GObject, ...]
    cpus: int
    name: str
    user: dict[str, Any]
    state: str = WAITING
    unfinished_inputs: int = 0
    node: str | None = None
    ready_at: float = 0.0  # monotonic time it became ready (for the placement latency)
    assigned_at: float = 0.0
    info: dict[str, Any] = field(default_factory=lambda: NO_INFO)
    waiters: list[GraphWaiter] | None = None  # made by the first wait
    # Wall-clock times for the record (assigned_at is monotonic, for scheduling).
    started_at: float | None = None
    finished_at: float | None = None
    recorded: str = ""  # the state its record was last written with
    function: str = ""  # a Python task's function: its digest in session.functions

    @property
    def done(self) -> bool:
        return self.state in (FINISHED, FAILED)

    def describe(self) -> str:
        return f"task {self.name or self.task_type!r} ({self.session.id}, {self.id})"

    def full_info(self, governor: str | None = None) -> dict[str, Any]:
        """What the task's node reported, with where it ran (Rain's ``governor``
        was the node's address, host:port; the node's name is beside it)."""
        info = dict(self.info)
        if self.node is not None and self.done:
            info.setdefault("governor", governor or self.node)
            info.setdefault("node", self.node)
        return info

    def move(self, state: str) -> None:
        """Change the task's state, keeping its session's count of tasks by state."""
        counts = self.session.task_counts
        counts[self.state] -= 1
        counts[state] += 1
        self.state = state


@dataclass(eq=False)
class GSession:
    id: int
    owner: int
    name: str
    login: str = ""  # the owner's login, which names the owner's OS user on nodes
    tasks: dict[int, GTask] = field(default_factory=dict)
    objects: dict[int, GObject] = field(default_factory=dict)
    error: str | None = None
    error_task: int | None = None
    error_debug: str = ""
    closed: bool = False
    # Chunks of big constants, until the Submit that names them.
    uploads: dict[int, bytearray] = field(default_factory=dict)
    waiters: set[GraphWaiter] = field(default_factory=set)
    nodes: set[str] = field(default_factory=set)  # nodes that ran or hold something of it
    # Its tasks by state, kept by GTask.move: /metrics reads them without walking
    # a graph that may hold a million tasks.
    task_counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TASK_STATES, 0))
    record_id: str | None = None  # its experiment record in the store, if it has one
    cancelled: str | None = None  # why its user cancelled it (it then fails with that)
    # Pickled Python functions by digest: sent once by the client, kept once
    # here, referred to by the tasks.
    functions: dict[str, bytes] = field(default_factory=dict)


@dataclass(eq=False)
class GraphWaiter:
    """A client waiting for some (``some``) or all of ``items`` to finish."""

    items: list[GTask | GObject]
    some: bool
    remaining: int
    future: asyncio.Future[None]

    def item_done(self) -> None:
        self.remaining -= 1
        if (self.remaining <= 0 or self.some) and not self.future.done():
            self.future.set_result(None)


@dataclass(eq=False, slots=True)
class Plan:
    """Where a waiting task's inputs go ahead of it (see graph_prefetch)."""

    node: str | None = None
    # Bytes of the task's finished inputs on each node (held, or on their way).
    local: dict[str, int] = field(default_factory=dict)


@dataclass(eq=False)
class GNode:
    """A node as the graph scheduler sees it."""

    name: str
    capacity: int
    data_address: str = ""
    used: int = 0  # cpus of the tasks assigned and not finished
    assigned: dict[tuple[int, int], GTask] = field(default_factory=dict)
    # Digests of the functions sent on the node's current connection (it keeps
    # them); emptied when it connects again, so it is sent them again.
    functions: set[str] = field(default_factory=set)
    # Inputs it was asked to fetch ahead of their task and has not answered
    # for yet: (session, object) -> size (see graph_prefetch).
    prefetching: dict[tuple[int, int], int] = field(default_factory=dict)
    prefetching_bytes: int = 0

    def window(self, now: float, mean_duration: float) -> int:
        """How many cpus' worth of tasks may be assigned at once, for tasks that
        take ``mean_duration`` seconds lately.

        Short tasks are bound by round trips, not cpus: keep a queue on the node
        so it never waits for the controller between them. But not behind a task
        that has run long (durations are not known in advance): what would queue
        there may be free to run elsewhere.
        """
        oldest = next(iter(self.assigned.values()), None)
        if oldest is not None and now - oldest.assigned_at > 0.05:
            return self.capacity
        if mean_duration < 0.0005:
            # No-op-sized tasks: the per-message cost dominates, so the agent and
            # its workers get them (and answer) in batches of tens.
            return self.capacity * 128
        if mean_duration < 0.005:
            return self.capacity * 32
        if mean_duration < 0.05:
            return self.capacity * 4
        return self.capacity
