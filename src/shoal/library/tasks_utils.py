"""Helpers for writing tasks (netUnicorn's ``netunicorn.library.tasks.tasks_utils``)."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

from shoal.model.result import Failure, Result, Success

__all__ = ["install_if_missing", "subprocess_run"]


def subprocess_run(arguments: Sequence[str], timeout: float | None = None) -> Result:
    """Run a program with ``arguments`` (no shell): Success on exit 0, else Failure.

    Either holds netUnicorn's text: the standard output followed by a newline
    (when there was any), then the standard error. A program that cannot start,
    or runs past ``timeout`` seconds (killed then), is a Failure saying so.
    """
    argv = list(arguments)
    try:
        done = subprocess.run(argv, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return Failure(f"{argv!r} timed out after {timeout} s")
    except OSError as exc:  # no such program, not executable, ...
        return Failure(f"{argv!r} could not start: {exc}")
    text = ""
    if done.stdout:
        text = done.stdout.decode("utf-8", errors="replace") + "\n"
    if done.stderr:
        text += done.stderr.decode("utf-8", errors="replace")
    return Success(text) if done.returncode == 0 else Failure(text)


def install_if_missing(program: str, package: str) -> str:
    """A requirement (a shell line) that installs Debian's ``package`` when
    ``program`` is not on the node yet; as root without sudo, or with it.

    netUnicorn's library tasks install unconditionally inside their Docker
    image; a shoal node is the machine itself, where the program is usually
    there already and installing it every run would need the network.
    """
    install = f"apt-get install -y -q {package}"
    return (
        f"command -v {program} >/dev/null 2>&1 || "
        f'{{ if [ "$(id -u)" = 0 ]; then {install}; else sudo {install}; fi; }}'
    )
