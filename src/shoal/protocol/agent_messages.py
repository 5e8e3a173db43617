"""Messages on the WebSocket between an agent and the controller.

A WebSocket frame carries a list of messages, so a busy agent sends one frame
for many events. Every message is tagged by its class name (field ``t``).

A *deployment* is one pipeline task placed on one node: the unit the
controller prepares, starts, cancels and collects results for. Later
front-ends add message kinds here; the version is checked at ``Hello``.
"""

from __future__ import annotations

import msgspec

PROTOCOL_VERSION = 1


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


AgentMessage = StepResult | Hello | Heartbeat | DeploymentState | LogLine


# --- controller -> agent -------------------------------------------------


class Welcome(_Msg):
    """Reply to Hello: how often to beat, and which deployments to drop."""

    heartbeat_interval: float
    forget: list[str] = []


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


ControllerMessage = Welcome | Prepare | Start | Cancel | Forget
