"""The agent's pool of warm task workers (one per cpu; with user isolation, per user)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections import deque
from collections.abc import Callable, Mapping

import msgspec

from shoal.agent.executor_process import kill_group, spawn_child
from shoal.agent.isolation import IsolationError, UserIsolation
from shoal.agent.object_store import ObjectStore
from shoal.agent.task_worker import (
    AddFunctions,
    CancelSession,
    RunTasks,
    WorkerMessage,
    decode_result,
    encode_message,
)
from shoal.graph.execution import NodeResult, NodeTask
from shoal.protocol.executor_messages import PIPE_LIMIT
from shoal.protocol.framing import FrameReader, FrameTooLarge

log = logging.getLogger("shoal.agent.graph")

# Short tasks are bound by the hop to the worker; a few queued on each worker
# hide it. Long ones are fed one at a time so they spread over the workers.
MAX_DEPTH = 64


class WorkerHandle(asyncio.Protocol):
    """One worker process and its socket. Results are handled in ``data_received``,
    straight from the event loop's poll: no task switch between a worker's
    answer and the agent passing it on."""

    def __init__(self, owner: str, proc: asyncio.subprocess.Process, pool: TaskPool) -> None:
        self.owner = owner  # whose tasks it runs ("": everyone's, without isolation)
        self.retiring = False
        self.proc = proc
        self.pool = pool
        self.outstanding: dict[tuple[int, int], NodeTask] = {}
        self.functions: set[str] = set()  # digests of the functions it was sent
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._frames = FrameReader(PIPE_LIMIT)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            results = [decode_result(body) for body in self._frames.feed(data)]
        except (msgspec.DecodeError, msgspec.ValidationError, FrameTooLarge) as exc:
            # Only the worker's own (user) code could have sent this.
            log.warning("a task worker sent a malformed result; ending it: %s", exc)
            self.retire()
            return
        for result in results:
            if self.outstanding.pop((result.session, result.id), None):
                self.pool.on_result(result)
        self.pool.dispatch()
        self.pool.on_batch()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def send(self, message: WorkerMessage) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(encode_message(message))

    def retire(self) -> None:
        """Make way for another user's worker: end this idle one."""
        self.retiring = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    async def kill(self) -> None:
        await kill_group(self.proc)
        if self.transport is not None:
            self.transport.close()


