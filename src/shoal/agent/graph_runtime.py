"""Graph tasks on an agent: get their inputs here, run them on warm workers, report.

Created on the first graph message, so an agent that never runs a graph pays
nothing for it. Inputs arrive inline, are already in this node's object store,
or are fetched from the agent that holds them over a channel the controller
granted for that object and this node (direct when the holder can be reached,
else through the controller's relay: :mod:`shoal.channel` chooses). Mid-size
outputs stay in memory (:data:`~shoal.agent.object_store.MEMORY_LIMIT`). Results are
reported in batches. With user isolation, a session's folder is made its
user's own before anything of it runs or arrives here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from shoal.agent.isolation import IsolationError, UserIsolation
from shoal.agent.object_store import MEMORY_LIMIT, ObjectStore, TransferError, receive_object
from shoal.agent.task_pool import TaskPool
from shoal.channel import AsyncChannel, ChannelError
from shoal.graph.execution import NodeInput, NodeOutput, NodeResult, NodeTask
from shoal.protocol.channel_messages import ChannelGrant
from shoal.protocol.graph_messages import (
    CHUNK,
    INLINE_LIMIT,
    GraphCancel,
    GraphDone,
    GraphFree,
    GraphInput,
    GraphObjectResult,
    GraphPrefetch,
    GraphPrefetched,
    GraphResult,
    GraphRun,
    GraphTask,
)

OpenChannel = Callable[[ChannelGrant], Awaitable[AsyncChannel]]

log = logging.getLogger("shoal.agent.graph")

RECENT = 20_000  # finished tasks remembered, so a resent GraphRun is not run twice


class GraphRuntime:
    """This agent's part of task graphs: inputs, workers, results.

    ``open_channel`` opens a channel with a grant the controller sent (this node
    is its opener); peers and the controller read this node's objects through
    :func:`~shoal.agent.object_store.serve_object` on its channel server.
    """

    def __init__(
        self,
        name: str,
        root: Path,
        cpus: int,
        emit: Callable[[object], None],
        tg: asyncio.TaskGroup,
        open_channel: OpenChannel,
        isolate_users: bool = False,
    ) -> None:
        self.name = name
        self._open_channel = open_channel
        self.store = ObjectStore(root, isolated=isolate_users)
        self.store.clear()  # a new agent process holds nothing the controller knows of
        self._objects = str(self.store.objects)  # the folder store.path() builds on
        self.emit = emit
        self.tg = tg
        self.isolation = UserIsolation() if isolate_users else None
        # Pickled Python functions by digest, as the controller sent them (once
        # per connection); the pool passes each to a worker once.
        self.functions: dict[str, bytes] = {}
        self.pool = TaskPool(
            cpus,
            self.store,
            # Workers hand back mid-size outputs in memory, not as files: the
            # small ones go on to the controller, the others stay here.
            MEMORY_LIMIT,
            self._on_result,
            name,
            self._flush,
            isolation=self.isolation,
            functions=self.functions,
        )
        self.epoch = ""
        # With isolation: sessions whose folder is ready (made once per session).
        self._prepared: dict[int, asyncio.Future[None]] = {}
        self._active: set[tuple[int, int]] = set()
        self._recent: deque[tuple[int, int]] = deque(maxlen=RECENT)
        self._recent_set: set[tuple[int, int]] = set()
        self._cancelled: set[int] = set()
        self._results: list[GraphResult] = []
        self._flush_scheduled = False
        self._fetching: dict[tuple[int, int], asyncio.Future[None]] = {}
        tg.create_task(self.pool.run())
        tg.create_task(self.store.sweep())

    # --- from the controller -----------------------------------------------------------

    def welcome(self, epoch: str) -> None:
        if self.epoch and epoch != self.epoch:
            # A restarted controller knows none of our sessions: drop them all.
            log.info("the controller restarted: dropping all graph state")
            self.pool.forget_all()
            self.store.clear()
            self._active.clear()
            self._results.clear()
            self._prepared.clear()
            self.functions.clear()
        self.epoch = epoch

    def handle(self, message: object) -> None:
        if isinstance(message, GraphRun):
            self.functions.update(message.functions)
            self._run(message.tasks)
        elif isinstance(message, GraphFree):
            self.store.free([tuple(p) for p in message.objects])  # type: ignore[misc]
        elif isinstance(message, GraphCancel):
            self._cancel(message.session)
        elif isinstance(message, GraphPrefetch) and message.session not in self._cancelled:
            for graph_input in message.inputs:
                self.tg.create_task(self._prefetch(message.session, message.owner, graph_input))

    def _run(self, tasks: list[GraphTask]) -> None:
        for task in tasks:
            key = (task.session, task.id)
            if key in self._active or key in self._recent_set or task.session in self._cancelled:
                continue  # a resend of a task we have, or of a stopped session
            self._active.add(key)
            if task.function and task.function not in self.functions:
                # The controller sends a function with the first task of it on
                # each connection; this one came without: a controller's bug.
                self._on_result(
                    NodeResult(
                        task.session,
                        task.id,
                        error=f"the task's function {task.function[:16]}... never reached "
                        f"node {self.name!r}",
                    )
                )
                continue
            missing = [
                i for i in task.inputs if i.data is None and not self.store.has(task.session, i.id)
            ]
            if missing or not self._is_prepared(task.session):
                self.tg.create_task(self._gather_then_submit(task, missing))
            else:
                self.pool.submit(self._node_task(task))
        self.pool.dispatch()  # now, not a turn of the loop later: a chain feels each turn

    def _node_task(self, task: GraphTask) -> NodeTask:
        # Store paths as plain strings: Path arithmetic per object costs more than
        # a no-op task.
        folder = f"{self._objects}{os.sep}{task.session}{os.sep}"
        held = self.store.held
        inputs = []
        for i in task.inputs:
            data = i.data if i.data is not None else held(task.session, i.id)
            inputs.append(
                NodeInput(
                    i.id,
                    i.label,
                    i.data_type,
                    i.content_type,
                    data=data,
                    path=None if data is not None else f"{folder}{i.id}",
                    user=i.user,
                )
            )
        return NodeTask(
            session=task.session,
            id=task.id,
            task_type=task.task_type,
            config=task.config,
            inputs=inputs,
            outputs=[
                NodeOutput(
                    o.id,
                    o.label,
                    o.data_type,
                    o.content_type,
                    f"{folder}{o.id}",
                )
                for o in task.outputs
            ],
            name=task.name,
            cpus=task.cpus,
            user=task.user,
            owner=task.owner,
            function=task.function,
        )

    def _is_prepared(self, session: int) -> bool:
        """Whether the session's tasks may go straight to a worker (its folder is ready)."""
        if self.isolation is None:
            return True
        pending = self._prepared.get(session)
        return (
            pending is not None
            and pending.done()
            and not pending.cancelled()
            and pending.exception() is None
        )

    async def _prepare(self, session: int, owner: str) -> None:
        """Make the session's object folder its user's own (with isolation)."""
        if self.isolation is None:
            return
        pending = self._prepared.get(session)
        if pending is None:

            async def prepare() -> None:
                assert self.isolation is not None
                account = await self.isolation.account(owner)
                self.store.prepare_session(session, account)

            pending = self._prepared[session] = asyncio.ensure_future(prepare())
        await asyncio.shield(pending)

    async def _gather_then_submit(self, task: GraphTask, missing: list[GraphInput]) -> None:
        failure: BaseException | None = None
        try:
            await self._prepare(task.session, task.owner)
        except (IsolationError, OSError) as exc:
            self._on_result(NodeResult(task.session, task.id, error=str(exc)))
            return
        try:
            async with asyncio.TaskGroup() as tg:
                for graph_input in missing:
                    tg.create_task(self._ensure(task.session, graph_input))
        except* (TransferError, OSError) as group:
            failure = group.exceptions[0]
        if failure is not None:
            self._on_result(
                NodeResult(task.session, task.id, error=f"could not get an input: {failure}")
            )
        elif task.session not in self._cancelled and (task.session, task.id) in self._active:
            self.pool.submit(self._node_task(task))

    async def _prefetch(self, session: int, owner: str, graph_input: GraphInput) -> None:
        """Fetch an input ahead of the task that will read it here, and say so.

        A task that arrives while it is on its way shares this fetch (``_ensure``)."""
        error = ""
        try:
            await self._prepare(session, owner)
            if not self.store.has(session, graph_input.id):
                if not self.store.has_room(graph_input.size):
                    error = f"not enough room for {graph_input.size} bytes ahead of its task"
                else:
                    await self._ensure(session, graph_input)
        except (TransferError, IsolationError, OSError) as exc:
            error = str(exc) or type(exc).__name__
        if session in self._cancelled:
            # Its session ended while it came: it dropped what was here before.
            self.store.free([(session, graph_input.id)])
            return
        self.emit(GraphPrefetched(session, graph_input.id, error))

    async def _ensure(self, session: int, graph_input: GraphInput) -> None:
        """Have the object in the store; concurrent needs of one object share one fetch.

        A shared fetch that failed is tried once more with this need's own
        holders (a fetch ahead of the task had the holders of its time)."""
        key = (session, graph_input.id)
        pending = self._fetching.get(key)
        if pending is not None:
            with contextlib.suppress(TransferError, OSError):
                await asyncio.shield(pending)
                return
            if self.store.has(session, graph_input.id):
                return
            pending = self._fetching.get(key)
        if pending is None or pending.done():
            pending = asyncio.ensure_future(self._fetch(session, graph_input))
            self._fetching[key] = pending
            pending.add_done_callback(lambda done: self._fetched(key, done))
        await asyncio.shield(pending)

    def _fetched(self, key: tuple[int, int], done: asyncio.Future[None]) -> None:
        if self._fetching.get(key) is done:  # not a later fetch of the same object
            del self._fetching[key]

    async def _fetch(self, session: int, graph_input: GraphInput) -> None:
        async def receive(data_type: str, size: int, batches: AsyncIterator[list[bytes]]) -> None:
            await self.store.receive(session, graph_input.id, data_type, size, batches)

        errors = []
        for holder in graph_input.holders:
            if holder.node == self.name:
                continue
            try:
                channel = await self._open_channel(holder.grant)
            except ChannelError as exc:
                errors.append(f"node {holder.node}: {exc}")
                continue
            try:
                await receive_object(channel, receive)
                return
            except TransferError as exc:
                errors.append(f"node {holder.node}: {exc}")
        raise TransferError("; ".join(errors) or "no node holds it")

    def _cancel(self, session: int) -> None:
        self._cancelled.add(session)
        self.pool.cancel(session)
        self._active = {k for k in self._active if k[0] != session}
        self._results = [r for r in self._results if r.session != session]
        self._prepared.pop(session, None)
        self.store.drop_session(session)

    # --- results -----------------------------------------------------------------------

    def _on_result(self, result: NodeResult) -> None:
        key = (result.session, result.id)
        if key not in self._active:
            return
        self._active.discard(key)
        if len(self._recent) == self._recent.maxlen:
            self._recent_set.discard(self._recent[0])
        self._recent.append(key)
        self._recent_set.add(key)
        self._results.append(
            GraphResult(
                session=result.session,
                id=result.id,
                error=result.error,
                info=result.info,
                outputs=[
                    GraphObjectResult(oid, size, content_type, self._keep(result, oid, data))
                    for oid, size, content_type, data in result.outputs
                ],
            )
        )
        if not self._flush_scheduled:
            # Results that arrive together leave together, in one message (the
            # pool flushes after each read; this catches the other callers).
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _keep(self, result: NodeResult, oid: int, data: bytes | None) -> bytes | None:
        """What of an output goes to the controller: small data inline; a mid-size
        one stays here (in memory, or as a file once the budget is spent)."""
        if data is None or len(data) <= INLINE_LIMIT:
            return data
        try:
            self.store.put(result.session, oid, data)
        except OSError as exc:
            log.warning("cannot keep object (%d, %d): %s", result.session, oid, exc)
            return data  # the controller takes it inline rather than losing it
        return None

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._results:
            return
        results, self._results = self._results, []
        batch: list[GraphResult] = []
        size = 0
        for result in results:
            batch.append(result)
            size += sum(len(o.data or b"") for o in result.outputs)
            if size >= CHUNK * 4:
                self.emit(GraphDone(batch))
                batch, size = [], 0
        if batch:
            self.emit(GraphDone(batch))
