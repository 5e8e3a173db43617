"""Nodes of a network (``NODES`` in a config) and what allocation knows of them."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

__all__ = ["BaseNode", "LocalNode", "MultiNode", "NodeInfo"]


class BaseNode:
    """A node of the network, by shoal node name or by one of its IP addresses.

    ``groups`` (default: the class's ``GROUPS``, ``["ALL"]``) are the job groups
    it serves; groups an agent reports in its ``groups`` property are added.
    ``max_jobs`` caps how many jobs it runs at once (None: no cap); FISSION's
    ``cpus=n`` caps it at n too. ``port``, ``depends`` and ``setup_args``
    (dispy's) are accepted and unused; ``name`` is a display name.
    """

    GROUPS: ClassVar[list[str] | str] = ["ALL"]

    def __init__(
        self,
        name_or_ip: str,
        groups: list[str] | str | None = None,
        max_jobs: int | None = None,
        *,
        port: int | None = None,
        cpus: int = 0,
        depends: Any = (),
        setup_args: Any = (),
        name: str = "",
    ) -> None:
        if not isinstance(name_or_ip, str) or not name_or_ip:
            raise TypeError(f"a node is named by a non-empty string, got {name_or_ip!r}")
        self.name = name_or_ip
        self.ip = name_or_ip
        self.display_name = name or name_or_ip
        self.groups = as_groups(self.GROUPS if groups is None else groups)
        if max_jobs is None and cpus:
            max_jobs = cpus
        if max_jobs is not None and (not isinstance(max_jobs, int) or max_jobs < 1):
            raise ValueError(f"node {name_or_ip}: max_jobs must be a positive int or None")
        self.max_jobs = max_jobs

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


@dataclass
class NodeInfo:
    """A node as a job's ``preference(nodes)`` hook sees it, from live agent reports.

    ``cpu`` and ``memory`` are percentages in use, ``memory_free`` bytes (when
    the agent reports enough to know), ``load`` the one-minute load average
    per cpu, ``jobs`` how many jobs of this network run there, ``links`` the
    link quality to the job's neighbours' nodes where the agent reports it.
    """

    name: str
    groups: list[str] = field(default_factory=lambda: ["ALL"])
    cpus: int = 1
    cpu: float = 0.0
    memory: float = 0.0
    memory_free: int | None = None
    disk: float | None = None
    load: float = 0.0
    jobs: int = 0
    max_jobs: int | None = None
    links: dict[str, float] = field(default_factory=dict)
    addresses: list[str] = field(default_factory=list)
    properties: dict[str, Any] = field(default_factory=dict)

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
            f"NodeInfo({self.name!r}, groups={self.groups}, jobs={self.jobs}, load={self.load:.2f})"
        )
