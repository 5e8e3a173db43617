"""Messages on the WebSocket between an agent and the controller.

A WebSocket frame carries a list of messages, so a busy agent sends one frame
for many events. Every message is tagged by its class name (field ``t``).

A *deployment* is one pipeline task placed on one node: the unit the
controller prepares, starts, cancels and collects results for. Later
front-ends add message kinds here; the version is checked at ``Hello``.
"""

from __future__ import annotations

import msgspec

from shoal.protocol.flag_messages import FlagAnswer, FlagCall
from shoal.protocol.graph_messages import (
    GraphCancel,
    GraphDone,
    GraphFree,
    GraphRun,
)

# 2: executors' flag calls over the agent's connection (FlagCall)
# 3: channels (Hello.channel_port, ChannelOffer)
PROTOCOL_VERSION = 3


class _Msg(msgspec.Struct, tag_field="t", tag=True, omit_defaults=True):
    pass


# --- agent -> controller -------------------------------------------------


class StepResult(_Msg):
    """One finished step of a pipeline; ``payload`` is the pickled Result."""

    deployment: str
    index: int
    task_name: str
    ok: bool
    payload: bytes
    text: str


class DeploymentReport(msgspec.Struct, omit_defaults=True):
    """Everything an agent holds about one deployment, sent on (re)connect."""

    id: str
    state: str
    error: str | None = None
    steps: list[StepResult] = []
    result: bytes | None = None
    result_text: str | None = None


class Hello(_Msg):
    """First message of a connection: who the node is and what it holds."""

    name: str
    version: int
    architecture: str
    cpus: int
    properties: dict[str, str] = {}
    deployments: list[DeploymentReport] = []
    commands: list[str] = []  # ids of the commands still running here
    data_host: str = ""  # the address its channel server is on, when set by hand ("": as seen)
    channel_port: int = 0  # where its channel server listens, on data_host (0: nowhere)


class Heartbeat(_Msg):
    cpu: float
    memory: float
    memory_used: int
    load: float


class DeploymentState(_Msg):
    """A deployment moved to ``state`` (prepared, running, finished, failed...)."""

    deployment: str
    state: str
    error: str | None = None
    result: bytes | None = None
    result_text: str | None = None


class LogLine(_Msg):
    deployment: str
    stream: str
    line: str
    ts: float


# --- commands: processes with live stdio, driven by a client ---------------
# These travel agent <-> controller and controller <-> client alike; the
# command id is chosen by the client and unique across the controller.


class CommandStarted(_Msg):
    command: str
    pid: int


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


AgentMessage = (
    StepResult
    | Hello
    | Heartbeat
    | DeploymentState
    | LogLine
    | CommandStarted
    | CommandOutput
    | CommandExit
    | GraphDone
    | FlagCall
)


# --- controller -> agent -------------------------------------------------


class Welcome(_Msg):
    """Reply to Hello: how often to beat, which deployments to drop, and (at
    enrollment) the node's own credential, to show instead of the join token."""

    heartbeat_interval: float
    forget: list[str] = []
    data_key: bytes = b""  # this agent's key: checks the capabilities peers present
    clock: float = 0.0  # the controller's time.time(): capabilities expire by it
    graph_epoch: str = ""  # changes when the controller restarts: old graph state is void
    credential: str = ""  # given once, to a node that enrolled with the join token now


class ChannelOffer(_Msg):
    """Someone opens a channel to this node through the controller: take it by
    opening ``/api/channels/target/{ticket}`` (the ticket is good once, briefly)."""

    channel: str
    ticket: str


class Prepare(_Msg):
    """Run the requirements, start an executor and load the pipeline into it."""

    deployment: str
    experiment: str
    pipeline: bytes
    requirements: list[str] = []
    env: dict[str, str] = {}


class Start(_Msg):
    deployment: str


class Cancel(_Msg):
    deployment: str


class Forget(_Msg):
    """The controller stored the final state of a deployment durably."""

    deployment: str


class RunCommand(_Msg):
    """Run ``cmd`` (a shell line) on a node, in its own process group.

    ``window`` is how many output bytes may be in flight before the node waits
    for the client to acknowledge them (back-pressure for chatty commands).
    """

    command: str
    cmd: str
    node: str = ""
    experiment: str = ""
    env: dict[str, str] = {}
    cwd: str | None = None
    timeout: float | None = None
    stdin: bytes | None = None  # given: written and closed; None: the pipe stays open
    window: int = 4 * 1024 * 1024


class CommandInput(_Msg):
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


class CommandAck(_Msg):
    """The client consumed ``consumed`` more bytes of the command's output."""

    command: str
    consumed: int


class PutFile(_Msg):
    """Write ``data`` to ``path`` on the node; answered by CommandExit (code 0 or error)."""

    command: str
    path: str
    data: bytes
    node: str = ""
    mode: int | None = None


ControllerMessage = (
    Welcome
    | ChannelOffer
    | Prepare
    | Start
    | Cancel
    | Forget
    | RunCommand
    | CommandInput
    | CommandSignal
    | CommandKill
    | CommandAck
    | PutFile
    | GraphRun
    | GraphCancel
    | GraphFree
    | FlagAnswer
)

# What a client sends on its command stream, and what it gets back.
ClientMessage = RunCommand | CommandInput | CommandSignal | CommandKill | CommandAck | PutFile
ClientEvent = CommandStarted | CommandOutput | CommandExit
