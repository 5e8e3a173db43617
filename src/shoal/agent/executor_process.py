"""The agent's handle on one executor process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from shoal.agent.child_env import child_environment
from shoal.channel.handover import ENV as HANDOVER_ENV
from shoal.protocol.codec import FrameDecoder, FrameEncoder
from shoal.protocol.executor_messages import PIPE_LIMIT, FromExecutor, ToExecutor
from shoal.protocol.framing import FrameReader, frame, read_frames

LineHandler = Callable[[str, str], None]  # (stream, line)


class ExecutorProcess:
    """A child process in its own process group, talked to over a socketpair."""

    def __init__(self, proc: asyncio.subprocess.Process, sock: socket.socket) -> None:
        self.proc = proc
        self._sock = sock
        self._encoder = FrameEncoder()
        self._decoder: FrameDecoder[FromExecutor] = FrameDecoder(FromExecutor)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._frames = FrameReader(limit=PIPE_LIMIT)
        self._pending: deque[bytes] = deque()
        self._posted: list[bytes] = []

    @classmethod
    async def spawn(
        cls, env: dict[str, str], cwd: str | None = None, handover: socket.socket | None = None
    ) -> ExecutorProcess:
        """Start an executor; ``handover``: its end of the socket pair over which it
        serves channel endpoints (:mod:`shoal.channel.handover`), at ``SHOAL_HANDOVER_FD``."""
        extra = {}
        if handover is not None:
            extra = {"pass_fds": (handover.fileno(),)}
            env = {**env, HANDOVER_ENV: str(handover.fileno())}
        proc, parent = await spawn_child(
            "shoal.agent.executor_main",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**env, "PYTHONUNBUFFERED": "1"},
            cwd=cwd,
            **extra,
        )
        self = cls(proc, parent)
        self._reader, self._writer = await asyncio.open_connection(sock=parent)
        return self

    async def send(self, message: ToExecutor) -> None:
        assert self._writer is not None
        self._flush_posted()
        self._writer.write(frame(self._encoder.encode_one(message)))
        await self._writer.drain()

    def post(self, message: ToExecutor) -> None:
        """Send a small message without waiting for the socket to drain (from sync code).

        Messages posted while the event loop is busy (the flag answers of one
        controller frame) go out in one write, not a write and a wake-up each.
        """
        if self._writer is None or self._writer.is_closing():
            return
        self._posted.append(frame(self._encoder.encode_one(message)))
        if len(self._posted) == 1:
            asyncio.get_running_loop().call_soon(self._flush_posted)

    def _flush_posted(self) -> None:
        if self._posted and self._writer is not None and not self._writer.is_closing():
            self._writer.write(b"".join(self._posted))
        self._posted.clear()

    async def receive(self) -> FromExecutor | None:
        """The next message, or None when the executor closed its end (exited)."""
        assert self._reader is not None
        if not self._pending:
            try:
                bodies = await read_frames(self._reader, self._frames)
            except asyncio.IncompleteReadError:  # it went in the middle of a message
                return None
            if bodies is None:
                return None
            self._pending.extend(bodies)
        return self._decoder.decode_one(self._pending.popleft())

    async def pump_output(self, on_line: LineHandler) -> None:
        """Feed stdout and stderr to ``on_line`` until both close."""

        async def pump(stream: asyncio.StreamReader | None, name: str) -> None:
            if stream is None:
                return
            while raw := await stream.readline():
                on_line(name, raw.decode("utf-8", errors="replace").rstrip("\n"))

        async with asyncio.TaskGroup() as tg:
            tg.create_task(pump(self.proc.stdout, "stdout"))
            tg.create_task(pump(self.proc.stderr, "stderr"))

    async def kill(self, grace: float = 2.0) -> None:
        """TERM the whole process group, then KILL whatever is left after ``grace``."""
        if self.proc.returncode is None:
            _signal_group(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), grace)
        await kill_group(self.proc)
        self.close()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        with contextlib.suppress(OSError):
            self._sock.close()


async def spawn_child(
    module: str, *args: str, env: Mapping[str, str] | None = None, **options: Any
) -> tuple[asyncio.subprocess.Process, socket.socket]:
    """Start ``python -m module FD *args`` in its own process group, with one end of
    a socket pair on FD; return the process and our end.

    The child's environment is :func:`child_environment` with ``env`` over it:
    none of the agent's secrets."""
    parent, child = socket.socketpair()
    pass_fds = (child.fileno(), *options.pop("pass_fds", ()))
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            module,
            str(child.fileno()),
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            pass_fds=pass_fds,
            start_new_session=True,
            env=child_environment(env),
            **options,
        )
    finally:
        child.close()
    return proc, parent


async def kill_group(proc: asyncio.subprocess.Process) -> None:
    """KILL the process's whole group and reap it."""
    _signal_group(proc.pid, signal.SIGKILL)
    await proc.wait()


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


async def run_shell(command: str, on_line: LineHandler, cwd: str | None = None) -> tuple[int, str]:
    """Run a shell line in its own group; stream its output; return (code, output tail)."""
    proc = await asyncio.create_subprocess_shell(
        command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
        cwd=cwd,
        env=child_environment(),
    )
    tail: list[str] = []
    try:
        assert proc.stdout is not None
        while raw := await proc.stdout.readline():
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            on_line("requirements", line)
            tail = [*tail[-19:], line]
        code = await proc.wait()
    except asyncio.CancelledError:
        _signal_group(proc.pid, signal.SIGKILL)
        await proc.wait()
        raise
    return code, "\n".join(tail)
