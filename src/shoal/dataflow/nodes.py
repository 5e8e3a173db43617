"""Nodes of a network (``NODES`` in a config) and what allocation knows of them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

__all__ = ["BaseNode", "NodeInfo"]


class BaseNode:
    """A node of the network, by shoal node name or by one of its IP addresses.

    ``groups`` (default: the class's ``GROUPS``, ``["ALL"]``) are the job groups
    it serves; groups an agent reports in its ``groups`` property are added.
    ``max_jobs`` caps how many jobs it runs at once (None: no cap).
    """

    GROUPS: ClassVar[list[str] | str] = ["ALL"]

    def __init__(
        self,
        name_or_ip: str,
        groups: list[str] | str | None = None,
        max_jobs: int | None = None,
    ) -> None:
        if not isinstance(name_or_ip, str) or not name_or_ip:
            raise TypeError(f"a node is named by a non-empty string, got {name_or_ip!r}")
        self.name = name_or_ip
        self.groups = as_groups(self.GROUPS if groups is None else groups)
        if max_jobs is not None and (not isinstance(max_jobs, int) or max_jobs < 1):
            raise ValueError(f"node {name_or_ip}: max_jobs must be a positive int or None")
        self.max_jobs = max_jobs

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, groups={self.groups})"


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
