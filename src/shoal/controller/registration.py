"""Agents that connect are admitted and registered in batches.

A fleet that boots together connects all at once; one read and one
transaction per agent made a thousand nodes wait for a thousand round trips to
the store. Here each connecting agent queues what it needs and one task takes
everything queued and does it together:

* admission: the credentials of every agent waiting are looked up in one read;
* registration: new nodes' credentials and every node's row are written in one
  transaction, then what every reconnecting agent reports about its
  deployments is reconciled in one more (``ExperimentService.apply``).

An agent is told it is registered (its ``Welcome``) only once both
transactions have committed: the answer it waits for is set after the commit.
If the store does not take a batch within ``REGISTER_PATIENCE``, every agent
of the batch is answered with the ``StoreError`` and sent away to come back
later, with nothing of it stored (a credential committed before the failure is
freed again, or the agent could not enroll when it comes back).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from shoal.controller.batch import WriteBatch
from shoal.controller.enrollment import Admission, EnrollmentRefused, NodeEnrollment
from shoal.controller.experiments import ExperimentService, LiveDeployment
from shoal.protocol import Hello
from shoal.store import nodes as node_queries
from shoal.store.database import Database
from shoal.store.faults import StoreError, retry_store

log = logging.getLogger("shoal.controller.agents")

# How long a connecting agent waits for the store to take its registration
# before it is sent away to try again later (it reconnects by itself).
REGISTER_PATIENCE = 20.0
# Agents per batch at most: a bigger one holds the store (on SQLite, every
# other writer too) for longer than the agents gain.
MAX_BATCH = 500

In = TypeVar("In")
Out = TypeVar("Out")


class Batches(Generic[In, Out]):
    """Callers' items handled together.

    ``submit`` queues one item and waits for its answer; ``run`` takes all that
    wait (at most ``limit``) and hands them to ``handle`` at once, which answers
    each one (a result or an exception per item). An item ``handle`` left
    unanswered gets the exception it raised (or a RuntimeError).
    """

    def __init__(
        self,
        handle: Callable[[list[tuple[In, asyncio.Future[Out]]]], Awaitable[None]],
        limit: int = MAX_BATCH,
    ) -> None:
        self._handle = handle
        self._limit = limit
        self._queue: list[tuple[In, asyncio.Future[Out]]] = []
        self._ready = asyncio.Event()

    async def submit(self, item: In) -> Out:
        future: asyncio.Future[Out] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        self._ready.set()
        return await future

    async def run(self) -> None:
        """Handle batches until cancelled (the controller's lifespan owns it)."""
        while True:
            await self._ready.wait()
            batch, self._queue = self._queue[: self._limit], self._queue[self._limit :]
            if not self._queue:
                self._ready.clear()
            try:
                await self._handle(batch)
            except Exception as exc:
                if not isinstance(exc, StoreError):  # a fault is logged where it is answered
                    log.exception("handling a batch of %d connecting agents failed", len(batch))
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            finally:
                for _, future in batch:
                    if not future.done():  # a bug in ``handle``: its callers must not hang
                        future.set_exception(RuntimeError("the batch left this item unanswered"))


@dataclass
class Registered:
    """What a registered agent is told in its ``Welcome``, and what to send it again."""

    credential: str | None  # a new node's own credential (None: it has one)
    forget: list[str]  # deployments it may drop
    resend: list[LiveDeployment]  # deployments whose Prepare it must get again


class Registrar:
    """Admits and registers connecting agents in batches (see the module's docstring)."""

    def __init__(
        self, db: Database, enrollment: NodeEnrollment, experiments: ExperimentService
    ) -> None:
        self.db = db
        self.enrollment = enrollment
        self.experiments = experiments
        self._lookups: Batches[str, tuple[str | None, str | None]] = Batches(self._lookup)
        self._joins: Batches[tuple[Admission, Hello], Registered] = Batches(self._register)

    async def run(self) -> None:
        """Serve admissions and registrations until cancelled."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._lookups.run())
            tg.create_task(self._joins.run())

    async def admit(self, secret: str) -> Admission | None:
        """Who ``secret`` makes a connecting agent (None: nobody)."""
        owner, stored = await self._lookups.submit(secret)
        return await self.enrollment.admission(secret, owner, stored)

    async def register(self, admission: Admission, hello: Hello) -> Registered:
        """Store the node (enrolling it if it came with the join token) and reconcile
        its reports; returns once that is committed. Raises EnrollmentRefused, or
        StoreError if the store did not take it within ``REGISTER_PATIENCE``."""
        return await self._joins.submit((admission, hello))

    async def _lookup(
        self, batch: list[tuple[str, asyncio.Future[tuple[str | None, str | None]]]]
    ) -> None:
        owners, stored = await self.enrollment.lookup([secret for secret, _ in batch])
        for (_, future), owner in zip(batch, owners, strict=True):
            if not future.done():
                future.set_result((owner, stored))

    async def _register(
        self, batch: list[tuple[tuple[Admission, Hello], asyncio.Future[Registered]]]
    ) -> None:
        joining: list[tuple[Hello, str | None, asyncio.Future[Registered]]] = []
        new: dict[str, str] = {}  # name -> credential of the nodes that enroll now
        for (admission, hello), future in batch:
            try:
                credential = self.enrollment.new_credential(admission, hello.name)
                if credential is not None and hello.name in new:
                    raise self.enrollment.taken(hello.name)  # two at once: the first wins
            except EnrollmentRefused as exc:
                _fail(future, exc)
                continue
            if credential is not None:
                new[hello.name] = credential
            joining.append((hello, credential, future))

        async def store_nodes() -> set[str]:
            async with self.db.write() as conn:
                taken = await self.enrollment.bind(conn, new)
                rows = {
                    hello.name: node_queries.node_row(
                        hello.name, hello.architecture, hello.cpus, dict(hello.properties)
                    )
                    for hello, credential, _ in joining
                    if credential is None or hello.name not in taken
                }
                await node_queries.put_nodes(conn, list(rows.values()))
            return taken

        try:
            taken = await retry_store(store_nodes, "enrolling nodes", REGISTER_PATIENCE)
        except StoreError as exc:
            for _, _, future in joining:
                _fail(future, exc)
            return
        stored = []
        for hello, credential, future in joining:
            if credential is not None and hello.name in taken:
                _fail(future, self.enrollment.taken(hello.name))
            else:
                stored.append((hello, credential, future))

        def reconcile(change_batch: WriteBatch) -> list[tuple[list[str], list[LiveDeployment]]]:
            return [
                self.experiments.on_agent_hello(hello.name, hello.deployments, change_batch)
                for hello, _, _ in stored
            ]

        async def store_reconciled() -> list[tuple[list[str], list[LiveDeployment]]]:
            return await retry_store(
                lambda: self.experiments.apply(reconcile),
                "storing what reconnecting agents report",
                REGISTER_PATIENCE,
            )

        try:
            try:
                outcomes = await store_reconciled()
            except StoreError:
                raise
            except Exception:
                # Reports about deployments the store lost can never be stored:
                # without those, the agents' other reports can.
                reported = {r.id for hello, _, _ in stored for r in hello.deployments}
                vanished = await retry_store(
                    lambda: self.experiments.forget_vanished(reported),
                    "looking up reported deployments",
                    REGISTER_PATIENCE,
                )
                if not vanished:
                    raise
                outcomes = await store_reconciled()
        except StoreError as exc:
            await self._unbind([hello.name for hello, credential, _ in stored if credential])
            for _, _, future in stored:
                _fail(future, exc)
            return
        gone = []
        for (hello, credential, future), (forget, resend) in zip(stored, outcomes, strict=True):
            if future.done():  # its caller went away meanwhile
                if credential is not None:
                    gone.append(hello.name)
                continue
            future.set_result(Registered(credential, forget, resend))
        await self._unbind(gone)

    async def _unbind(self, names: list[str]) -> None:
        """Free names whose agents never got their new credential, or they could
        not enroll again with the join token."""
        if names:
            with contextlib.suppress(StoreError):
                async with self.db.write() as conn:
                    await node_queries.forget_credentials(conn, names)


def _fail(future: asyncio.Future[Registered], exc: BaseException) -> None:
    if not future.done():  # a caller that went away is answered no more
        future.set_exception(exc)
