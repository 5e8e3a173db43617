"""What a running experiment needs to reach its nodes: set by the runner, read by Server."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shoal.client.commands import CommandChannel

if TYPE_CHECKING:
    from shoal.runner.command import Command


@dataclass
class RunContext:
    channel: CommandChannel
    nodes: dict[str, str]  # server id -> node name
    experiment_id: str
    raise_on_rc: bool
    running: list[Command] = field(default_factory=list)
    timers: list[threading.Timer] = field(default_factory=list)  # delayed stdin/signals
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Set when a command ends with a code other than 0: the experiment's next
    # blocking call then looks for a failure nobody has seen (raise_on_rc).
    failed: threading.Event = field(default_factory=threading.Event)


_current: RunContext | None = None


def active() -> RunContext | None:
    """The running experiment's context; None outside one (a helper called on its own)."""
    return _current


def current() -> RunContext:
    if _current is None:
        raise RuntimeError(
            "run_cmd() works inside an experiment run by `shoal exp`; "
            "define the function with @reg_exp and run the file with `shoal exp FILE`"
        )
    return _current


def activate(context: RunContext | None) -> None:
    global _current
    _current = context
