"""Commands: what a client and a node say over a command channel, and what the
node tells the controller about them for the record.

A client opens one channel per node (and run) to the node's ``commands``
endpoint (``commands/RUN_ID`` for the commands of a run) and sends any number
of commands over it; each payload of the channel is one message here, tagged
by its class name. The channel's credit is the only flow control: a client
that reads slowly slows the node's reads of the command's output.

The node also reports each command to the controller over its own WebSocket
(``CommandStarted`` with what and for whom, at most the first 256 KiB of each
stream as ``CommandOutput``, and ``CommandExit``): that is the record and the
dashboard's live view, never on the command's own path.

A node keeps what it reported of a run's command until the controller says
the record is stored (``CommandsStored``): after every reconnect it sends each
such command whole again (``CommandRecord``), so neither a dropped connection
nor a controller that died before writing the record loses it.
"""

from __future__ import annotations

import msgspec

KEEP = 256 * 1024  # bytes of each stream a node reports to the controller (the record's)


class _Msg(msgspec.Struct, tag_field="t", tag=True, omit_defaults=True):
    pass


# --- client -> node, on the channel ------------------------------------------


class RunCommand(_Msg):
    """Run ``cmd`` (a shell line) in its own process group; ``command`` is an id the
    client chose, unique on its channel."""

    command: str
    cmd: str
    env: dict[str, str] = {}
    cwd: str | None = None
    timeout: float | None = None
    stdin: bytes | None = None  # given: written and closed; None: the pipe stays open


class CommandInput(_Msg):
    """Bytes for the command's stdin; ``close``: then end of input."""

    command: str
    data: bytes = b""
    close: bool = False


class CommandSignal(_Msg):
    command: str
    signal: int


class CommandKill(_Msg):
    """TERM the command's process group, KILL it after ``grace`` seconds."""

    command: str
    grace: float = 1.0


class PutFile(_Msg):
    """A part of a file to write to ``path`` on the node; the part with ``more``
    False ends it (the file appears whole, then), answered by CommandExit."""

    command: str
    path: str
    data: bytes
    mode: int | None = None
    more: bool = False


# --- node -> client on the channel; node -> controller for the record ---------


class CommandStarted(_Msg):
    """The command runs as ``pid`` (None: it could not start, its CommandExit says
    why). To the controller also what it is: ``cmd``, its ``run`` ("" for none),
    its ``opener`` (the channel's peer) and, for a run's command, ``record``: the
    node's id for its record (see ``CommandRecord``)."""

    command: str
    pid: int | None = None
    cmd: str = ""
    run: str = ""
    opener: str = ""
    record: str = ""


class CommandOutput(_Msg):
    """A chunk of a command's stdout or stderr, as read (not split into lines)."""

    command: str
    stream: str
    data: bytes


class CommandExit(_Msg):
    """The command ended (``code``), or could not run or was cut off (``error``)."""

    command: str
    code: int | None = None
    error: str | None = None
    timed_out: bool = False


# --- node <-> controller: records, until stored ----------------------------------


class CommandRecord(_Msg):
    """All a node has of one command of a run, sent again after each reconnect
    until the controller confirms it stored it; it replaces whatever the
    controller had of the command. Times are on the controller's clock;
    ``ended``: the command is over and ``code``/``error`` say how."""

    record: str
    command: str
    run: str
    cmd: str
    opener: str = ""
    pid: int | None = None
    started_at: float = 0.0
    stdout: bytes = b""
    stderr: bytes = b""
    truncated: bool = False
    ended: bool = False
    finished_at: float = 0.0
    code: int | None = None
    error: str | None = None


class CommandsStored(_Msg):
    """These records (the node's ids) are stored, or will never be (refused): the
    node may forget them."""

    records: list[str]


# --- controller <-> node, about runs --------------------------------------------


class EndRun(_Msg):
    """The run is over: the node refuses its new commands (``kill``: and ends the
    running ones), then answers RunEnded once its reports of the run's commands
    are queued before it."""

    run: str
    kill: bool = False


class RunEnded(_Msg):
    """Everything this node has to report about the run's commands came before this."""

    run: str


ToNode = RunCommand | CommandInput | CommandSignal | CommandKill | PutFile
ToClient = CommandStarted | CommandOutput | CommandExit

_encoder = msgspec.msgpack.Encoder()
_to_node = msgspec.msgpack.Decoder(ToNode)
_to_client = msgspec.msgpack.Decoder(ToClient)


def encode(message: ToNode | ToClient) -> bytes:
    return _encoder.encode(message)


def decode_to_node(body: bytes) -> ToNode:
    """A client's message; raises msgspec.DecodeError/ValidationError on a bad one."""
    return _to_node.decode(body)


def decode_to_client(body: bytes) -> ToClient:
    """A node's message; raises msgspec.DecodeError/ValidationError on a bad one."""
    return _to_client.decode(body)


__all__ = [
    "KEEP",
    "CommandExit",
    "CommandInput",
    "CommandKill",
    "CommandOutput",
    "CommandRecord",
    "CommandSignal",
    "CommandStarted",
    "CommandsStored",
    "EndRun",
    "PutFile",
    "RunCommand",
    "RunEnded",
    "ToClient",
    "ToNode",
    "decode_to_client",
    "decode_to_node",
    "encode",
]
