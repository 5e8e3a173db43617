"""What a node keeps of its runs' commands until the controller has stored them.

The controller writes a command's record from the node's reports some time
after the command ends. A report lost on its way (the connection dropped with
it in a buffer) or a controller that died before the write would lose the
record, though the command ran. So the node keeps each run command's record
(what it is, the first ``KEEP`` bytes of each stream, how it ended) until
the controller confirms it stored it, and sends every one it still keeps
again, whole, after each reconnect.

What is kept is bounded: a node cut off from its controller for long keeps
the newest ``MAX_RECORDS`` records and at most ``MAX_BYTES`` of their output,
and says in its log which it gave up.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from shoal.protocol import command_messages as cm

log = logging.getLogger("shoal.agent")
MAX_RECORDS = 4096
MAX_BYTES = 64 * 1024 * 1024


@dataclass
class _Kept:
    record: str
    command: str
    run: str
    cmd: str
    opener: str
    started_at: float
    pid: int | None = None
    stdout: bytearray = field(default_factory=bytearray)
    stderr: bytearray = field(default_factory=bytearray)
    truncated: bool = False
    ended: cm.CommandExit | None = None
    finished_at: float = 0.0

    def message(self) -> cm.CommandRecord:
        ended = self.ended
        return cm.CommandRecord(
            record=self.record,
            command=self.command,
            run=self.run,
            cmd=self.cmd,
            opener=self.opener,
            pid=self.pid,
            started_at=self.started_at,
            stdout=bytes(self.stdout),
            stderr=bytes(self.stderr),
            truncated=self.truncated,
            ended=ended is not None,
            finished_at=self.finished_at,
            code=ended.code if ended is not None else None,
            error=ended.error if ended is not None else None,
        )


class CommandLedger:
    """The records of this node's run commands that the controller has not
    confirmed yet. ``clock()`` is the controller's time, as this node knows it."""

    def __init__(
        self,
        clock: Callable[[], float],
        max_records: int = MAX_RECORDS,
        max_bytes: int = MAX_BYTES,
    ) -> None:
        self.clock = clock
        self.max_records = max_records
        self.max_bytes = max_bytes
        self._kept: dict[str, _Kept] = {}  # record id -> (oldest first)
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._kept)

    @staticmethod
    def new_id() -> str:
        """A fresh id for a record (the controller files it under this node's name)."""
        return secrets.token_hex(16)

    def started(
        self, record: str, command: str, run: str, cmd: str, opener: str, pid: int | None
    ) -> None:
        self._kept[record] = _Kept(record, command, run, cmd, opener, self.clock(), pid)
        self._bound()

    def output(self, record: str, stream: str, data: bytes) -> None:
        """``data`` as reported: at most one byte past ``KEEP`` in all, which marks
        the record truncated."""
        kept = self._kept.get(record)
        if kept is None:
            return
        buffer = kept.stdout if stream == "stdout" else kept.stderr
        room = max(cm.KEEP - len(buffer), 0)
        buffer += data[:room]
        self._bytes += min(len(data), room)
        if len(data) > room:
            kept.truncated = True
        self._bound()

    def ended(self, record: str, exit_message: cm.CommandExit) -> None:
        kept = self._kept.get(record)
        if kept is not None:
            kept.ended = exit_message
            kept.finished_at = self.clock()

    def stored(self, records: Iterable[str]) -> None:
        """The controller stored these (or refused them for good): forget them."""
        for record in records:
            kept = self._kept.pop(record, None)
            if kept is not None:
                self._bytes -= len(kept.stdout) + len(kept.stderr)

    def messages(self) -> list[cm.CommandRecord]:
        """Every record kept, whole, oldest first: what to send after a reconnect."""
        return [kept.message() for kept in self._kept.values()]

    def _bound(self) -> None:
        while len(self._kept) > self.max_records or (
            self._bytes > self.max_bytes and len(self._kept) > 1
        ):
            oldest = next(iter(self._kept.values()))
            log.warning(
                "gave up the record of command %s (%r) of run %s: the controller has not "
                "confirmed %d records (%d bytes of output) kept here",
                oldest.command,
                oldest.cmd[:80],
                oldest.run,
                len(self._kept),
                self._bytes,
            )
            self.stored([oldest.record])
