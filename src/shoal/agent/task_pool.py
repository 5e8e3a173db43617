"""The agent's pool of warm task workers (one per cpu, started on first use)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections import deque
from collections.abc import Callable

from shoal.agent.executor_process import kill_group, spawn_child
from shoal.agent.task_worker import encode_message, split_messages
from shoal.graph.execution import NodeResult, NodeTask

log = logging.getLogger("shoal.agent.graph")

# Short tasks are bound by the hop to the worker; a few queued on each worker
# hide it. Long ones are fed one at a time so they spread over the workers.
MAX_DEPTH = 16


class WorkerHandle(asyncio.Protocol):
    """One worker process and its socket. Results are handled in ``data_received``,
    straight from the event loop's poll: no task switch between a worker's
    answer and the agent passing it on."""

    def __init__(self, index: int, proc: asyncio.subprocess.Process, pool: TaskPool) -> None:
        self.index = index
        self.proc = proc
        self.pool = pool
        self.outstanding: dict[tuple[int, int], NodeTask] = {}
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        for kind, result in split_messages(self._buffer):
            if kind == "done" and self.outstanding.pop((result.session, result.id), None):
                self.pool.on_result(result)
        self.pool.dispatch()
        self.pool.on_batch()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def send(self, message: object) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(encode_message(message))

    async def kill(self) -> None:
        await kill_group(self.proc)
        if self.transport is not None:
            self.transport.close()


class TaskPool:
    """Runs NodeTasks on ``size`` worker processes; results go to ``on_result``, and
    ``on_batch`` follows each batch of results read together (to send them on)."""

    def __init__(
        self,
        size: int,
        work_dir: str,
        inline_limit: int,
        on_result: Callable[[NodeResult], None],
        node: str,
        on_batch: Callable[[], None] = lambda: None,
    ) -> None:
        self.on_batch = on_batch
        self.node = node
        self.size = max(1, size)
        self.work_dir = work_dir
        self.inline_limit = inline_limit
        self.on_result = on_result
        self.queue: deque[NodeTask] = deque()
        self.workers: list[WorkerHandle] = []

    async def run(self) -> None:
        """Start the workers and keep them alive until cancelled."""
        async with asyncio.TaskGroup() as tg:
            for index in range(self.size):
                tg.create_task(self._keep_worker(index))
            await asyncio.Event().wait()

    async def _keep_worker(self, index: int) -> None:
        while True:
            handle = await self._spawn(index)
            self.workers.append(handle)
            self.dispatch()
            try:
                await handle.closed
            finally:
                self.workers.remove(handle)
                await handle.kill()
            lost = list(handle.outstanding.values())
            if lost:
                log.warning("task worker %d died with %d task(s)", index, len(lost))
                for task in lost:
                    self.on_result(
                        NodeResult(
                            task.session,
                            task.id,
                            error=f"the worker process running the task died "
                            f"(exit code {handle.proc.returncode})",
                        )
                    )

    async def _spawn(self, index: int) -> WorkerHandle:
        proc, parent = await spawn_child(
            "shoal.agent.task_worker", self.work_dir, str(self.inline_limit), self.node
        )
        handle = WorkerHandle(index, proc, self)
        await asyncio.get_running_loop().create_unix_connection(lambda: handle, sock=parent)
        return handle

    def submit(self, task: NodeTask) -> None:
        self.queue.append(task)
        self.dispatch()

    def dispatch(self) -> None:
        """Hand queued tasks to the least busy workers."""
        if not self.queue or not self.workers:
            return
        depth = min(MAX_DEPTH, 1 + len(self.queue) // len(self.workers))
        batches: dict[int, list[NodeTask]] = {}
        while self.queue:
            handle = min(self.workers, key=lambda w: len(w.outstanding))
            if len(handle.outstanding) >= depth:
                break
            task = self.queue.popleft()
            handle.outstanding[(task.session, task.id)] = task
            batches.setdefault(handle.index, []).append(task)
        for handle in self.workers:
            batch = batches.get(handle.index)
            if batch:
                handle.send(("run", batch))

    def cancel(self, session: int) -> None:
        """Drop the session's queued tasks and stop its running ones."""
        self.queue = deque(t for t in self.queue if t.session != session)
        for handle in self.workers:
            mine = [k for k in handle.outstanding if k[0] == session]
            if mine:
                for key in mine:
                    del handle.outstanding[key]
                handle.send(("cancel", session))
                # The worker reads its socket between tasks; the signal makes it
                # read now, in case the task it is running is one of these.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(handle.proc.pid, signal.SIGUSR1)
        self.dispatch()

    def forget_all(self) -> None:
        """The controller restarted: nothing queued or running is wanted any more."""
        sessions = {t.session for t in self.queue}
        for handle in self.workers:
            sessions.update(k[0] for k in handle.outstanding)
        for session in sessions:
            self.cancel(session)
