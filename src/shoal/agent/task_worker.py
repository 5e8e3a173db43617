"""A warm worker process that runs graph tasks one after another.

Started by the agent as ``python -m shoal.agent.task_worker FD WORKDIR INLINE NODE``
with a socketpair end on FD. Messages both ways are length-prefixed pickles
(parent and child are the same installation on the same machine):

- agent -> worker: ``("run", [NodeTask, ...])``, ``("cancel", session_id)``
- worker -> agent: ``("done", NodeResult)``

A reader thread takes messages off the socket while the main thread runs tasks,
so a cancel reaches a running task: built-ins see their cancel event, Python code
gets :class:`~shoal.graph.task_io.TaskCancelled` raised into it. When the agent
dies the socket closes and the worker exits.
"""

from __future__ import annotations

import os
import pickle
import queue
import signal
import socket
import struct
import sys
import threading
import time
from types import FrameType
from typing import Any

from shoal.graph.data_instance import remove_path
from shoal.graph.execution import NodeTask, run_task
from shoal.graph.task_io import TaskCancelled

_LEN = struct.Struct("!I")


def encode_message(message: Any) -> bytes:
    """One length-prefixed pickle."""
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LEN.pack(len(body)) + body


def write_message(sock: socket.socket, message: Any, lock: threading.Lock | None = None) -> None:
    """Send one length-prefixed pickle."""
    data = encode_message(message)
    if lock is None:
        sock.sendall(data)
    else:
        with lock:
            sock.sendall(data)


def split_messages(buffer: bytearray) -> list[Any]:
    """Pop every complete message off the front of ``buffer``."""
    out = []
    while len(buffer) >= _LEN.size:
        (size,) = _LEN.unpack_from(buffer)
        end = _LEN.size + size
        if len(buffer) < end:
            break
        out.append(pickle.loads(buffer[_LEN.size : end]))
        del buffer[:end]
    return out


class Worker:
    def __init__(self, sock: socket.socket, work_dir: str, inline_limit: int, node: str) -> None:
        self.node = node
        self.sock = sock
        self.work_dir = work_dir
        self.inline_limit = inline_limit
        self.tasks: queue.SimpleQueue[NodeTask | None] = queue.SimpleQueue()
        self.cancelled: set[int] = set()
        self.current: NodeTask | None = None
        self.cancel_event = threading.Event()
        self.in_python = False
        self._lock = threading.Lock()
        self._main = threading.main_thread().ident

    def read_loop(self) -> None:
        buffer = bytearray()
        while True:
            try:
                chunk = self.sock.recv(1 << 20)
            except OSError:
                chunk = b""
            if not chunk:
                self._agent_gone()
            buffer += chunk
            for kind, body in split_messages(buffer):
                if kind == "run":
                    for task in body:
                        self.tasks.put(task)
                elif kind == "cancel":
                    self._cancel(body)

    def _agent_gone(self) -> None:
        """Nothing would receive our results: stop the running task, then exit."""
        current = self.current
        if current is not None:
            # Execute kills its program's process group when cancelled; without
            # this the program would outlive us.
            self._cancel(current.session)
            deadline = time.monotonic() + 2.0
            while self.current is not None and time.monotonic() < deadline:
                time.sleep(0.01)
        os._exit(0)

    def _cancel(self, session: int) -> None:
        self.cancelled.add(session)
        current = self.current
        if current is not None and current.session == session:
            self.cancel_event.set()
            if current.task_type == "python" and self._main is not None:
                signal.pthread_kill(self._main, signal.SIGUSR1)

    def _interrupt(self, _signum: int, _frame: FrameType | None) -> None:
        # Raised into the Python task's own code; built-ins watch cancel_event.
        current = self.current
        if current is not None and current.session in self.cancelled and self.in_python:
            raise TaskCancelled("the session was stopped")

    def run(self) -> None:
        signal.signal(signal.SIGUSR1, self._interrupt)
        threading.Thread(target=self.read_loop, daemon=True, name="reader").start()
        while True:
            task = self.tasks.get()
            if task is None:
                return
            if task.session in self.cancelled:
                continue
            self.cancel_event.clear()
            self.current = task
            self.in_python = task.task_type == "python"
            try:
                result = run_task(
                    task,
                    work_dir=self.work_dir,
                    inline_limit=self.inline_limit,
                    cancel=self.cancel_event,
                    node=self.node,
                )
            except TaskCancelled:
                result = None  # raised between the task's end and here: nobody waits for it
            finally:
                self.in_python = False
                self.current = None
            self._clean_cwd()
            if result is not None and task.session not in self.cancelled:
                write_message(self.sock, ("done", result), self._lock)

    def _clean_cwd(self) -> None:
        # Each task starts in an empty working directory: what one task leaves
        # there (`open("myfile", "w")`) must not meet the next. Checking is one
        # scandir; a directory per task would cost more than a small task.
        with os.scandir(".") as entries:
            leftovers = [e.path for e in entries]
        for path in leftovers:
            remove_path(path)


def main() -> None:
    fd, work_dir, inline_limit, node = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
    sock = socket.socket(fileno=fd)
    cwd = os.path.join(work_dir, f"cwd-{os.getpid()}")
    os.makedirs(cwd, exist_ok=True)
    os.chdir(cwd)
    Worker(sock, work_dir, inline_limit, node).run()


if __name__ == "__main__":
    main()
