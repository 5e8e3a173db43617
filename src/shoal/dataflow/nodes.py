"""Nodes of a network (``NODES`` in a config) and what allocation knows of them."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from shoal.dataflow import registry

__all__ = ["BaseNode", "LocalNode", "MultiNode", "NodeInfo", "tq_of"]


class BaseNode:
    """A node of the network, by shoal node name or by one of its IP addresses.

    FISSION's signature works, positionally too: ``BaseNode(host, port=None,
    cpus=0, depends=[], setup_args=(), name="")``. ``cpus=n`` caps how many
    jobs the node runs at once, as FISSION's dispy did; ``port``, ``depends``
    and ``setup_args`` (dispy's) are accepted and unused; ``name`` is a
    display name. shoal's keywords: ``groups`` (default: the class's
    ``GROUPS``, ``["ALL"]``) are the job groups it serves (groups an agent
    reports in its ``groups`` property are added); ``max_jobs`` caps the jobs
    (None: no cap). A string or list as the second positional argument is
    taken as ``groups`` (an int or None is FISSION's ``port``).
    """

    GROUPS: ClassVar[list[str] | str] = ["ALL"]

    def __init__(
        self,
        host: str,
        port: int | str | list[str] | tuple[str, ...] | None = None,
        cpus: int | None = 0,
        depends: Any = (),
        setup_args: Any = (),
        name: str = "",
        *,
        groups: list[str] | str | None = None,
        max_jobs: int | None = None,
    ) -> None:
        if not isinstance(host, str) or not host:
            raise TypeError(f"a node is named by a non-empty string, got {host!r}")
        if isinstance(port, str | list | tuple):
            # shoal's older positional form, BaseNode(host, groups, max_jobs):
            # a port is a number, so text or a list can only be groups.
            if groups is not None:
                raise TypeError(f"node {host}: groups given twice ({port!r} and {groups!r})")
            groups, port = port, None
        if port is not None and (isinstance(port, bool) or not isinstance(port, int)):
            raise TypeError(f"node {host}: port must be an int or None, got {port!r}")
        if cpus is not None and (isinstance(cpus, bool) or not isinstance(cpus, int) or cpus < 0):
            raise ValueError(f"node {host}: cpus must be an int >= 0, got {cpus!r}")
        self.name = host
        self.ip = host
        self.port = port
        self.depends = depends
        self.setup_args = setup_args
        self.display_name = name or host
        self.groups = as_groups(self.GROUPS if groups is None else groups)
        if max_jobs is None and cpus:
            max_jobs = cpus
        if max_jobs is not None and (not isinstance(max_jobs, int) or max_jobs < 1):
            raise ValueError(f"node {host}: max_jobs must be a positive int or None")
        self.max_jobs = max_jobs
        registry.NODES[host] = self  # FISSION's cache by host, for code that reads it

    def matches(self, name: str, addresses: list[str]) -> bool:
        """True when the live node ``name`` (with ``addresses``) is this entry."""
        return self.name == name or self.name in addresses

    def sample_names(self) -> list[str]:
        """Agent names that stand for this entry in ``simulate``."""
        return [self.name]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, groups={self.groups})"


class MultiNode(BaseNode):
    """Every node whose name or address matches a pattern (``*``, ``?``, ``[...]``).

    ``MultiNode("192.168.4.*")`` takes in each node of that subnet as it comes
    online, with this entry's ``groups`` and ``max_jobs``, as FISSION's
    MultiNode let dispy discover them. ``simulate`` starts two agents for it.
    """

    def matches(self, name: str, addresses: list[str]) -> bool:
        return any(fnmatch.fnmatchcase(candidate, self.name) for candidate in [name, *addresses])

    def sample_names(self) -> list[str]:
        names = []
        for n in (1, 2):
            text = re.sub(r"\[[^\]]*\]", str(n), self.name)
            names.append(text.replace("*", str(n)).replace("?", str(n)))
        return list(dict.fromkeys(names))


class LocalNode(BaseNode):
    """The client machine (group ``LOCAL``). shoal always has it: listing it changes nothing."""

    GROUPS: ClassVar[list[str] | str] = "LOCAL"

    def __init__(self, host: str = "localhost", name: str = "LocalNode", **kwargs: Any) -> None:
        super().__init__(host, name=name, **kwargs)


def as_groups(groups: list[str] | tuple[str, ...] | str) -> list[str]:
    """A group list from the forms users write: ``"HAS_MIC"`` or ``["HAS_MIC", "ALL"]``."""
    if isinstance(groups, str):
        return [groups]
    if not isinstance(groups, list | tuple) or not all(isinstance(g, str) for g in groups):
        raise TypeError(f"groups are a string or a list of strings, got {groups!r}")
    return list(groups)


def parse_property_groups(value: Any) -> list[str]:
    """Groups from an agent property: ``"A,B"``, ``"['A', 'B']"`` or a list."""
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    if not isinstance(value, str):
        return []
    text = value.strip().strip("[]")
    return [part.strip().strip("'\"") for part in text.split(",") if part.strip().strip("'\"")]


# BATMAN's transmit quality (TQ) scale, which FISSION's NodeInfo.TQ is on.
TQ_MAX = 255.0


@dataclass
class NodeInfo:
    """A node as a job's ``preference(nodes)`` hook sees it, from live agent reports.

    FISSION's fields, with FISSION's (dispy's) meaning: ``cpu`` is the cpu
    share *available* in percent, ``memory`` the memory *available* in bytes,
    ``disk`` the disk space available in bytes (None when the agent does not
    report it), ``swap`` the swap *in use* in percent (0 when not reported),
    ``TQ`` the average link quality (0..255, BATMAN's scale) to the nodes
    the job's neighbours run on, and ``_node`` the node (its
    :class:`BaseNode` entry).

    shoal's fields besides: ``cpu_used`` and ``memory_used`` (percent in
    use), ``memory_free`` (bytes, the same as ``memory``), ``load`` (the
    one-minute load average per cpu), ``jobs`` (how many jobs of this network
    run there), ``links`` (link quality to the job's neighbours' nodes where
    the agents report it, by node name), ``addresses`` and ``properties``.

    Built by hand, either form of a pair fills the other: ``cpu=95`` gives
    ``cpu_used=5``; ``memory_free=2 << 30`` gives ``memory=2 << 30``.
    """

    name: str
    groups: list[str] = field(default_factory=lambda: ["ALL"])
    cpus: int = 1
    cpu: float | None = None
    memory: int | None = None
    disk: int | None = None
    swap: float = 0.0
    TQ: float = TQ_MAX
    cpu_used: float | None = None
    memory_used: float | None = None
    memory_free: int | None = None
    load: float = 0.0
    jobs: int = 0
    max_jobs: int | None = None
    links: dict[str, float] = field(default_factory=dict)
    addresses: list[str] = field(default_factory=list)
    properties: dict[str, Any] = field(default_factory=dict)
    _node: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Each pair says the same thing two ways; fill whichever was left out.
        if self.cpu is None:
            self.cpu_used = 0.0 if self.cpu_used is None else float(self.cpu_used)
            self.cpu = max(100.0 - self.cpu_used, 0.0)
        elif self.cpu_used is None:
            self.cpu_used = max(100.0 - float(self.cpu), 0.0)
        if self.memory is None:
            self.memory = self.memory_free
        elif self.memory_free is None:
            self.memory_free = self.memory
        if self._node is None:
            cap = self.max_jobs if isinstance(self.max_jobs, int) and self.max_jobs > 0 else None
            self._node = BaseNode(self.name, groups=list(self.groups), max_jobs=cap)

    @property
    def node(self) -> Any:
        """The node this describes (FISSION's ``_node``)."""
        return self._node

    @property
    def free(self) -> bool:
        """True while the node can take another job."""
        return self.max_jobs is None or self.jobs < self.max_jobs

    @property
    def busy(self) -> float:
        """How loaded the node is, for "least loaded" (lower is better)."""
        return self.jobs / max(self.cpus, 1) + self.load

    def __repr__(self) -> str:
        return (
            f"NodeInfo({self.name!r}, groups={self.groups}, jobs={self.jobs}, "
            f"load={self.load:.2f}, cpu={self.cpu:.0f}% free, TQ={self.TQ:.0f})"
        )


def tq_of(quality: float) -> float:
    """A link quality on BATMAN's 0..255 TQ scale.

    shoal's ``links`` values are fractions (0..1, 1 the best link); a value
    above 1 is taken as already on the TQ scale. Clamped to 0..255.
    """
    value = float(quality)
    if value <= 1.0:
        value *= TQ_MAX
    return min(max(value, 0.0), TQ_MAX)
