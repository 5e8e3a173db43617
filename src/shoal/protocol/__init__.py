"""Wire messages between controller, agents and executors, and their codecs.

Imports nothing else of shoal, so both ends can depend on it.
"""

from shoal.protocol.agent_messages import (
    PROTOCOL_VERSION,
    AgentMessage,
    Cancel,
    ControllerMessage,
    DeploymentReport,
    DeploymentState,
    Forget,
    Heartbeat,
    Hello,
    LogLine,
    Prepare,
    Start,
    StepResult,
    Welcome,
)
from shoal.protocol.codec import FrameDecoder, FrameEncoder
from shoal.protocol.command_messages import (
    CommandExit,
    CommandKill,
    CommandOutput,
    CommandStarted,
)

__all__ = [
    "PROTOCOL_VERSION",
    "AgentMessage",
    "Cancel",
    "CommandExit",
    "CommandKill",
    "CommandOutput",
    "CommandStarted",
    "ControllerMessage",
    "DeploymentReport",
    "DeploymentState",
    "Forget",
    "FrameDecoder",
    "FrameEncoder",
    "Heartbeat",
    "Hello",
    "LogLine",
    "Prepare",
    "Start",
    "StepResult",
    "Welcome",
]
