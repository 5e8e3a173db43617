"""Running commands on nodes from a client, with their output streamed back live.

Commands travel over channels (:mod:`shoal.channel`): one per node (and run),
opened on first use and kept for every later command there, so a command costs
one message each way and no connection set-up. The channel goes straight to
the node when it can be reached and through the controller when not; its
credit is the commands' flow control. One thread per channel splits each
command's output into lines and hands them to the command's handlers as they
arrive, so a blocking user program (a runner experiment calling ``wait()``)
still sees output flow.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec

from shoal.channel import Channel, ChannelClosed, ChannelError
from shoal.protocol import command_messages as cm

LineHandler = Callable[[str], None]
ENDPOINT = "commands"  # the nodes' endpoint; ``commands/RUN_ID`` for a run's commands
UPLOAD_PART = 1024 * 1024  # bytes of a file sent in one message


class CommandFailed(Exception):
    """A command could not run to its end: unknown node, node lost, connection lost."""


@dataclass
class CommandState:
    """What the client knows of one command; updated by its channel's reader thread."""

    id: str
    node: str
    cmd: str
    handlers: dict[str, LineHandler]
    on_exit: Callable[[CommandState], None] | None = None
    pid: int | None = None
    code: int | None = None
    error: str | None = None
    timed_out: bool = False
    started: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    _partial: dict[str, bytes] = field(default_factory=dict)
    _fed: bool = False  # output reached feed (its handlers may hold some of it)

    def discard_output(self) -> None:
        """Hand no more output to the handlers (what is on its way is dropped)."""
        self.handlers = {}
        self._partial.clear()

    def feed(self, stream: str, data: bytes) -> None:
        if not self.handlers:
            return  # nobody to hand it to (or discarded): not even split into lines
        self._fed = True
        rest = self._partial.get(stream)
        buffered = rest + data if rest else data
        end = buffered.rfind(b"\n")
        if end < 0:
            self._partial[stream] = buffered
            return
        self._partial[stream] = buffered[end + 1 :]
        handler = self.handlers.get(stream)
        if handler is not None:
            # One decode per chunk, and whole lines only: a UTF-8 sequence split
            # across chunks stays intact. Bad bytes become U+FFFD, never an error.
            text = buffered[: end + 1].decode("utf-8", errors="replace")
            if "\r" in text:
                text = text.replace("\r\n", "\n")
            deliver_block(handler, text)

    def flush(self) -> None:
        for stream, rest in self._partial.items():
            handler = self.handlers.get(stream)
            if rest and handler is not None:
                deliver(handler, [rest.removesuffix(b"\r").decode("utf-8", errors="replace")])
        self._partial.clear()

    def end(self, code: int | None, error: str | None, timed_out: bool = False) -> None:
        """The command is over: the rest of its output goes out, then the news."""
        self.flush()
        self.code, self.error, self.timed_out = code, error, timed_out
        if self.on_exit is not None:
            self.on_exit(self)
        self.started.set()
        self.done.set()


def deliver(handler: LineHandler, lines: list[str]) -> None:
    """Hand ``lines`` to a handler: all at once if it has ``write_lines``, else one by one."""
    bulk = getattr(handler, "write_lines", None)
    if bulk is not None:
        bulk(lines)
    else:
        for line in lines:
            handler(line)


def deliver_block(handler: LineHandler, text: str) -> None:
    """Hand whole lines (``text``, each line ending in "\\n") to a handler: as they
    are if it has ``write_block`` (bulk output is never split into lines for a
    handler that would only join them again), else as lines without the "\\n"."""
    block = getattr(handler, "write_block", None)
    if block is not None:
        block(text)
    else:
        deliver(handler, text[:-1].split("\n"))


