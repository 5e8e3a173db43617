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


_current: RunContext | None = None


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
