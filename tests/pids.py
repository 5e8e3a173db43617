"""Whether a process that is not our child is alive, and waiting for it to be gone.

Used for the PostgreSQL postmaster (tests/pgserver.py) and for the processes that
made leftover network namespaces (tests/netns.py).
"""

from __future__ import annotations

import os
import select
from pathlib import Path


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie (zombies are reaped by init, not us)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    except (OSError, IndexError):  # no procfs (or odd format): fall back to kill(0)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return state not in ("Z", "X")


def wait_pid_gone(pid: int, timeout: float) -> None:
    """Wait up to ``timeout`` seconds for process ``pid`` (not our child) to exit.

    A pidfd becomes readable when the process exits: an event to wait on.
    """
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        select.select([fd], [], [], timeout)
    finally:
        os.close(fd)
