"""A warm worker process that runs graph tasks one after another.

Started by the agent as ``python -m shoal.agent.task_worker FD WORKDIR INLINE NODE
[UID GID]`` with a socketpair end on FD. Given UID and GID (``--isolate-users``),
it starts as root and becomes that unprivileged user before it reads any task.
Messages are framed as every shoal stream is (:mod:`shoal.protocol.framing`):

- agent -> worker: msgpack :data:`WorkerMessage` s: :class:`RunTasks`,
  :class:`CancelSession`, and :class:`AddFunctions` (pickled functions by
  digest) before the first task that names one of them
- worker -> agent: msgpack :class:`NodeResult` s. Never pickles: the worker runs
  user code, and unpickling what it sends would run that code in the agent.
  Results of short tasks that run back to back are written together.

A cancel reaches a running task (the agent follows it with SIGUSR1): built-ins
see their cancel event, Python code gets
:class:`~shoal.graph.task_io.TaskCancelled` raised into it. When the agent dies
the worker stops its task and exits.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import socket
import stat
import sys
import threading
import time
from collections import deque
from types import FrameType

import msgspec

from shoal.agent.memory_reuse import IDLE_AFTER, MemoryReuse
from shoal.gc_settings import tune_for_service
from shoal.graph.data_instance import remove_path
from shoal.graph.execution import NodeResult, NodeTask, add_functions, run_task
from shoal.graph.task_io import TaskCancelled
from shoal.protocol.executor_messages import PIPE_LIMIT
from shoal.protocol.framing import FrameReader, ReceiveBuffer, frame

PR_SET_PDEATHSIG = 1


class RunTasks(msgspec.Struct, tag="run"):
    """Tasks for the worker's queue, run in this order."""

    tasks: list[NodeTask]


class AddFunctions(msgspec.Struct, tag="functions"):
    """Pickled Python functions by digest, for the tasks that name them."""

    functions: dict[str, bytes]


class CancelSession(msgspec.Struct, tag="cancel"):
    """Drop the session's queued tasks and stop its running one."""

    session: int


WorkerMessage = RunTasks | AddFunctions | CancelSession

_message_encoder = msgspec.msgpack.Encoder()
_message_decoder = msgspec.msgpack.Decoder(WorkerMessage)


def encode_message(message: WorkerMessage) -> bytes:
    """One framed message, for the worker."""
    return frame(_message_encoder.encode(message))


_result_encoder = msgspec.msgpack.Encoder()
_result_decoder = msgspec.msgpack.Decoder(NodeResult)


def encode_result(result: NodeResult) -> bytes:
    """One framed result, for the agent."""
    return frame(_result_encoder.encode(result))


def decode_result(body: bytes) -> NodeResult:
    """A result from its frame's body; raises msgspec errors on anything that is not one."""
    return _result_decoder.decode(body)


# Results of short tasks leave together: one write per batch, not per task. A
# batch goes when the worker runs out of tasks, when it holds this many, or
# when the first result in it has waited FLUSH_AFTER seconds (a timer signal:
# the task running then may be long, and its neighbours' results must not wait
# for it).
MAX_UNSENT = 32
FLUSH_AFTER = 0.002
# Nanoseconds: a folder's mtime comes from a clock that ticks every few ms, so a
# change within the same tick as the last one may leave it as it was.
CLOCK_SLACK = 50_000_000


