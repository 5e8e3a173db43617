"""The handle ``run_cmd`` returns: wait for, feed, signal or kill a command on a node."""

from __future__ import annotations

import logging
import signal as signals
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from shoal.client.commands import CommandFailed, CommandState
from shoal.runner.actions import ReturnCode
from shoal.runner.context import RunContext
from shoal.runner.handlers import flush

if TYPE_CHECKING:
    from shoal.runner.server import Server

log = logging.getLogger("shoal.runner")
Signal = int | str | signals.Signals


def signal_number(signal: Signal) -> int:
    """The number of ``signal``: a number, a ``signal.Signals``, or a name as ``kill``
    takes it ("INT", "SIGINT", "9")."""
    if isinstance(signal, str):
        name = signal.strip().upper()
        if name.isdigit():
            return int(name)
        try:
            return int(signals.Signals[name if name.startswith("SIG") else "SIG" + name])
        except KeyError:
            raise ValueError(f"no signal named {signal!r}") from None
    return int(signal)


WAIT_TURN = 0.5  # seconds of one bounded wait (see wait_in_turns)


def wait_in_turns(event: threading.Event, timeout: float | None = None) -> bool:
    """``event.wait(timeout)`` in bounded turns. A signal that lands just before a
    lock wait begins does not interrupt it (only one during it does): the Ctrl-C
    is seen at the next turn instead of when (if ever) the event comes."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        turn = WAIT_TURN if deadline is None else min(WAIT_TURN, deadline - time.monotonic())
        if event.wait(max(turn, 0.0)):
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return False


class CommandError(Exception):
    """The command could not run or was cut off (unknown node, node lost, connection lost)."""


class BadReturnCode(Exception):
    """A command ended with a non-zero return code in an experiment with raise_on_rc=True."""

    def __init__(self, server: str, cmd: str, code: int, detail: str = "") -> None:
        super().__init__(f"{server}: {cmd!r} returned {code}{detail}")
        self.server, self.cmd, self.code = server, cmd, code


class Command:
    """A command running on a node (what ``Server.run_cmd`` returns)."""

    def __init__(self, context: RunContext, server: Server, state: CommandState) -> None:
        self._context = context
        self.server = server
        self._state = state
        self._killed = False
        self._warned = False

    @property
    def cmd(self) -> str:
        return self._state.cmd

    @property
    def pid(self) -> int | None:
        """The process id on the node (waits briefly for the command to start)."""
        wait_in_turns(self._state.started, 30)
        return self._state.pid

    def wait(self, block: bool = True) -> int | ReturnCode | None:
        """The return code; ``ReturnCode.TIMEOUT`` if it ran out of time; with
        ``block=False``, None while the command still runs."""
        if not block and not self._state.done.is_set():
            return None
        wait_in_turns(self._state.done)
        return self._outcome()

    def ended(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds for the command to end; whether it has."""
        return wait_in_turns(self._state.done, timeout)

    def _outcome(self) -> int | ReturnCode | None:
        state = self._state
        if state.code is None:
            raise CommandError(f"{self.server.id}: {state.cmd!r}: {state.error}")
        if state.timed_out and not self._warned:
            self._warned = True
            log.warning("%s: %r %s", self.server.id, state.cmd, state.error)
        if state.code != 0 and self._context.raise_on_rc and not self._killed:
            detail = f" ({state.error})" if state.error else ""
            raise BadReturnCode(self.server.id, state.cmd, state.code, detail)
        return ReturnCode.TIMEOUT if state.timed_out else state.code

    def kill(self) -> int | ReturnCode | None:
        """End the command and everything it started (TERM, then KILL); its return code."""
        self.request_kill()
        wait_in_turns(self._state.done)
        return ReturnCode.TIMEOUT if self._state.timed_out else self._state.code

    def request_kill(self, discard_output: bool = False) -> None:
        """Ask the node to end the command, without waiting for it to end (``kill``
        waits); with ``discard_output``, its handlers get nothing more (a Ctrl-C:
        its output already on the way, up to a channel's window, is not worth
        the wait)."""
        if discard_output:
            self._state.discard_output()
        if self._state.done.is_set() or self._killed:
            return
        self._killed = True
        # The agent drops a kill that arrives before the process exists.
        wait_in_turns(self._state.started, 30)
        self._context.channel.kill(self._state.id)

    def stdin(self, line: str | bytes, close: bool = False, delay: float | None = None) -> None:
        """Write to the command's stdin ("\\n" ends a line); ``close=True`` sends EOF.
        ``delay``: wait that many seconds first."""
        if delay:
            time.sleep(delay)
        self._write(line, close)

    def async_stdin(
        self, line: str | bytes, close: bool = False, delay: float | None = None
    ) -> None:
        """Like ``stdin`` but returns at once; with ``delay``, writes that many seconds later."""
        self._later(delay, lambda: self._write(line, close))

    def signal(self, signal: Signal) -> None:
        """Send a signal (a number, ``signal.SIGINT``, or a name: "INT", "SIGINT") to the
        command's process group."""
        number = signal_number(signal)
        wait_in_turns(self._state.started, 30)  # as for kill(): the agent drops an early signal
        if not self._state.done.is_set():
            self._context.channel.signal(self._state.id, number)

    def async_signal(self, signal: Signal, delay: float | None = None) -> None:
        """Like ``signal`` but returns at once; with ``delay``, signals that many seconds later."""
        number = signal_number(signal)  # a bad name fails here, not in a timer thread
        self._later(delay, lambda: self.signal(number))

    def _write(self, text: str | bytes, close: bool) -> None:
        if self._state.done.is_set():
            return  # distexprunner ignored input for a command that had ended; so do we
        data = text.encode() if isinstance(text, str) else text
        self._context.channel.write(self._state.id, data, close)

    def _later(self, delay: float | None, action: Callable[[], None]) -> None:
        if not delay:
            action()
            return

        def fire() -> None:
            try:
                action()
            except CommandFailed as exc:
                log.warning(
                    "%s: %r: a delayed action could not be sent: %s", self.server.id, self.cmd, exc
                )

        # Cancelled when the experiment ends (execution._end_commands): nothing fires later.
        timer = threading.Timer(delay, fire)
        timer.daemon = True
        with self._context.lock:
            self._context.timers.append(timer)
        timer.start()

    @property
    def done(self) -> bool:
        return self._state.done.is_set()

    def __repr__(self) -> str:
        state = "running" if not self.done else f"rc={self._state.code}"
        return f"<Command {self.server.id}: {self._state.cmd!r} {state}>"


def finished(state: CommandState, handlers: list) -> None:
    for handler in handlers:
        flush(handler)
