"""The live state of unfinished experiments, as the controller keeps it in memory."""

from __future__ import annotations

from dataclasses import dataclass, field

from shoal.controller.errors import bad_request
from shoal.model.experiment import FINAL_DEPLOYMENT_STATES

TERMINAL_DEPLOYMENT = FINAL_DEPLOYMENT_STATES
TERMINAL_EXPERIMENT = frozenset({"FINISHED", "FAILED", "CANCELLED"})
MAX_NAME = 200
RECONNECT_GRACE = 10.0


@dataclass
class LiveDeployment:
    id: str
    experiment_id: str
    node: str
    state: str
    prepared: bool


@dataclass
class LiveExperiment:
    id: str
    owner_id: int
    name: str
    status: str
    deployments: dict[str, LiveDeployment] = field(default_factory=dict)


@dataclass
class NewDeployment:
    node: str
    pipeline: bytes
    requirements: list[str]
    environment: dict[str, str] = field(default_factory=dict)  # set in its executor


def check_name(name: str) -> None:
    if not name or len(name) > MAX_NAME:
        raise bad_request(f"experiment name must be 1 to {MAX_NAME} characters")
    if "/" in name or any(ord(ch) < 32 for ch in name):
        raise bad_request(f"experiment name {name!r} may not contain '/' or control characters")
