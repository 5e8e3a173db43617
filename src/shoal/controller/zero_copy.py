"""A big frame's body moved between two connections inside the kernel.

A spliced relay (:mod:`shoal.controller.relay_splice`) copies what arrives on
one connection to the other. For large frames that copy, out of the kernel
into the controller and back, is most of what relaying costs. Once at least
:data:`ZERO_COPY_MIN` bytes of a frame's body are still to come,
:class:`ZeroCopyPump` moves them with ``os.splice`` (Linux): socket to pipe to
socket, the pages never entering Python. The relay still reads frame headers itself, so it
knows where frames begin.

Plain TCP only: on a TLS connection the bytes must be decrypted and encrypted
again, so they go through the controller's memory as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import socket
from collections.abc import Callable

# A frame with at least this many bytes still to come is moved in the kernel:
# below it, pausing the source and the calls per frame cost about what the
# copy saves (a batch of small messages stays under it).
ZERO_COPY_MIN = 256 * 1024
PIPE_SIZE = 1024 * 1024  # bytes a pump's pipe holds (the kernel may allow less)
TURN = 8 * 1024 * 1024  # bytes moved before other callbacks get the loop
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_F_GETPIPE_SZ = getattr(fcntl, "F_GETPIPE_SZ", 1032)
_FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)


def zero_copy_fd(transport: asyncio.BaseTransport) -> int | None:
    """The socket of ``transport`` when its bytes can be moved in the kernel
    (Linux, plain TCP), else None."""
    if not hasattr(os, "splice"):
        return None
    if transport.get_extra_info("sslcontext") or transport.get_extra_info("ssl_object"):
        return None  # the socket carries ciphertext
    sock = transport.get_extra_info("socket")
    if sock is None:
        return None
    with contextlib.suppress(OSError, ValueError):
        fd = sock.fileno()
        return fd if fd >= 0 else None
    return None


class ZeroCopyPump:
    """Moves bytes from one socket to another through a pipe, driven by the
    event loop (non-blocking; it waits for the source to be readable or the
    target writable, so a slow reader holds the writer back as before).

    One per direction of a relayed channel, made at its first large frame and
    kept (its pipe and duplicates) until :meth:`close`. :meth:`move` moves one
    frame's body. Both sockets stay the caller's: the pump works on duplicates.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, source: int, target: int) -> None:
        self._loop = loop
        self._left = 0  # still to take from the source
        self._in_pipe = 0
        self._moved: Callable[[int], None] = _nothing
        self._done: Callable[[BaseException | None], None] = _nothing
        self._reader = self._writer = False
        self._fds: list[int] = []
        self._peeker: socket.socket | None = None
        self._handle: asyncio.Handle | None = None
        self.moving = False
        try:
            # Duplicates: the event loop knows the originals as its transports'
            # and refuses to watch them for anyone else.
            self._source = self._own(os.dup(source))
            self._target = self._own(os.dup(target))
            # For peeking at what comes next; it lends the pump's duplicate
            # (detached before the duplicate is closed).
            self._peeker = socket.socket(fileno=self._source)
            pipe_out, pipe_in = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            self._pipe_out, self._pipe_in = self._own(pipe_out), self._own(pipe_in)
            try:
                self._capacity = fcntl.fcntl(self._pipe_in, _F_SETPIPE_SZ, PIPE_SIZE)
            except OSError:  # more than this user may have: the pipe's own size
                self._capacity = fcntl.fcntl(self._pipe_in, _F_GETPIPE_SZ)
        except OSError:
            self.close()  # out of file descriptors: the caller copies instead
            raise

    def peek(self, size: int) -> bytes:
        """Up to ``size`` bytes the source holds, left there (b"" if none yet, or
        if the source failed: its transport then reads the error itself)."""
        if self._peeker is None:
            return b""
        try:
            return self._peeker.recv(size, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except OSError:  # BlockingIOError included
            return b""

    def _own(self, fd: int) -> int:
        self._fds.append(fd)
        return fd

    def move(
        self,
        size: int,
        moved: Callable[[int], None],
        done: Callable[[BaseException | None], None],
    ) -> None:
        """Move the next ``size`` bytes of the source to the target.

        ``moved(n)`` is called as bytes reach the target; ``done(error)`` once,
        when all of them did (``None``), the source ended first (``EOFError``)
        or the move failed (an ``OSError`` of a socket, or the ``RuntimeError``
        of an event loop that would not watch one). :meth:`close` ends a move without
        calling ``done``."""
        assert not self.moving and self._fds, "one move at a time, on an open pump"
        self.moving = True
        self._left, self._moved, self._done = size, moved, done
        self._handle = self._loop.call_soon(self._step)

    def _step(self) -> None:
        # Both halves as far as they go, at the same time: the source is read
        # while the pipe has room, not only once the target has taken it all.
        self._handle = None
        budget = TURN
        try:
            while budget > 0:
                progressed = read_blocked = write_blocked = False
                room = self._capacity - self._in_pipe
                if self._left and room > 0:
                    try:
                        want = min(self._left, room)
                        n = os.splice(self._source, self._pipe_in, want, flags=_FLAGS)
                    except BlockingIOError:
                        read_blocked = True
                    else:
                        if n == 0:
                            self._finish(EOFError("the source ended in the middle of a frame"))
                            return
                        self._left -= n
                        self._in_pipe += n
                        progressed = True
                if self._in_pipe:
                    try:
                        n = os.splice(self._pipe_out, self._target, self._in_pipe, flags=_FLAGS)
                    except BlockingIOError:
                        write_blocked = True
                    else:
                        self._in_pipe -= n
                        budget -= n
                        self._moved(n)
                        progressed = True
                if not self._left and not self._in_pipe:
                    self._finish(None)
                    return
                if not progressed:
                    self._watch(read_blocked, write_blocked)
                    return
        except (OSError, RuntimeError) as exc:  # RuntimeError: the loop would not watch
            self._finish(exc)
            return
        self._handle = self._loop.call_soon(self._step)  # more to move: others first

    def _watch(self, source: bool, target: bool) -> None:
        """Be called again when the source is readable (``source``) or the
        target writable (``target``), and for nothing else."""
        loop = self._loop
        if source != self._reader:
            if source:
                loop.add_reader(self._source, self._step)
            else:
                loop.remove_reader(self._source)
            self._reader = source
        if target != self._writer:
            if target:
                loop.add_writer(self._target, self._step)
            else:
                loop.remove_writer(self._target)
            self._writer = target

    def _finish(self, error: BaseException | None) -> None:
        self._idle()
        done, self._moved, self._done = self._done, _nothing, _nothing
        if error is not None:
            self.close()  # bytes may be left in the pipe: it cannot serve again
        done(error)

    def _idle(self) -> None:
        self.moving = False
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        # Unwatched before closed: the loop must not watch a number the
        # system may give to another file next.
        self._watch(False, False)

    @property
    def closed(self) -> bool:
        return not self._fds

    def close(self) -> None:
        """End a move under way (without ``done``) and let go of the pipe and
        the duplicates."""
        self._idle()
        self._moved, self._done = _nothing, _nothing
        if self._peeker is not None:
            self._peeker.detach()  # the descriptor is closed below, once
            self._peeker = None
        fds, self._fds = self._fds, []
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)


def _nothing(_: object) -> None:
    return None


__all__ = ["ZERO_COPY_MIN", "ZeroCopyPump", "zero_copy_fd"]