class Worker:
    """The main thread reads the socket itself between tasks: no thread hand-off
    on the path of a small task. During a task, the agent's SIGUSR1 says "read
    the socket now" (a cancel may be waiting), and SIGTERM, sent by the kernel
    when the agent dies (PDEATHSIG), stops the task and ends the worker.

    The socket stays blocking; a read that must not wait passes MSG_DONTWAIT, so
    a small task costs no mode switches. Between tasks the socket is read only
    when the local queue is empty, after a batch of results went out (the agent
    answers those with more tasks), or when a SIGUSR1 came.
    """

    def __init__(self, sock: socket.socket, work_dir: str, inline_limit: int, node: str) -> None:
        self.node = node
        self.sock = sock
        self.work_dir = work_dir
        self.inline_limit = inline_limit
        self.tasks: deque[NodeTask] = deque()
        self.cancelled: set[int] = set()
        self.current: NodeTask | None = None
        self.cancel_event = threading.Event()
        self.in_python = False
        self.exiting = False
        self._frames = FrameReader(PIPE_LIMIT)
        self._received = ReceiveBuffer()
        self._receiving = False
        self._poked = False  # a SIGUSR1 came: read before the next task
        self._unsent: list[bytes] = []
        self._flushing = False
        self._timer = False  # the flush timer is armed
        self._cwd_mtime = -1  # of the working folder when it was last seen empty
        self.memory = MemoryReuse()

    def _receive(self, block: bool) -> None:
        """Take what the agent sent off the socket; EOF means the agent is gone.
        ``block``: wait until at least one whole message is here."""
        self._receiving = True
        self._poked = False
        try:
            flags = 0 if block else socket.MSG_DONTWAIT
            while True:
                try:
                    chunk = self._received.recv(self.sock, flags)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError:
                    chunk = b""
                if not chunk:
                    self.exiting = True
                    return
                got = False
                for body in self._frames.feed(chunk):
                    got = True
                    message = _message_decoder.decode(body)
                    if isinstance(message, RunTasks):
                        self.tasks.extend(message.tasks)
                    elif isinstance(message, AddFunctions):
                        add_functions(message.functions)
                    else:
                        self._cancel(message.session)
                if not block or (got and self._frames.at_boundary()):
                    return
                # Part of a message, or nothing whole yet: wait for the rest.
        finally:
            self._receiving = False

    def _cancel(self, session: int) -> None:
        self.cancelled.add(session)
        current = self.current
        if current is not None and current.session == session:
            self.cancel_event.set()

    def _on_usr1(self, _signum: int, _frame: FrameType | None) -> None:
        self._poked = True
        if self._receiving or self.current is None:
            return  # the main loop is reading already, or will before the next task
        self._receive(block=False)
        self._interrupt_if_cancelled()

    def _on_alarm(self, _signum: int, _frame: FrameType | None) -> None:
        self._timer = False
        self._flush()

    def _flush(self) -> None:
        """Send the results held back, in one write."""
        if self._flushing or not self._unsent:
            return
        self._flushing = True
        try:
            data = b"".join(self._unsent)
            self._unsent.clear()
            if self._timer:
                self._timer = False
                signal.setitimer(signal.ITIMER_REAL, 0)
            with contextlib.suppress(OSError):  # the agent is gone; the next read sees EOF
                self.sock.sendall(data)
        finally:
            self._flushing = False

    def _on_term(self, _signum: int, _frame: FrameType | None) -> None:
        # The agent is gone: nothing would receive our results. Execute kills
        # its program's process group when cancelled; without this the program
        # would outlive us.
        self.exiting = True
        if self.current is None:
            os._exit(0)
        self.cancelled.add(self.current.session)
        self.cancel_event.set()
        self._interrupt_if_cancelled()

    def _interrupt_if_cancelled(self) -> None:
        # Raised into the Python task's own code; built-ins watch cancel_event.
        current = self.current
        if current is not None and current.session in self.cancelled and self.in_python:
            raise TaskCancelled("the session was stopped")

    def run(self) -> None:
        signal.signal(signal.SIGUSR1, self._on_usr1)
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGALRM, self._on_alarm)
        while not self.exiting:
            if not self.tasks:
                self._flush()
                if self.memory.dirty and not self._readable_within(IDLE_AFTER):
                    self.memory.give_back()
                self._receive(block=True)
                continue
            if self._poked:
                self._receive(block=False)  # a cancel sent since may be for this task
            task = self.tasks.popleft()
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
            self.memory.dirty = True
            self._clean_cwd()
            if result is not None and task.session not in self.cancelled:
                self._hold(encode_result(result))

    def _readable_within(self, seconds: float) -> bool:
        """Whether the agent sends something within ``seconds`` (or already has)."""
        if not self._frames.at_boundary():
            return True  # part of a message is here: the rest is on its way
        try:
            readable, _, _ = select.select([self.sock], [], [], seconds)
        except (OSError, ValueError):
            return True  # the next read says what happened
        return bool(readable)

    def _hold(self, encoded: bytes) -> None:
        self._unsent.append(encoded)
        if not self.tasks:
            return  # the main loop sends them before it waits for more
        if len(self._unsent) >= MAX_UNSENT:
            self._flush()
            self._receive(block=False)  # the agent's answer to these: more tasks
        elif not self._timer:
            if signal.getsignal(signal.SIGALRM) != self._on_alarm:
                # A task set its own (signal.alarm): ours again, for the flush.
                signal.signal(signal.SIGALRM, self._on_alarm)
            self._timer = True
            signal.setitimer(signal.ITIMER_REAL, FLUSH_AFTER)

    def _clean_cwd(self) -> None:
        # Each task starts in an empty working directory: what one task leaves
        # there (`open("myfile", "w")`) must not meet the next. A stat says
        # whether anything changed since the last look; the folder is listed
        # only then, or while its last change is too recent for the file
        # system's coarse clock to show another.
        mtime = os.stat(".").st_mtime_ns
        if mtime == self._cwd_mtime and time.time_ns() - mtime > CLOCK_SLACK:
            return
        with os.scandir(".") as entries:
            leftovers = [e.path for e in entries]
        for path in leftovers:
            remove_path(path)
        self._cwd_mtime = os.stat(".").st_mtime_ns


