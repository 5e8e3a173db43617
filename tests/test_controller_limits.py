"""The controller raises its own limit of open files: a connection per agent
and per relayed channel outgrow the common soft limit of 1,024."""

from __future__ import annotations

import resource
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

from processes import Controller, free_port


@contextmanager
def soft_open_files(limit: int) -> Iterator[int]:
    """Lower this process's soft limit (children inherit it) for the block; the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    try:
        yield hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.timeout(60)
def test_a_controller_started_under_a_low_soft_limit_raises_it(tmp_path: Path) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'limits.db'}"
    controller = Controller(db, free_port(), "join", tmp_path / "controller.log")
    try:
        with soft_open_files(256) as hard:
            controller.start()
        assert controller.proc is not None
        soft_now, hard_now = psutil.Process(controller.proc.pid).rlimit(psutil.RLIMIT_NOFILE)
        expected = 1 << 20 if hard == resource.RLIM_INFINITY else min(hard, 1 << 20)
        assert (soft_now, hard_now) == (expected, hard)
    finally:
        controller.stop()
