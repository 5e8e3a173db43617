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
from shoal.dataflow.nodes import (
    TQ_MAX,
    BaseNode,
    MultiNode,
    NodeInfo,
    as_groups,
    parse_property_groups,
    tq_of,
)
from shoal.model import Node

__all__ = ["allocate", "link_tq", "node_infos"]


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
    """NodeInfo for each live node of the network (all live nodes if ``NODES`` is empty).

    ``neighbours`` are the nodes the job's neighbours run on; each NodeInfo's
    ``TQ`` is the average link quality to them (see :func:`link_tq`).
    """
    excluded = set(exclude)
    # Each node once, in order, as FISSION averaged over distinct nodes.
    around = list(dict.fromkeys(neighbours))
    nodes = [node for node in live if node.online]
    tables = {node.name: _links(node.metrics) for node in nodes}
    known = {node.name: [node.name, *_addresses(node.properties)] for node in nodes}
    infos = []
    for node in nodes:
        if node.name in excluded:
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
        cpus = max(int(node.cpus or 1), 1)
        memory_free = _memory_free(metrics)
        infos.append(
            NodeInfo(
                name=node.name,
                groups=groups,
                cpus=cpus,
                # Agents report shares in use; FISSION's NodeInfo had what is free.
                cpu_used=float(metrics.get("cpu", 0.0) or 0.0),
                memory_used=float(metrics.get("memory", 0.0) or 0.0),
                memory_free=memory_free,
                memory=memory_free,
                disk=_int(metrics.get("disk_free")),
                swap=_float(metrics.get("swap")) or 0.0,
                TQ=link_tq(node.name, addresses, around, tables, known),
                load=float(metrics.get("load", 0.0) or 0.0) / cpus,
                jobs=jobs_per_node.get(node.name, 0),
                max_jobs=config.max_jobs if config is not None else None,
                links={k: v for k, v in tables[node.name].items() if k in around},
                addresses=addresses,
                properties=dict(node.properties),
                # The NODES entry when it names this one node; else one made for it.
                _node=config if config is not None and not isinstance(config, MultiNode) else None,
            )
        )
    return infos


def link_tq(
    candidate: str,
    addresses: Sequence[str],
    neighbours: Sequence[str],
    tables: dict[str, dict[str, float]],
    known: dict[str, list[str]],
) -> float:
    """FISSION's ``TQ``: the average link quality (0..255) from ``candidate`` to ``neighbours``.

    Per neighbour node, as FISSION scored the neighbours' BATMAN originator
    tables: the candidate itself counts 255; a quality reported for the pair
    (by the neighbour's node, else by the candidate) counts on the 0..255
    scale (:func:`tq_of`); a neighbour's node that reports its links without
    the candidate among them counts 0 (no route, as a BATMAN table without
    the candidate did); otherwise, with no link information for the pair, 255
    (FISSION's value when BATMAN reported nothing). The client, where LOCAL
    jobs run, reports no links. No neighbour placed yet: 255 (FISSION did
    not weigh links then).
    """
    if not neighbours:
        return TQ_MAX
    names = [candidate, *addresses]
    total = 0.0
    for other in neighbours:
        if other in names:
            total += TQ_MAX
            continue
        theirs = tables.get(other, {})
        quality = _lookup(theirs, names)
        if quality is None:
            quality = _lookup(tables.get(candidate, {}), known.get(other, [other]))
        if quality is not None:
            total += tq_of(quality)
        elif not theirs:
            total += TQ_MAX
    return total / len(neighbours)


def _lookup(table: dict[str, float], names: Sequence[str]) -> float | None:
    for name in names:
        if name in table:
            return table[name]
    return None


def _links(metrics: dict[str, Any]) -> dict[str, float]:
    links = metrics.get("links") or {}
    if not isinstance(links, dict):
        return {}
    table = {}
    for key, value in links.items():
        number = _float(value)
        if number is not None:
            table[str(key)] = number
    return table


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


def _int(value: Any) -> int | None:
    number = _float(value)
    return None if number is None else int(number)


def _float(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None