def _hidden_by_parent(path: str) -> bool:
    """Whether a folder anyone may read sits below one others cannot pass."""
    try:
        folder = os.path.abspath(path)
        if os.stat(folder).st_mode & (stat.S_IROTH | stat.S_IXOTH) != stat.S_IROTH | stat.S_IXOTH:
            return False  # private itself: it stays closed to the user
        while (parent := os.path.dirname(folder)) != folder:
            folder = parent
            if not os.stat(folder).st_mode & stat.S_IXOTH:
                return True
    except OSError:
        pass
    return False


def drop_privileges(uid: int, gid: int, work_dir: str) -> None:
    """Become ``uid``/``gid`` for good, with a private umask and home.

    The interpreter may live where the new user cannot reach (pyenv under a
    0700 /root, say); its import folders are opened first and reached through
    those descriptors afterwards (they are world-readable themselves; only a
    parent folder was closed), so imports after the switch still work.
    """
    for index, entry in enumerate(sys.path):
        if entry and os.path.isdir(entry) and _hidden_by_parent(entry):
            sys.path[index] = f"/proc/self/fd/{os.open(entry, os.O_RDONLY | os.O_DIRECTORY)}"
    sys.path_importer_cache.clear()
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    if os.getuid() != uid or os.geteuid() != uid:
        raise SystemExit("task worker: could not drop privileges")
    os.umask(0o077)
    os.environ["HOME"] = work_dir
    for key in ("USER", "LOGNAME"):
        os.environ.pop(key, None)


def main() -> None:
    fd, work_dir, inline_limit, node = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
    sock = socket.socket(fileno=fd)
    if len(sys.argv) > 6:
        drop_privileges(int(sys.argv[5]), int(sys.argv[6]), work_dir)
    # After the switch: a change of credentials clears the parent-death signal.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() == 1:
        return  # the agent died before we could ask to die with it
    cwd = os.path.join(work_dir, f"cwd-{os.getpid()}")
    os.makedirs(cwd, exist_ok=True)
    os.chdir(cwd)
    tune_for_service()
    Worker(sock, work_dir, inline_limit, node).run()


if __name__ == "__main__":
    main()
