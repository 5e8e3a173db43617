"""Choosing a node for a job, in the client process, from live node information.

The rules, in order: the job's ``DEFAULT_NODE`` if it is free; otherwise
the job's ``GROUPS`` in priority order, and within the first group that has
free nodes, the node the job's ``preference(nodes)`` returns, or else the
least loaded one. No node left: :class:`AllocationError` naming the job.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from shoal.dataflow.errors import AllocationError
from shoal.dataflow.jobs import BaseJob
from shoal.dataflow.nodes import BaseNode, NodeInfo, as_groups, parse_property_groups
from shoal.model import Node

__all__ = ["allocate", "node_infos"]


def allocate(job: BaseJob, nodes: Sequence[NodeInfo]) -> NodeInfo:
    """The node ``job`` goes to, among ``nodes`` (the online, usable ones)."""
    free = [n for n in nodes if n.free]
    if job.DEFAULT_NODE is not None:
        for info in free:
            if info.name == job.DEFAULT_NODE or job.DEFAULT_NODE in info.addresses:
                return info
    for group in as_groups(job.GROUPS):
        candidates = [n for n in free if group in n.groups]
        if not candidates:
            continue
        preference = getattr(job, "preference", None)
        if callable(preference):
            chosen = preference(list(candidates))
            if chosen is not None:
                if not any(
                    chosen is c or getattr(chosen, "name", None) == c.name for c in candidates
                ):
                    raise AllocationError(
                        f"job {job.name}: preference() returned {chosen!r}, "
                        f"not one of the nodes offered {[c.name for c in candidates]}"
                    )
                return next(c for c in candidates if c.name == getattr(chosen, "name", None))
        return min(candidates, key=lambda n: (n.busy, n.name))
    wanted = as_groups(job.GROUPS)
    pinned = f"DEFAULT_NODE {job.DEFAULT_NODE!r} " if job.DEFAULT_NODE else ""
    raise AllocationError(
        f"no node for job {job.name}: {pinned}groups {wanted} match none of the free nodes "
        f"{[f'{n.name} {n.groups}' for n in free] or '(none)'}"
    )


def node_infos(
    live: Iterable[Node],
    configured: Sequence[BaseNode],
    jobs_per_node: dict[str, int],
    exclude: Iterable[str] = (),
    neighbours: Iterable[str] = (),
) -> list[NodeInfo]:
    """NodeInfo for each live node of the network (all live nodes if ``NODES`` is empty)."""
    excluded = set(exclude)
    wanted_links = set(neighbours)
    infos = []
    for node in live:
        if not node.online or node.name in excluded:
            continue
        addresses = _addresses(node.properties)
        config = next((c for c in configured if c.matches(node.name, addresses)), None)
        if configured and config is None:
            continue
        groups = list(config.groups if config is not None else ["ALL"])
        groups += [
            g for g in parse_property_groups(node.properties.get("groups")) if g not in groups
        ]
        metrics = node.metrics
        infos.append(
            NodeInfo(
                name=node.name,
                groups=groups,
                cpus=max(int(node.cpus or 1), 1),
                cpu=float(metrics.get("cpu", 0.0) or 0.0),
                memory=float(metrics.get("memory", 0.0) or 0.0),
                memory_free=_memory_free(metrics),
                disk=_float(metrics.get("disk")),
                load=float(metrics.get("load", 0.0) or 0.0) / max(int(node.cpus or 1), 1),
                jobs=jobs_per_node.get(node.name, 0),
                max_jobs=config.max_jobs if config is not None else None,
                links={
                    k: float(v)
                    for k, v in (metrics.get("links") or {}).items()
                    if k in wanted_links
                },
                addresses=addresses,
                properties=dict(node.properties),
            )
        )
    return infos


def _addresses(properties: dict[str, Any]) -> list[str]:
    value = properties.get("addresses", "")
    if isinstance(value, list):
        return [str(v) for v in value]
    return [a.strip() for a in str(value).split(",") if a.strip()]


def _memory_free(metrics: dict[str, Any]) -> int | None:
    # Agents report the share in use and the bytes in use; the rest follows.
    used, percent = metrics.get("memory_used"), metrics.get("memory")
    if "memory_free" in metrics:
        return int(metrics["memory_free"])
    if not used or not percent:
        return None
    return int(used / (percent / 100.0) - used)


def _float(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None
