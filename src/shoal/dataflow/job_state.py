"""What the coordinator knows of one job of a running network."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from shoal.dataflow.control_link import ControlLink
from shoal.dataflow.jobs import BaseJob


@dataclass
class JobState:
    """One job's placement, connection and progress, as the coordinator sees them."""

    job: BaseJob
    local: bool
    generation: int = 0
    node: str | None = None
    experiment: str | None = None
    status: str = "pending"
    conn: ControlLink | None = None
    restarts: list[str] = field(default_factory=list)
    unstarted: int = 0  # placements in a row that never started
    ready: bool = False
    started_at: float = 0.0
    output: Any = None
    rounds: int = 0
    errors: int = 0
    last_error: str | None = None

    def send(self, message: Any) -> None:
        """Send a control message to the job's host, if it is connected."""
        conn = self.conn
        if conn is None:
            return
        # On error its reader notices the drop and fails the job over.
        with contextlib.suppress(OSError):
            conn.send(message)
