"""Working with several commands at once: ``ProcessGroup``, ``run_on_all``, ``any_failed``."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING

from shoal.runner.actions import ReturnCode

if TYPE_CHECKING:
    from shoal.runner.command import Command, Signal
    from shoal.runner.server import Server

Code = int | ReturnCode | None


class ProcessGroup:
    """Commands started together and waited for together::

    procs = ProcessGroup()
    for s in servers:
        procs.add(s.run_cmd("./worker"))
    procs.wait()               # every return code; raises unless all are 0
    """

    def __init__(self) -> None:
        self._procs: list[Command] = []

    def add(self, p: Command) -> None:
        self._procs.append(p)

    def wait(self, verify_rc: bool = True) -> list[Code]:
        """Wait for all; their return codes. ``verify_rc``: fail unless every code is 0."""
        codes = [p.wait() for p in self._procs]
        if verify_rc and any(code != 0 for code in codes):
            failed = ", ".join(
                f"{p.server.id}: {p.cmd!r} returned {code}"
                for p, code in zip(self._procs, codes, strict=True)
                if code != 0
            )
            # AssertionError as distexprunner's assert raised, but also under python -O.
            raise AssertionError(f"not every command of the group succeeded: {failed}")
        return codes

    def has_timeout(self) -> bool:
        """Wait for all; whether any of them ran out of time (``ReturnCode.TIMEOUT``)."""
        return any(p.wait() == ReturnCode.TIMEOUT for p in self._procs)

    def signal(self, signal: Signal) -> None:
        """Send ``signal`` (a number or a name) to every command of the group."""
        for p in self._procs:
            p.signal(signal)

    def __iter__(self) -> Iterator[Command]:
        return iter(self._procs)

    def __getitem__(self, index: int) -> Command:
        return self._procs[index]

    def __len__(self) -> int:
        return len(self._procs)


def run_on_all(
    servers: Iterable[Server],
    cmd: str,
    verify_rc: bool = True,
    env: Mapping[str, object] | None = None,
) -> list[Code]:
    """Run ``cmd`` on every server at once; wait for all; their return codes."""
    procs = ProcessGroup()
    for s in servers:
        procs.add(s.run_cmd(cmd, env=dict(env or {})))
    return procs.wait(verify_rc=verify_rc)


def any_failed(cmds: Iterable[Command], poll_interval: float = 1) -> Code | bool:
    """Wait until one command fails or all succeed: the first non-zero code, or False.

    A failure is noticed as soon as the command it waits on ends, any other
    within ``poll_interval`` seconds.
    """
    commands = list(cmds)
    while True:
        codes = [c.wait(block=False) for c in commands]
        for code in codes:
            if code is not None and code != 0:
                return code
        pending = [c for c, code in zip(commands, codes, strict=True) if code is None]
        if not pending:
            return False
        # distexprunner slept here, and a failed command elsewhere stopped it (raise_on_rc).
        pending[0].ended(timeout=poll_interval, watch=True)
