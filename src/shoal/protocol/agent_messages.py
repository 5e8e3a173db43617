"""Messages on the WebSocket between an agent and the controller.

A WebSocket frame carries a list of messages, so a busy agent sends one frame
for many events. Every message is tagged by its class name (field ``t``).

A *deployment* is one pipeline task placed on one node: the unit the
controller prepares, starts, cancels and collects results for. Later
front-ends add message kinds here; the version is checked at ``Hello``.
"""

from __future__ import annotations

import msgspec

from shoal.protocol.command_messages import (
    CommandExit,
    CommandOutput,
    CommandRecord,
    CommandsStored,
    CommandStarted,
    EndRun,
    RunEnded,
)
from shoal.protocol.flag_messages import FlagAnswer, FlagCall
from shoal.protocol.graph_messages import (
    GraphCancel,
    GraphDone,
    GraphFree,
    GraphPrefetch,
    GraphPrefetched,
    GraphRun,
)

# 2: executors' flag calls over the agent's connection (FlagCall)
# 3: channels (Hello.channel_port, ChannelOffer)
# 4: commands run over channels; agents report them (command_messages, EndRun)
# 5: CloseChannels (by the tag of a revoked token) replaces CloseCommands
# 6: graph inputs fetched ahead of their task (GraphPrefetch, GraphPrefetched)
# 7: a run's command records kept by the node until stored (CommandRecord, CommandsStored)
PROTOCOL_VERSION = 7


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


AgentMessage = (
    StepResult
    | Hello
    | Heartbeat
    | DeploymentState
    | LogLine
    | CommandStarted
    | CommandOutput
    | CommandExit
    | CommandRecord
    | RunEnded
    | GraphDone
    | GraphPrefetched
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


class CloseChannels(_Msg):
    """The token tagged ``token`` (see ``capabilities.token_tag``) was revoked:
    close every channel this node serves whose capability carries that tag,
    saying ``reason`` (a command's channel ends its command with it)."""

    token: str
    reason: str


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


ControllerMessage = (
    Welcome
    | ChannelOffer
    | Prepare
    | Start
    | Cancel
    | Forget
    | EndRun
    | CommandsStored
    | CloseChannels
    | GraphRun
    | GraphCancel
    | GraphFree
    | GraphPrefetch
    | FlagAnswer
)