class TaskPool:
    """Runs NodeTasks on worker processes; results go to ``on_result``, and
    ``on_batch`` follows each batch of results read together (to send them on).

    Without ``isolation``: ``size`` warm workers, started at once and replaced
    when one dies, shared by every user. With it: each worker belongs to one
    user's account and runs only that user's tasks; workers start when a user's
    tasks need one, at most ``size`` in all, and an idle worker of another user
    makes way when the bound is reached.
    """

    def __init__(
        self,
        size: int,
        store: ObjectStore,
        inline_limit: int,
        on_result: Callable[[NodeResult], None],
        node: str,
        on_batch: Callable[[], None] = lambda: None,
        isolation: UserIsolation | None = None,
        functions: Mapping[str, bytes] | None = None,
    ) -> None:
        self.on_batch = on_batch
        self.node = node
        self.size = max(1, size)
        self.store = store
        self.inline_limit = inline_limit
        self.on_result = on_result
        self.isolation = isolation
        # Pickled functions by digest: each worker is sent one before its first task of it.
        self.functions: Mapping[str, bytes] = functions if functions is not None else {}
        # Queued tasks by owner ("" for all of them without isolation).
        self.queues: dict[str, deque[NodeTask]] = {}
        self.workers: list[WorkerHandle] = []
        self._starting: dict[str, int] = {}  # workers being started, by owner
        self._tg: asyncio.TaskGroup | None = None
        self._dispatch_soon = False

    async def run(self) -> None:
        """Start the workers (without isolation) and keep them until cancelled."""
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            if self.isolation is None:
                for _ in range(self.size):
                    self._start_worker("")
            self.dispatch()  # tasks submitted before the pool ran
            await asyncio.Event().wait()

    def _key(self, task: NodeTask) -> str:
        return task.owner if self.isolation is not None else ""

    def _start_worker(self, owner: str) -> None:
        assert self._tg is not None, "the pool is not running"
        self._starting[owner] = self._starting.get(owner, 0) + 1
        self._tg.create_task(self._worker_life(owner))

    async def _worker_life(self, owner: str) -> None:
        replace = self.isolation is None
        while True:
            try:
                handle = await self._spawn(owner)
            except (IsolationError, OSError) as exc:
                self._starting[owner] -= 1
                self._fail_queued(owner, f"cannot start a task worker for user {owner!r}: {exc}")
                return
            self._starting[owner] -= 1
            self.workers.append(handle)
            self.dispatch()
            try:
                await handle.closed
            finally:
                self.workers.remove(handle)
                await handle.kill()
            lost = list(handle.outstanding.values())
            if lost:
                log.warning("a task worker died with %d task(s)", len(lost))
                for task in lost:
                    self.on_result(
                        NodeResult(
                            task.session,
                            task.id,
                            error=f"the worker process running the task died "
                            f"(exit code {handle.proc.returncode})",
                        )
                    )
            if not replace:
                self.dispatch()  # a user may be waiting for this worker's place
                return
            self._starting[owner] = self._starting.get(owner, 0) + 1

    async def _spawn(self, owner: str) -> WorkerHandle:
        args = [str(self.inline_limit), self.node]
        if self.isolation is None:
            work_dir = self.store.work_dir(None)
        else:
            account = await self.isolation.account(owner)
            work_dir = self.store.work_dir(account)
            # The worker starts as root and drops to the account itself (see
            # task_worker.drop_privileges), before it reads any task.
            args += [str(account.uid), str(account.gid)]
        proc, parent = await spawn_child("shoal.agent.task_worker", str(work_dir), *args)
        handle = WorkerHandle(owner, proc, self)
        await asyncio.get_running_loop().create_unix_connection(lambda: handle, sock=parent)
        return handle

    def _fail_queued(self, owner: str, error: str) -> None:
        queue = self.queues.pop(owner, deque())
        for task in queue:
            self.on_result(NodeResult(task.session, task.id, error=error))
        self.on_batch()

    def submit(self, task: NodeTask) -> None:
        """Queue ``task``; tasks submitted in one turn of the loop go out together."""
        self.queues.setdefault(self._key(task), deque()).append(task)
        if not self._dispatch_soon:
            self._dispatch_soon = True
            asyncio.get_running_loop().call_soon(self.dispatch)

    def dispatch(self) -> None:
        """Hand queued tasks to the least busy workers of their owner.

        A worker with a queue is refilled only once it is down to half of it, so
        each write carries several tasks (and the worker answers in batches too).
        """
        self._dispatch_soon = False
        for owner in [o for o, q in self.queues.items() if q]:
            mine = [w for w in self.workers if w.owner == owner and not w.retiring]
            queue = self.queues[owner]
            if self.isolation is not None:
                self._grow(owner, mine)
            if not mine:
                continue
            # While more of the owner's workers are starting, a busy one takes no
            # queue ahead: the tasks wait for the new workers instead (the first
            # batch after an agent starts uses every cpu).
            depth = 1 if self._starting.get(owner) else min(MAX_DEPTH, 1 + len(queue) // len(mine))
            batches: dict[int, list[NodeTask]] = {}
            takers = [w for w in mine if len(w.outstanding) <= depth // 2]
            while queue and takers:
                handle = min(takers, key=lambda w: len(w.outstanding))
                if len(handle.outstanding) >= depth:
                    break
                task = queue.popleft()
                handle.outstanding[(task.session, task.id)] = task
                batches.setdefault(id(handle), []).append(task)
            for handle in mine:
                batch = batches.get(id(handle))
                if batch:
                    self._send_functions(handle, batch)
                    handle.send(RunTasks(batch))
        for owner in [o for o, q in self.queues.items() if not q]:
            del self.queues[owner]

    def _send_functions(self, handle: WorkerHandle, batch: list[NodeTask]) -> None:
        """Send the worker the functions of ``batch`` it does not have yet. One
        missing here fails its tasks in the worker, with a message that says so."""
        new: dict[str, bytes] = {}
        for task in batch:
            function = task.function
            if function and function not in handle.functions:
                data = self.functions.get(function)
                if data is not None:
                    new[function] = data
                    handle.functions.add(function)
        if new:
            handle.send(AddFunctions(new))

    def _grow(self, owner: str, mine: list[WorkerHandle]) -> None:
        """Start another worker for ``owner`` if its tasks wait and there is room."""
        if self._tg is None:
            return  # run() dispatches again once the pool runs
        if self._starting.get(owner) or len(mine) >= self.size:
            return  # one is on its way, or the user has a worker per cpu
        if any(not w.outstanding for w in mine):
            return  # one of the user's workers is free
        total = sum(1 for w in self.workers if not w.retiring) + sum(self._starting.values())
        if total >= self.size:
            others = (w for w in self.workers if w.owner != owner and not w.retiring)
            idle = next((w for w in others if not w.outstanding), None)
            if idle is None:
                return  # every worker is busy: wait for one to finish
            idle.retire()
        self._start_worker(owner)

    def cancel(self, session: int) -> None:
        """Drop the session's queued tasks and stop its running ones."""
        for owner, queue in self.queues.items():
            self.queues[owner] = deque(t for t in queue if t.session != session)
        for handle in self.workers:
            mine = [k for k in handle.outstanding if k[0] == session]
            if mine:
                for key in mine:
                    del handle.outstanding[key]
                handle.send(CancelSession(session))
                # The worker reads its socket between tasks; the signal makes it
                # read now, in case the task it is running is one of these.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(handle.proc.pid, signal.SIGUSR1)
        self.dispatch()

    def forget_all(self) -> None:
        """The controller restarted: nothing queued or running is wanted any more."""
        sessions = {t.session for queue in self.queues.values() for t in queue}
        for handle in self.workers:
            sessions.update(k[0] for k in handle.outstanding)
        for session in sessions:
            self.cancel(session)
