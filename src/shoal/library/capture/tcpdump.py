"""Packet capture with tcpdump (netUnicorn's ``netunicorn.library.tasks.capture.tcpdump``).

``StartCapture`` starts ``tcpdump -U -w FILE`` on the node and leaves it
running; its result is the capture's process id. ``StopNamedCapture(name)``,
later in the same pipeline, stops the capture that the step called ``name``
started, and returns once tcpdump has written the file out::

    from shoal.library.capture.tcpdump import StartCapture, StopNamedCapture

    pipeline = (
        Pipeline()
        .then(StartCapture("/tmp/run.pcap", ["-i", "any"], name="capture"))
        .then(Ping("example.org", count=5))
        .then(StopNamedCapture("capture"))
    )

A capture nobody stops runs on after its pipeline; ``StopAllTCPDumps`` stops
every tcpdump the agent's user may stop on that node.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence

from shoal.library.tasks_utils import install_if_missing
from shoal.model.architecture import Architecture
from shoal.model.node import Node
from shoal.model.pipeline import Task, TaskDispatcher
from shoal.model.result import Failure, Result, Success

__all__ = [
    "StartCapture",
    "StartCaptureLinuxImplementation",
    "StopAllTCPDumps",
    "StopAllTCPDumpsLinuxImplementation",
    "StopNamedCapture",
    "StopNamedCaptureLinuxImplementation",
]

LINUX = {Architecture.LINUX_AMD64, Architecture.LINUX_ARM64}
#: How long tcpdump gets to say it listens (netUnicorn's task waited 2 s blindly).
START_TIMEOUT = 5.0
#: How long a stopped tcpdump gets to write its file out.
STOP_TIMEOUT = 10.0
_TURN = 0.02


def _linux_only(what: str, node: Node, task: Task) -> Task:
    if node.architecture in LINUX:
        return task
    raise NotImplementedError(f"{what} is not implemented for architecture {node.architecture}")


class StartCaptureLinuxImplementation(Task):
    """Start ``tcpdump --immediate-mode [arguments] -U -w filepath``; Success
    with its pid once it listens, Failure with its messages if it ends first (a
    bad interface or filter, no permission to capture).

    ``--immediate-mode`` (not in netUnicorn's) hands each packet over as it
    comes: without it the kernel holds packets for up to a second, and those
    of the last second before a stop were never written.
    """

    requirements = [install_if_missing("tcpdump", "tcpdump")]

    def __init__(
        self, filepath: str, arguments: Sequence[str] | None = None, name: str | None = None
    ) -> None:
        if not isinstance(filepath, str | os.PathLike) or not os.fspath(filepath):
            raise TypeError(f"filepath must be a path (str), got {filepath!r}")
        if isinstance(arguments, str) or not all(isinstance(a, str) for a in arguments or []):
            raise TypeError(f"arguments must be a list of str, got {arguments!r}")
        super().__init__(name)
        self.filepath = os.fspath(filepath)
        self.arguments = list(arguments or [])

    def run(self) -> Result:
        with tempfile.TemporaryFile() as messages:
            try:
                proc = subprocess.Popen(
                    ["tcpdump", "--immediate-mode", *self.arguments, "-U", "-w", self.filepath],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=messages,
                )
            except OSError as exc:
                return Failure(f"tcpdump could not start: {exc}")
            deadline = time.monotonic() + START_TIMEOUT
            while proc.poll() is None and time.monotonic() < deadline:
                messages.seek(0)
                if b"listening on" in messages.read():
                    return Success(proc.pid)
                time.sleep(_TURN)  # tcpdump says it listens on stderr, nothing to wait on
            if proc.poll() is None:
                return Success(proc.pid)  # silent (-q and friends), but running
            messages.seek(0)
            text = messages.read().decode("utf-8", errors="replace")
        return Failure(f"tcpdump terminated with return code {proc.returncode}: {text}")


class StartCapture(TaskDispatcher):
    """Start a tcpdump capture into ``filepath`` (see the module's docstring)."""

    def __init__(
        self, filepath: str, arguments: Sequence[str] | None = None, name: str | None = None
    ) -> None:
        super().__init__(name)
        self.filepath = filepath
        self.arguments = arguments
        self.linux_implementation = StartCaptureLinuxImplementation(
            filepath, arguments, name=self.name
        )

    def dispatch(self, node: Node) -> Task:
        return _linux_only("StartCapture", node, self.linux_implementation)


def _stop(pid: int) -> bool:
    """SIGTERM ``pid`` and wait until it is gone (reaped, when it is our child);
    False if it was not there."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline:
        try:
            reaped, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # started by another process: watch it go
            if not os.path.exists(f"/proc/{pid}"):
                return True
        else:
            if reaped == pid:
                return True
        time.sleep(_TURN)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return True


class StopNamedCaptureLinuxImplementation(Task):
    """Stop the capture that the step ``capture_task_name`` started."""

    def __init__(self, capture_task_name: str, name: str | None = None) -> None:
        super().__init__(name)
        self.capture_task_name = capture_task_name

    def run(self) -> Result:
        started = self.previous_steps.get(self.capture_task_name)
        if not started:
            return Failure(f"no step named {self.capture_task_name!r} ran before this one")
        last = started[-1]
        if not last.is_success:
            return last
        pid = last.unwrap()
        if not isinstance(pid, int):
            return Failure(f"step {self.capture_task_name!r} is not a StartCapture: {last!r}")
        if not _stop(pid):
            return Failure(f"the capture of step {self.capture_task_name!r} ({pid}) had ended")
        return Success("")


class StopNamedCapture(TaskDispatcher):
    """Stop the capture the step ``start_capture_task_name`` started."""

    def __init__(self, start_capture_task_name: str, name: str | None = None) -> None:
        super().__init__(name)
        self.start_capture_task_name = start_capture_task_name
        self.linux_implementation = StopNamedCaptureLinuxImplementation(
            start_capture_task_name, name=self.name
        )

    def dispatch(self, node: Node) -> Task:
        return _linux_only("StopNamedCapture", node, self.linux_implementation)


class StopAllTCPDumpsLinuxImplementation(Task):
    """Stop every tcpdump process on the node that this agent's user may signal;
    Success with how many were stopped."""

    def run(self) -> Result:
        stopped = 0
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/comm") as comm:
                    if comm.read().strip() != "tcpdump":
                        continue
            except OSError:
                continue  # gone meanwhile
            with contextlib.suppress(PermissionError):
                stopped += _stop(int(entry))
        return Success(stopped)


class StopAllTCPDumps(TaskDispatcher):
    """Stop every tcpdump on the node (see :class:`StopAllTCPDumpsLinuxImplementation`)."""

    def __init__(self, name: str | None = None) -> None:
        super().__init__(name)
        self.linux_implementation = StopAllTCPDumpsLinuxImplementation(name=self.name)

    def dispatch(self, node: Node) -> Task:
        return _linux_only("StopAllTCPDumps", node, self.linux_implementation)