class _NodeChannel:
    """One channel to a node's ``commands`` endpoint, the commands running over it,
    and the thread that reads it."""

    def __init__(self, channel: Channel, node: str, forget: Callable[[_NodeChannel], None]):
        self.channel = channel
        self.node = node
        self._forget = forget
        self.commands: dict[str, CommandState] = {}
        self._lock = threading.Lock()  # commands and gone
        # The channel takes one sender at a time; never held with _lock (a send may
        # wait for credit, which the reader, needing _lock, gives back).
        self._send_lock = threading.Lock()
        self.gone: str | None = None
        channel.take_on_loop(self._take_on_loop)
        self._reader = threading.Thread(
            target=self._read, name=f"shoal-commands-{node}", daemon=True
        )
        self._reader.start()

    def start(self, state: CommandState, message: cm.RunCommand | cm.PutFile) -> None:
        with self._lock:
            gone = self.gone
            if gone is None:
                self.commands[state.id] = state
        if gone is None:
            try:
                self.send(message)
                return
            except CommandFailed as exc:
                with self._lock:
                    gone = None if self.commands.pop(state.id, None) is None else str(exc)
        if gone is not None:
            state.end(None, gone)

    def send(self, message: cm.ToNode) -> None:
        if self.gone is not None:
            raise CommandFailed(self.gone)
        try:
            with self._send_lock:
                self.channel.send(cm.encode(message))
        except ChannelError as exc:
            raise CommandFailed(self._why(exc)) from None

    def _why(self, exc: ChannelError) -> str:
        if isinstance(exc, ChannelClosed):
            return f"node {self.node!r} closed the command channel"
        if str(exc).startswith(f"peer {exc.peer} closed"):
            return f"node {self.node!r} ended the command channel: {exc}"
        return f"node {self.node!r} was lost: {exc}"

    def _read(self) -> None:
        reason = f"node {self.node!r} closed the command channel"
        try:
            for body in self.channel:
                self._dispatch(cm.decode_to_client(body))
        except ChannelError as exc:
            reason = self._why(exc)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            reason = f"node {self.node!r} sent a malformed command message: {exc}"
            self.channel.close(reason[:300])
        finally:
            self._fail_all(reason)

    def _take_on_loop(self, body: bytes) -> bool:
        # On the channel loop, while the reader thread waits with nothing to do: a
        # command's start, and the end of one that had no output (so its handlers
        # have nothing to flush), are taken here, saving the hop to the reader
        # thread (and back) on a short command's round trip. The rest, output
        # above all (handlers may block), goes to the reader thread.
        try:
            event = cm.decode_to_client(body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return False  # the reader says what was wrong
        if isinstance(event, cm.CommandOutput):
            return False
        state = self.commands.get(event.command)
        if isinstance(event, cm.CommandExit) and state is not None and state._fed:
            return False
        self._dispatch(event)
        return True

    def _dispatch(self, event: cm.ToClient) -> None:
        state = self.commands.get(event.command)
        if state is None:
            return
        if isinstance(event, cm.CommandOutput):
            state.feed(event.stream, event.data)
        elif isinstance(event, cm.CommandStarted):
            state.pid = event.pid
            state.started.set()
        else:
            with self._lock:
                self.commands.pop(state.id, None)
            state.end(event.code, event.error, event.timed_out)

    def _fail_all(self, reason: str) -> None:
        with self._lock:
            self.gone = self.gone or reason
            pending, self.commands = list(self.commands.values()), {}
        self._forget(self)
        for state in pending:
            state.end(None, self.gone)

    def close(self) -> None:
        with contextlib.suppress(ChannelError):  # lost already: its commands were told
            self.channel.close()
        if threading.current_thread() is not self._reader:
            self._reader.join(timeout=10)


class CommandChannel:
    """The client's commands on nodes, over one channel per node and run; thread-safe.

    ::

        commands = client.commands()
        state = commands.run("node-0", "echo hello", handlers={"stdout": print})
        state.done.wait()
    """

    def __init__(self, endpoint: str, token: str) -> None:
        self._endpoint = endpoint
        self._token = token
        self._lock = threading.Lock()
        self._open_lock = threading.Lock()  # one channel opening at a time
        self._channels: dict[tuple[str, str], _NodeChannel] = {}
        self._closed = False

    def _channel(self, node: str, run: str) -> _NodeChannel:
        """The channel to ``node`` for ``run``'s commands, opened on first use."""
        key = (node, run)
        with self._lock:
            found = self._channels.get(key)
        if found is not None:
            return found
        with self._open_lock:
            with self._lock:
                if self._closed:
                    raise CommandFailed("the command channels of this client are closed")
                found = self._channels.get(key)
            if found is not None:
                return found
            endpoint = f"{ENDPOINT}/{run}" if run else ENDPOINT
            try:
                channel = Channel.connect(self._endpoint, self._token, node, endpoint)
            except ChannelError as exc:
                raise CommandFailed(f"cannot run commands on node {node!r}: {exc}") from None
            opened = _NodeChannel(channel, node, lambda gone: self._forget(key, gone))
            with self._lock:
                self._channels[key] = opened
            return opened

    def _forget(self, key: tuple[str, str], gone: _NodeChannel) -> None:
        with self._lock:
            if self._channels.get(key) is gone:
                del self._channels[key]

    def run(
        self,
        node: str,
        cmd: str,
        *,
        handlers: dict[str, LineHandler] | None = None,
        experiment: str = "",
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        timeout: float | None = None,
        stdin: bytes | None = None,
        on_exit: Callable[[CommandState], None] | None = None,
    ) -> CommandState:
        """Start ``cmd`` on ``node``; returns at once. A command that cannot run
        ends at once, with ``error`` saying why."""
        state = CommandState(uuid.uuid4().hex, node, cmd, handlers or {}, on_exit)
        try:
            channel = self._channel(node, experiment)
        except CommandFailed as exc:
            state.end(None, str(exc))
            return state
        message = cm.RunCommand(
            command=state.id, cmd=cmd, env=env or {}, cwd=cwd, timeout=timeout, stdin=stdin
        )
        channel.start(state, message)
        return state

    def put_file(self, node: str, path: str, data: bytes, mode: int | None = None) -> None:
        """Write ``data`` to ``path`` on ``node``; raises CommandFailed if it cannot."""
        state = CommandState(uuid.uuid4().hex, node, f"<upload to {path}>", {})
        channel = self._channel(node, "")
        parts = [data[i : i + UPLOAD_PART] for i in range(0, len(data), UPLOAD_PART)] or [b""]
        last = len(parts) - 1
        first = cm.PutFile(command=state.id, path=path, data=parts[0], mode=mode, more=last > 0)
        channel.start(state, first)
        for i, part in enumerate(parts[1:], 1):
            if state.done.is_set():
                break  # refused already (the answer says why)
            more = i < last
            try:
                channel.send(cm.PutFile(command=state.id, path=path, data=part, more=more))
            except CommandFailed:
                break  # the channel is gone: so is the command, with the reason
        state.done.wait()
        if state.error:
            raise CommandFailed(state.error)

    def _send(self, command: str, message: cm.ToNode) -> None:
        """Send ``message`` to the channel ``command`` runs on; nothing if it ended."""
        with self._lock:
            channels = list(self._channels.values())
        for channel in channels:
            if command in channel.commands:
                channel.send(message)
                return

    def write(self, command: str, data: bytes, close: bool = False) -> None:
        self._send(command, cm.CommandInput(command=command, data=data, close=close))

    def signal(self, command: str, sig: int) -> None:
        self._send(command, cm.CommandSignal(command=command, signal=sig))

    def kill(self, command: str, grace: float = 1.0) -> None:
        self._send(command, cm.CommandKill(command=command, grace=grace))

    def paths(self) -> dict[tuple[str, str], str]:
        """(node, run) -> "direct" or "relay" for each open channel (tests, benchmarks)."""
        with self._lock:
            return {key: found.channel.path for key, found in self._channels.items()}

    def close(self) -> None:
        """Close every channel (the nodes end the commands still running on them)."""
        with self._lock:
            self._closed = True
            channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            channel.close()
