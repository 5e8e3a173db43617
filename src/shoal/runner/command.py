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
from shoal.runner.context import RunContext, active
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


WATCH_TURN = 0.2  # seconds: how soon a blocked experiment notices a failed command


class CommandError(Exception):
    """The command could not run or was cut off (unknown node, node lost, connection lost)."""


class BadReturnCode(Exception):
    """A command ended with a non-zero return code in an experiment with raise_on_rc=True."""

    def __init__(self, server: str, cmd: str, code: int, detail: str = "") -> None:
        super().__init__(f"{server}: {cmd!r} returned {code}{detail}")
        self.server, self.cmd, self.code = server, cmd, code


def raise_failed_in_background(
    context: RunContext | None = None, exclude: Command | None = None
) -> None:
    """With raise_on_rc=True, BadReturnCode for a command that ended with a non-zero
    code nobody has seen (not waited for, not killed or signalled by the user).

    distexprunner stopped the run on any such code, at the experiment's next
    call that let its event loop run (wait, sleep, stdin, ...): this is that check.
    """
    context = context or active()
    if context is None or not context.raise_on_rc or not context.failed.is_set():
        return
    # Cleared before looking: a failure arriving meanwhile sets it again.
    context.failed.clear()
    with context.lock:
        commands = list(context.running)
    for command in commands:
        if command is not exclude and command._failed_unseen():
            command._seen = True
            context.failed.set()  # still set: another unseen failure is found next time
            state = command._state
            why = f"{state.error}; " if state.error else ""
            raise BadReturnCode(
                command.server.id,
                state.cmd,
                state.code or 0,
                f" ({why}seen while the experiment was busy elsewhere: "
                "raise_on_rc=True stops it at any non-zero code)",
            )
    if exclude is not None and exclude._failed_unseen():
        context.failed.set()  # the caller reports its own code, or a later check does


def wait_watching(
    event: threading.Event, timeout: float | None = None, exclude: Command | None = None
) -> bool:
    """``wait_in_turns(event, timeout)`` that stops the experiment (BadReturnCode) as
    soon as another of its commands fails unseen (see raise_failed_in_background)."""
    context = active()
    if context is None or not context.raise_on_rc:
        return wait_in_turns(event, timeout)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        raise_failed_in_background(context, exclude)
        turn = WATCH_TURN if deadline is None else min(WATCH_TURN, deadline - time.monotonic())
        if event.wait(max(turn, 0.0)):
            return True
        if deadline is not None and time.monotonic() >= deadline:
            raise_failed_in_background(context, exclude)
            return False


class Command:
    """A command running on a node (what ``Server.run_cmd`` returns)."""

    def __init__(self, context: RunContext, server: Server, state: CommandState) -> None:
        self._context = context
        self.server = server
        self._state = state
        self._killed = False
        self._signalled = False  # the user ended it on purpose, as with kill()
        self._seen = False  # its code reached the user (or BadReturnCode named it)
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
        if not block:
            # Not a blocking call: only this command's own code is looked at.
            return self._outcome() if self._state.done.is_set() else None
        wait_watching(self._state.done, exclude=self)
        return self._outcome()

    def ended(self, timeout: float | None = None, watch: bool = False) -> bool:
        """Wait up to ``timeout`` seconds for the command to end; whether it has.
        ``watch``: as the experiment's own blocking calls do, stop at another
        command's unseen failure (raise_on_rc)."""
        if watch:
            return wait_watching(self._state.done, timeout, exclude=self)
        return wait_in_turns(self._state.done, timeout)

    def _failed_unseen(self) -> bool:
        state = self._state
        return (
            state.done.is_set()
            and state.code not in (None, 0)
            and not (self._seen or self._killed or self._signalled)
        )

    def _outcome(self) -> int | ReturnCode | None:
        state = self._state
        self._seen = True
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
        self._seen = True
        raise_failed_in_background(self._context)  # another command's failure, as wait() does
        wait_watching(self._state.done, exclude=self)
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
        raise_failed_in_background(self._context)
        if delay:
            wait_watching(threading.Event(), delay)
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
        self._send_signal(number)
        raise_failed_in_background(self._context, self)

    def _send_signal(self, number: int) -> None:
        # A signal ends most commands on purpose: like kill(), not a failure to
        # stop the experiment for unless the user waits for its code.
        self._signalled = True
        wait_in_turns(self._state.started, 30)  # as for kill(): the agent drops an early signal
        if not self._state.done.is_set():
            self._context.channel.signal(self._state.id, number)

    def async_signal(self, signal: Signal, delay: float | None = None) -> None:
        """Like ``signal`` but returns at once; with ``delay``, signals that many seconds later."""
        number = signal_number(signal)  # a bad name fails here, not in a timer thread
        self._later(delay, lambda: self._send_signal(number))

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


def finished(state: CommandState, handlers: list, context: RunContext | None = None) -> None:
    """A command ended (on the channel's reader thread): its handlers are flushed, and
    a non-zero code wakes the experiment's check for unseen failures."""
    for handler in handlers:
        flush(handler)
    if context is not None and state.code not in (None, 0):
        context.failed.set()
