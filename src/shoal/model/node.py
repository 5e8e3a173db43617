"""Nodes: the machines an experiment runs on."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

from shoal.model.architecture import Architecture, as_architecture
from shoal.model.environment import DockerImage, ShellExecution

# What a node can prepare, by the names netUnicorn's nodes list in their
# "netunicorn-environments" property.
_ENVIRONMENTS: dict[str, type] = {"DockerImage": DockerImage, "ShellExecution": ShellExecution}


@dataclass(eq=False, repr=False)
class Node:
    """A single machine that can execute pipelines.

    Two nodes are equal when their names are equal; the other fields are
    descriptive and may change between listings of the same machine.

    ``architecture`` is an :class:`~shoal.model.architecture.Architecture`
    member when it names one (``Architecture.LINUX_AMD64``), else the agent's
    string; either compares equal to the string. ``additional_properties`` is
    netUnicorn's dict for what its connectors keep about a node (empty here).
    """

    name: str
    properties: dict[str, Any] = field(default_factory=dict)
    architecture: Architecture | str = Architecture.UNKNOWN
    cpus: int = 1
    online: bool = True
    metrics: dict[str, Any] = field(default_factory=dict)
    additional_properties: dict[str, Any] = field(default_factory=dict, kw_only=True)

    def __post_init__(self) -> None:
        if not isinstance(self.architecture, str):
            raise TypeError(
                f"node {self.name!r}: architecture must be an Architecture or a str, "
                f"got {self.architecture!r}"
            )
        self.architecture = as_architecture(self.architecture)

    @property
    def available_environments(self) -> set[type]:
        """The environment definitions this node can prepare (netUnicorn's).

        Both, unless the node's ``netunicorn-environments`` property lists
        some by name. (On shoal's own API a ``DockerImage`` with an image
        fails at prepare on any node: see :mod:`shoal.model.environment`.)
        """
        listed = self.properties.get("netunicorn-environments")
        if listed is None:
            return set(_ENVIRONMENTS.values())
        if isinstance(listed, str):
            listed = [listed]
        try:
            return {_ENVIRONMENTS[name] for name in listed if name in _ENVIRONMENTS}
        except TypeError:  # not iterable, or unhashable names: as if unset
            return set(_ENVIRONMENTS.values())

    def __repr__(self) -> str:
        return self.name

    def __str__(self) -> str:
        return self.name

    def __getitem__(self, key: str) -> Any:
        """``node["ipv4"]``: the property ``key``, or None if the node has none."""
        return self.properties.get(key)

    def __setitem__(self, key: str, value: Any) -> None:
        """``node["role"] = "server"``: set a property of this node object."""
        self.properties[key] = value

    # With __getitem__ alone, iter(node) would ask for node[0], node[1], ...
    # forever (each answered with None). None here makes iter() refuse, and
    # keeps isinstance(node, Iterable) False.
    __iter__ = None  # type: ignore[assignment]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Node):
            return NotImplemented
        return self.name == other.name

    def __hash__(self) -> int:
        return hash(self.name)

    def to_dict(self) -> dict[str, Any]:
        """Return a plain, JSON-friendly dict describing this node."""
        return {
            "name": self.name,
            "properties": dict(self.properties),
            # the plain string: a member would serialise as one anyway, but
            # msgspec and friends need not know the enum
            "architecture": str.__str__(self.architecture),
            "cpus": self.cpus,
            "online": self.online,
            "metrics": dict(self.metrics),
            "additional_properties": dict(self.additional_properties),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Node:
        """Build a node from :meth:`to_dict` output; only ``name`` is required."""
        return cls(
            name=data["name"],
            properties=dict(data.get("properties") or {}),
            architecture=data.get("architecture", "unknown"),
            cpus=data.get("cpus", 1),
            online=data.get("online", True),
            metrics=dict(data.get("metrics") or {}),
            additional_properties=dict(data.get("additional_properties") or {}),
        )


def _count(method: str, n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"{method}() expects an int, got {n!r}")
    if n < 0:
        # a slice would count from the end: almost surely not what was meant
        raise ValueError(f"cannot {method} a negative number of nodes ({n})")
    return n


class Nodes(Sequence[Node]):
    """An ordered, list-like collection of :class:`Node` objects."""

    def __init__(self, iterable: Iterable[Node] = ()) -> None:
        self._nodes: list[Node] = list(iterable)

    def filter(self, predicate: Callable[[Node], bool]) -> Nodes:
        """Return the nodes for which ``predicate`` is true."""
        return Nodes(node for node in self._nodes if predicate(node))

    def take(self, n: int) -> Nodes:
        """Return the first ``n`` nodes, or all of them if there are fewer
        (as netUnicorn's ``take``: check ``len()`` when the count matters)."""
        return Nodes(self._nodes[: _count("take", n)])

    def skip(self, n: int) -> Nodes:
        """Return the nodes after the first ``n`` (none if there are fewer)."""
        return Nodes(self._nodes[_count("skip", n) :])

    def set_property(self, name: str, value: Any) -> Nodes:
        """Set property ``name`` to ``value`` on every node here; returns ``self``.

        It changes these Node objects (what an experiment built from them
        ships), not the nodes' own properties on the controller.
        """
        for node in self._nodes:
            node.properties[name] = value
        return self

    @property
    def nodes(self) -> list[Node]:
        """The list of nodes itself (netUnicorn's pool attribute): changing it changes this pool."""
        return self._nodes

    def pop(self, index: int = -1) -> Node:
        """Remove and return the node at ``index`` (the last by default)."""
        if not self._nodes:
            raise IndexError("pop from an empty Nodes")
        try:
            return self._nodes.pop(index)
        except IndexError:
            raise IndexError(
                f"pop index {index} is out of range for {len(self._nodes)} nodes"
            ) from None

    def __setitem__(self, index: int, node: Node) -> None:
        if not isinstance(node, Node):
            raise TypeError(
                f"a Nodes holds Node objects, got {node!r} of type {type(node).__name__}"
            )
        self._nodes[index] = node

    def names(self) -> list[str]:
        """Return the node names, in order."""
        return [node.name for node in self._nodes]

    def __iter__(self) -> Iterator[Node]:
        return iter(self._nodes)

    def __len__(self) -> int:
        return len(self._nodes)

    @overload
    def __getitem__(self, key: int) -> Node: ...

    @overload
    def __getitem__(self, key: slice) -> Nodes: ...

    @overload
    def __getitem__(self, key: str) -> Node: ...

    def __getitem__(self, key: int | slice | str) -> Node | Nodes:
        if isinstance(key, str):
            for node in self._nodes:
                if node.name == key:
                    return node
            raise KeyError(f"no node named {key!r}")
        if isinstance(key, slice):
            return Nodes(self._nodes[key])
        return self._nodes[key]

    def __contains__(self, item: object) -> bool:
        if isinstance(item, str):
            return any(node.name == item for node in self._nodes)
        return item in self._nodes

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Nodes):
            return self._nodes == other._nodes
        if isinstance(other, list):
            return self._nodes == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable container, like list

    def __repr__(self) -> str:
        return "[" + ", ".join(self.names()) + "]"

    __str__ = __repr__
