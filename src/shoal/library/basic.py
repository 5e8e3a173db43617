"""Basic tasks: run a command, sleep, do nothing."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Sequence
from datetime import datetime

from shoal.library.tasks_utils import subprocess_run
from shoal.model.pipeline import Task
from shoal.model.result import Failure, Result, Success

__all__ = ["DummyTask", "ShellCommand", "SleepTask", "SleepUntilTask"]


class ShellCommand(Task):
    """Run a command on the node; Success on exit 0, else Failure.

    Two forms, as in netUnicorn's library:

    - an argument list, ``ShellCommand(["ping", "-c", "3", "example.org"])``,
      runs that program with those arguments, no shell involved. The result's
      value is netUnicorn's text: the standard output followed by a newline
      (when there was any output), then the standard error, as one str; the
      same text is the Failure's error when the command exits non-zero;
    - a string, ``ShellCommand("ping -c 3 example.org | tail -1")``, is a shell
      line. Its Success holds the standard output as str (netUnicorn's gives
      bytes); a non-zero exit is a Failure naming the code, with the standard
      error.

    ``timeout`` (seconds) ends the command and fails the step.
    """

    def __init__(
        self,
        command: str | Sequence[str | os.PathLike[str]],
        name: str | None = None,
        *,
        timeout: float | None = None,
    ) -> None:
        super().__init__(name)
        if not isinstance(command, str):
            if isinstance(command, bytes) or not isinstance(command, Sequence):
                raise TypeError(
                    f"command must be a shell line (str) or an argument list, got {command!r}"
                )
            if not command:
                raise ValueError("the argument list is empty: it needs at least the program")
            for argument in command:
                if not isinstance(argument, str | os.PathLike):
                    raise TypeError(f"argument {argument!r} of {command!r} is not a str")
            command = [os.fspath(argument) for argument in command]
        self.command = command
        self.timeout = timeout

    def run(self) -> Result:
        if isinstance(self.command, str):
            return self._run_shell_line(self.command)
        return self._run_argv(self.command)

    def _run_argv(self, argv: list[str]) -> Result:
        return subprocess_run(argv, self.timeout)

    def _run_shell_line(self, line: str) -> Result:
        try:
            done = subprocess.run(
                line,
                shell=True,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=self.timeout,
            )
        except subprocess.TimeoutExpired:
            return Failure(f"{line!r} timed out after {self.timeout} s")
        if done.returncode != 0:
            return Failure(f"{line!r} exited with code {done.returncode}: {done.stderr.strip()}")
        return Success(done.stdout)


class SleepTask(Task):
    """Sleep for ``seconds``; returns the seconds slept."""

    def __init__(self, seconds: float, name: str | None = None) -> None:
        super().__init__(name)
        self.seconds = seconds

    def run(self) -> float:
        time.sleep(self.seconds)
        return self.seconds


class SleepUntilTask(Task):
    """Sleep until ``target_datetime`` (the node's clock; a naive datetime is
    the node's local time); returns the seconds slept, 0 if it had passed."""

    def __init__(self, target_datetime: datetime, name: str | None = None) -> None:
        super().__init__(name)
        if not isinstance(target_datetime, datetime):
            raise TypeError(f"target_datetime must be a datetime, got {target_datetime!r}")
        self.target_datetime = target_datetime

    def run(self) -> float:
        # now() in the target's own zone, so an aware target compares correctly
        left = (self.target_datetime - datetime.now(self.target_datetime.tzinfo)).total_seconds()
        if left <= 0:
            return 0
        time.sleep(left)
        return left


class DummyTask(Task):
    """Does nothing and succeeds: returns True (a placeholder step)."""

    def run(self) -> bool:
        return True
