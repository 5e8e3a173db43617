"""Running commands on nodes from a client, with their output streamed back live.

One WebSocket to the controller carries every command of a client. A reader
thread splits each command's output into lines and hands them to the
command's handlers as they arrive, so a blocking user program (a runner
experiment calling ``wait()``) still sees output flow.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from shoal.protocol import (
    ClientEvent,
    CommandAck,
    CommandExit,
    CommandInput,
    CommandKill,
    CommandOutput,
    CommandSignal,
    CommandStarted,
    FrameDecoder,
    FrameEncoder,
    PutFile,
    RunCommand,
)

LineHandler = Callable[[str], None]
ACK_EVERY = 256 * 1024


class CommandFailed(Exception):
    """A command could not run to its end: unknown node, node lost, connection lost."""


@dataclass
class CommandState:
    """What the client knows of one command; updated by the reader thread."""

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
    _unacked: int = 0

    def feed(self, stream: str, data: bytes) -> None:
        buffered = self._partial.get(stream, b"") + data
        end = buffered.rfind(b"\n")
        if end < 0:
            self._partial[stream] = buffered
            return
        self._partial[stream] = buffered[end + 1 :]
        handler = self.handlers.get(stream)
        if handler is not None:
            # One decode per chunk, and whole lines only: a UTF-8 sequence split
            # across chunks stays intact. Bad bytes become U+FFFD, never an error.
            text = buffered[:end].decode("utf-8", errors="replace")
            deliver(handler, text.replace("\r\n", "\n").split("\n"))

    def flush(self) -> None:
        for stream, rest in self._partial.items():
            handler = self.handlers.get(stream)
            if rest and handler is not None:
                deliver(handler, [rest.removesuffix(b"\r").decode("utf-8", errors="replace")])
        self._partial.clear()


def deliver(handler: LineHandler, lines: list[str]) -> None:
    """Hand ``lines`` to a handler: all at once if it has ``write_lines``, else one by one."""
    bulk = getattr(handler, "write_lines", None)
    if bulk is not None:
        bulk(lines)
    else:
        for line in lines:
            handler(line)


class CommandChannel:
    """The client's command stream; thread-safe.

    ::

        channel = client.commands()
        state = channel.run("node-0", "echo hello", handlers={"stdout": print})
        state.done.wait()
    """

    def __init__(self, endpoint: str, token: str) -> None:
        url = endpoint.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
        self._stack = contextlib.ExitStack()
        # Entered as a context manager: websockets warns about bare connections.
        self._ws: ClientConnection = self._stack.enter_context(
            connect(
                url + "/api/commands/ws",
                additional_headers={"Authorization": f"Bearer {token}"},
                max_size=256 * 1024 * 1024,
                compression=None,  # output is streamed as is; deflate costs more than it saves here
                open_timeout=10,
            )
        )
        self._encoder = FrameEncoder()
        self._decoder: FrameDecoder[ClientEvent] = FrameDecoder(ClientEvent)
        self._send_lock = threading.Lock()
        self._commands: dict[str, CommandState] = {}
        self._lock = threading.Lock()
        self._closed_reason: str | None = None
        self._reader = threading.Thread(target=self._read, name="shoal-commands", daemon=True)
        self._reader.start()

    # ------------------------------------------------------------------ sending

    def _send(self, message: object) -> None:
        try:
            with self._send_lock:
                self._ws.send(self._encoder.encode([message]))
        except ConnectionClosed as exc:
            raise CommandFailed(f"the connection to the controller is closed: {exc}") from None

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
        state = CommandState(uuid.uuid4().hex, node, cmd, handlers or {}, on_exit)
        self._register(state)
        self._send(
            RunCommand(
                command=state.id,
                cmd=cmd,
                node=node,
                experiment=experiment,
                env=env or {},
                cwd=cwd,
                timeout=timeout,
                stdin=stdin,
            )
        )
        return state

    def put_file(self, node: str, path: str, data: bytes, mode: int | None = None) -> None:
        """Write ``data`` to ``path`` on ``node``; raises CommandFailed if it cannot."""
        state = CommandState(uuid.uuid4().hex, node, f"<upload to {path}>", {})
        self._register(state)
        self._send(PutFile(command=state.id, node=node, path=path, data=data, mode=mode))
        state.done.wait()
        if state.error:
            raise CommandFailed(state.error)

    def write(self, command: str, data: bytes, close: bool = False) -> None:
        self._send(CommandInput(command=command, data=data, close=close))

    def signal(self, command: str, sig: int) -> None:
        self._send(CommandSignal(command=command, signal=sig))

    def kill(self, command: str, grace: float = 1.0) -> None:
        self._send(CommandKill(command=command, grace=grace))

    def _register(self, state: CommandState) -> None:
        with self._lock:
            if self._closed_reason is not None:
                raise CommandFailed(self._closed_reason)
            self._commands[state.id] = state

    # ------------------------------------------------------------------ reading

    def _read(self) -> None:
        try:
            for data in self._ws:
                if isinstance(data, str):
                    continue
                for event in self._decoder.decode(data):
                    self._dispatch(event)
        except ConnectionClosed:
            pass
        finally:
            self._fail_all("the connection to the controller was lost")

    def _dispatch(self, event: CommandStarted | CommandOutput | CommandExit) -> None:
        state = self._commands.get(event.command)
        if state is None:
            return
        if isinstance(event, CommandOutput):
            state.feed(event.stream, event.data)
            state._unacked += len(event.data)
            if state._unacked >= ACK_EVERY:
                consumed, state._unacked = state._unacked, 0
                self._send(CommandAck(command=state.id, consumed=consumed))
        elif isinstance(event, CommandStarted):
            state.pid = event.pid
            state.started.set()
        else:
            state.flush()
            state.code, state.error, state.timed_out = event.code, event.error, event.timed_out
            with self._lock:
                self._commands.pop(state.id, None)
            if state.on_exit is not None:
                state.on_exit(state)
            state.started.set()
            state.done.set()

    def _fail_all(self, reason: str) -> None:
        with self._lock:
            self._closed_reason = reason
            pending, self._commands = list(self._commands.values()), {}
        for state in pending:
            state.flush()
            state.error = reason
            state.started.set()
            state.done.set()

    def close(self) -> None:
        self._stack.close()
        self._reader.join(timeout=10)
