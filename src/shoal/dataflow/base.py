"""FISSION's ``fission.core.base`` under shoal: the caches, ``reset`` and the base classes.

Network tests written for FISSION import from here::

    from shoal.dataflow.base import PIPES, reset    # was: from fission.core.base import ...

``PIPES`` maps pipe ids to the cached pipes, ``JOBS`` job ids to jobs,
``NODES`` hosts to nodes; ``GROUPS`` stays empty (shoal has no group
objects). ``reset()`` clears them all and counts job ids from 1 again.
"""

from __future__ import annotations

from shoal.dataflow.jobs import BaseJob
from shoal.dataflow.nodes import BaseNode
from shoal.dataflow.pipes import BasePipe
from shoal.dataflow.registry import GROUPS, JOBS, NODES, PIPES, reset

__all__ = ["GROUPS", "JOBS", "NODES", "PIPES", "BaseJob", "BaseNode", "BasePipe", "reset"]
