"""Basic tasks: run a shell command, sleep."""

from __future__ import annotations

import subprocess
import time

from shoal.model.pipeline import Task
from shoal.model.result import Failure, Result, Success

__all__ = ["ShellCommand", "SleepTask"]


class ShellCommand(Task):
    """Run a shell line on the node; Success(output) on exit 0, else Failure.

    ``ShellCommand("ping -c 3 example.org", timeout=30)``
    """

    def __init__(self, command: str, timeout: float | None = None, name: str | None = None) -> None:
        super().__init__(name)
        self.command = command
        self.timeout = timeout

    def run(self) -> Result:
        try:
            done = subprocess.run(
                self.command,
                shell=True,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=self.timeout,
            )
        except subprocess.TimeoutExpired:
            return Failure(f"{self.command!r} timed out after {self.timeout} s")
        if done.returncode != 0:
            return Failure(
                f"{self.command!r} exited with code {done.returncode}: {done.stderr.strip()}"
            )
        return Success(done.stdout)


class SleepTask(Task):
    """Sleep for ``seconds``; returns the seconds slept."""

    def __init__(self, seconds: float, name: str | None = None) -> None:
        super().__init__(name)
        self.seconds = seconds

    def run(self) -> float:
        time.sleep(self.seconds)
        return self.seconds
