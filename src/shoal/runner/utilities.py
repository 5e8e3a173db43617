"""Helpers for experiment functions: ``sleep``, ``log``, ``counter``, ``IterClassGen``, ..."""

from __future__ import annotations

import functools
import itertools
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from shoal.runner.command import wait_watching

T = TypeVar("T")

# distexprunner's level for log(): above CRITICAL, so it shows at every verbosity.
LOG_LEVEL_CMD = 99
logging.addLevelName(LOG_LEVEL_CMD, "LOG")
_log = logging.getLogger("shoal.runner.experiment")

GDB = "gdb -quiet --ex run --args"
"""Run a command under gdb: ``s.run_cmd(f"{GDB} ./server", stdin=StdinController())``."""


def SOCKET_BIND(nodes: int | str) -> str:
    """A ``numactl`` prefix binding a command's cpus and memory to NUMA node(s) ``nodes``."""
    return f"numactl --cpunodebind={nodes} --membind={nodes}"


def sleep(delay: float) -> None:
    """Sleep while command output keeps flowing (it is read on another thread).

    With raise_on_rc=True a command that fails meanwhile, unseen, ends the sleep
    with BadReturnCode, as distexprunner's did.
    """
    wait_watching(threading.Event(), delay)


def log(message: object = "", *more: object) -> None:
    """Log a message from an experiment; shown at every verbosity and in --log files."""
    _log.log(LOG_LEVEL_CMD, " ".join(str(a) for a in (message, *more)))


def counter(start: int = 0, step: int = 1) -> Iterator[int]:
    """Numbers from ``start``: ``c = counter(); next(c) == 0; next(c) == 1``."""
    return itertools.count(start=start, step=step)


class IterClassGen(Generic[T]):
    """Makes a new ``cls(*args, **kwargs)`` on each ``next()`` and keeps them all::

    csvs = IterClassGen(CSVGenerator, r"value=(?P<value>\\d+)")
    for s in servers:
        s.run_cmd("./bench", stdout=next(csvs)).wait()
    for csv in csvs:
        csv.write("results.csv")
    """

    def __init__(self, cls: Callable[..., T], *args: Any, **kwargs: Any) -> None:
        self._factory = functools.partial(cls, *args, **kwargs)
        self._instances: list[T] = []

    def __next__(self) -> T:
        instance = self._factory()
        self._instances.append(instance)
        return instance

    def __getitem__(self, index: int) -> T:
        return self._instances[index]

    def __iter__(self) -> Iterator[T]:
        return iter(self._instances)

    def __len__(self) -> int:
        return len(self._instances)
