"""A command's process on the event loop, without asyncio's subprocess machinery.

asyncio's subprocesses cost a child-watcher thread and three pipe transports
each, about a millisecond per command on a small machine: most of a short
command's round trip. Here the process is spawned by ``subprocess.Popen``
(vfork and exec), its exit is a pidfd the loop watches, and its pipes are
non-blocking file descriptors read and written when the loop says they are
ready. Reading waits for the caller: a pipe nobody reads fills up and the
process waits, which is the back-pressure a channel's credit asks for.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import subprocess
from collections.abc import Sequence

PIPE_SIZE = 1024 * 1024  # Linux's default limit for an unprivileged process


class _Pipe:
    """A non-blocking pipe end on the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int) -> None:
        self.loop = loop
        self.fd = fd
        os.set_blocking(fd, False)
        self.closed = False

    async def _ready(self, add: str, remove: str) -> None:
        ready = self.loop.create_future()
        getattr(self.loop, add)(self.fd, ready.set_result, None)
        try:
            await ready
        finally:
            getattr(self.loop, remove)(self.fd)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(OSError):
                os.close(self.fd)


class PipeReader(_Pipe):
    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int) -> None:
        super().__init__(loop, fd)
        # A bigger pipe lets a fast writer get ahead while we send: fewer, bigger reads.
        with contextlib.suppress(OSError, AttributeError):
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)

    async def read(self, size: int) -> bytes:
        """Up to ``size`` bytes as soon as there are any; b"" at the end."""
        while True:
            try:
                data = os.read(self.fd, size)
            except BlockingIOError:
                await self._ready("add_reader", "remove_reader")
                continue
            if not data:
                self.close()
            return data


class PipeWriter(_Pipe):
    async def write(self, data: bytes) -> None:
        """Write all of ``data``; raises BrokenPipeError once the reader is gone."""
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.fd, view) :]
            except BlockingIOError:
                await self._ready("add_writer", "remove_writer")


class Process:
    """A child process with its stdin, stdout and stderr as pipes on the loop."""

    def __init__(self, popen: subprocess.Popen[bytes], stdin: int, stdout: int, stderr: int):
        loop = asyncio.get_running_loop()
        self._popen = popen
        self.pid = popen.pid
        self.stdin = PipeWriter(loop, stdin)
        self.stdout = PipeReader(loop, stdout)
        self.stderr = PipeReader(loop, stderr)
        self._exited = loop.create_future()
        try:
            self._pidfd = os.pidfd_open(self.pid)
        except (OSError, AttributeError):
            # No pidfds (an old kernel): a thread waits instead.
            self._pidfd = -1
            loop.run_in_executor(None, self._wait_blocking)
        else:
            loop.add_reader(self._pidfd, self._reap)

    @property
    def returncode(self) -> int | None:
        return self._popen.returncode

    @classmethod
    def start(cls, argv: Sequence[str], *, cwd: str | None, env: dict[str, str]) -> Process:
        """Start ``argv`` in a session (and process group) of its own; raises OSError.
        Blocks the loop for the spawn (as asyncio's own subprocesses do)."""
        # Our own pipes (close-on-exec here; the child gets them as 0, 1 and 2), so
        # their ends are plain descriptors, not Popen's buffered files.
        pipes = [os.pipe() for _ in range(3)]
        (in_r, in_w), (out_r, out_w), (err_r, err_w) = pipes
        try:
            popen = subprocess.Popen(
                argv,
                stdin=in_r,
                stdout=out_w,
                stderr=err_w,
                start_new_session=True,  # its own process group: a kill reaches its children
                cwd=cwd,
                env=env,
            )
        except BaseException:
            for fd in (in_w, out_r, err_r):
                os.close(fd)
            raise
        finally:
            for fd in (in_r, out_w, err_w):
                os.close(fd)
        return cls(popen, in_w, out_r, err_r)

    def _reap(self) -> None:
        if self._popen.poll() is not None:
            self._done()

    def _wait_blocking(self) -> None:
        self._popen.wait()
        self._exited.get_loop().call_soon_threadsafe(self._done)

    def _done(self) -> None:
        if self._pidfd >= 0:
            self._exited.get_loop().remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = -1
        if not self._exited.done():
            self._exited.set_result(self._popen.returncode)

    async def wait(self) -> int:
        """The return code (negative: the signal that ended it)."""
        return await asyncio.shield(self._exited)

    def close(self) -> None:
        """Close the pipes (the process, if still running, sees them go)."""
        for pipe in (self.stdin, self.stdout, self.stderr):
            pipe.close()
