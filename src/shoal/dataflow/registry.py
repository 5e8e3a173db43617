"""The process-wide caches FISSION kept in ``fission.core.base``.

FISSION remembered every pipe by id (so ``PicklePipe(5)`` written in two jobs
is one object), every job by id and every node by host, and its tests call
``reset()`` between cases so that ids used in one test do not leak into the
next. shoal keeps the same four dicts here; :mod:`shoal.dataflow.base` offers
them under FISSION's module name.

The dicts are cleared in place, never replaced, so a name imported with
``from shoal.dataflow.base import PIPES`` stays the live cache after a reset
(FISSION rebound them, which left such imports pointing at the old dict).
"""

from __future__ import annotations

import itertools
import threading
from typing import Any

__all__ = ["GROUPS", "JOBS", "NODES", "PIPES", "next_job_id", "renumber_job", "reset"]

# {group name: group}: FISSION filled it while building a network; shoal has
# no group objects, so it stays empty unless user code fills it.
GROUPS: dict[str, Any] = {}
# {host: the node last made for it}
NODES: dict[str, Any] = {}
# {pipe id: the pipe object every ``SomePipe(id)`` returns}
PIPES: dict[int, Any] = {}
# {job id: job}; ids count from 1 in the order jobs are made
JOBS: dict[int, Any] = {}

_lock = threading.Lock()
_ids = itertools.count(1)


def next_job_id() -> int:
    """The id the next job made gets (1, 2, ... until :func:`reset`)."""
    with _lock:
        return next(_ids)


def renumber_job(job: Any, new_id: int) -> None:
    """Give ``job`` the id ``new_id`` and keep ``JOBS`` pointing at it under that id.

    Loading a network numbers its jobs by their place in ``JOBS`` (the
    config's list); a job made in another order had a different id before.
    """
    old = getattr(job, "id", None)
    if old is not None and JOBS.get(old) is job:
        del JOBS[old]
    job.id = new_id
    JOBS[new_id] = job


def reset() -> None:
    """Forget every cached pipe, job, node and group, and count job ids from 1 again.

    Objects already made keep working (a config's jobs are still in its
    ``JOBS`` list); only the caches forget them, so a pipe id used before
    makes a new pipe afterwards.
    """
    global _ids
    with _lock:
        GROUPS.clear()
        NODES.clear()
        PIPES.clear()
        JOBS.clear()
        _ids = itertools.count(1)
