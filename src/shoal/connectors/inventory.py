"""A testbed's hosts, written once in a TOML inventory.

::

    [defaults]                      # applies to every host
    user = "shoal"
    key_file = "~/.ssh/testbed"     # relative paths are from the inventory's folder

    [groups.raspis]                 # applies to the hosts that name the group
    user = "pi"
    jump_host = "admin@gw.lab.example.org"
    properties = { kind = "raspi" }

    [[hosts]]
    address = "raspi-1.lab.example.org"   # node name: raspi-1
    groups = ["raspis"]
    properties = { room = "lab2" }

A host's own settings win over its groups' (a later group over an earlier one),
and those over ``[defaults]``; ``properties`` tables are merged key by key in
the same order. Reading an inventory connects to nothing: :func:`load_inventory`
only checks it, and every error names the file, the host and the key.
"""

from __future__ import annotations

import ipaddress
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PropertyValue = str | int | float | bool

# What [defaults], a group or a host may set, and how its type is described in errors.
_SETTINGS: dict[str, tuple[type, str]] = {
    "user": (str, "a string (the SSH user)"),
    "port": (int, "an integer from 1 to 65535"),
    "key_file": (str, "a string (a path to an SSH private key)"),
    "jump_host": (str, "a string like [user@]host[:port]"),
    "properties": (dict, "a table of strings, numbers or booleans"),
    "python": (str, "a string (the python to make the agent's venv with)"),
    "workdir": (str, "a string (the agent's directory on the host)"),
}
_HOST_ONLY: dict[str, tuple[type, str]] = {
    "address": (str, "a string (a host name or IP address)"),
    "node": (str, "a string (the node's name)"),
    "groups": (list, "a list of group names"),
}
_TOP_LEVEL = ("defaults", "groups", "hosts")
_TOML_TYPES = {str: "string", int: "integer", float: "float", bool: "boolean", dict: "table"}


class InventoryError(ValueError):
    """An inventory that cannot be read or is wrong; the message names file, host and key."""


@dataclass(frozen=True)
class Host:
    """One host of an inventory, with every setting resolved."""

    address: str
    node: str
    user: str | None = None
    port: int = 22
    key_file: Path | None = None
    jump_host: str | None = None
    properties: Mapping[str, PropertyValue] = field(default_factory=dict)
    python: str = "python3"
    workdir: str = "~/.shoal-agent"  # on the host: expanded there, not here
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class Inventory:
    """The hosts of one inventory file, in the file's order."""

    path: Path
    hosts: tuple[Host, ...]

    def __iter__(self) -> Iterator[Host]:
        return iter(self.hosts)

    def __len__(self) -> int:
        return len(self.hosts)

    def host(self, node: str) -> Host:
        """The host whose node is named ``node``."""
        for host in self.hosts:
            if host.node == node:
                return host
        raise KeyError(f"{self.path}: no host with node name {node!r}")


def load_inventory(path: str | Path) -> Inventory:
    """Read and check the inventory at ``path``; raises :class:`InventoryError`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InventoryError(f"{path}: cannot read the inventory: {exc}") from None
    return parse_inventory(text, path)


def parse_inventory(text: str, path: Path) -> Inventory:
    """Check the inventory ``text`` read from ``path`` (which names it in errors and
    anchors relative key files)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InventoryError(f"{path}: not valid TOML: {exc}") from None
    for key in data:
        if key not in _TOP_LEVEL:
            raise InventoryError(
                f"{path}: unknown key {key!r} at the top (expected {', '.join(_TOP_LEVEL)})"
            )
    defaults = _settings(path, "[defaults]", _table(path, "[defaults]", data, "defaults"), {})
    groups = {
        name: _settings(path, f"[groups.{name}]", _table(path, f"[groups.{name}]", table), {})
        for name, table in _table(path, "[groups]", data, "groups").items()
    }
    entries = data.get("hosts", [])
    if not isinstance(entries, list):
        raise InventoryError(
            f"{path}: hosts must be an array of tables ([[hosts]]), not {_type_name(entries)}"
        )
    if not entries:
        raise InventoryError(f"{path}: no hosts: add [[hosts]] tables, each with an address")
    hosts: list[Host] = []
    seen: dict[str, str] = {}
    for index, entry in enumerate(entries, 1):
        host = _host(path, index, entry, defaults, groups)
        if host.node in seen:
            raise InventoryError(
                f"{path}: host {host.address}: node: the node name {host.node!r} is also "
                f"host {seen[host.node]}'s; give one of them another `node`"
            )
        seen[host.node] = host.address
        hosts.append(host)
    return Inventory(path, tuple(hosts))


def _table(path: Path, where: str, value: Any, key: str | None = None) -> dict[str, Any]:
    if key is not None:
        value = value.get(key, {})
    if not isinstance(value, dict):
        raise InventoryError(f"{path}: {where} must be a table, not {_type_name(value)}")
    return value


def _host(
    path: Path,
    index: int,
    entry: Any,
    defaults: dict[str, Any],
    groups: dict[str, dict[str, Any]],
) -> Host:
    if not isinstance(entry, dict):
        raise InventoryError(f"{path}: host #{index} must be a table, not {_type_name(entry)}")
    label = entry.get("address") if isinstance(entry.get("address"), str) else f"#{index}"
    where = f"host {label}"
    own = _settings(path, where, entry, _HOST_ONLY)
    if "address" not in own:
        raise InventoryError(f"{path}: {where}: address: missing (the host's name or IP)")
    address = own["address"]
    if not _is_address(address):
        raise InventoryError(
            f"{path}: {where}: address: {address!r} is not a host name or IP address "
            "(give the SSH user with `user`, the port with `port`)"
        )
    member_of = own.get("groups", [])
    for name in member_of:
        if name not in groups:
            known = ", ".join(sorted(groups)) or "none"
            raise InventoryError(f"{path}: {where}: groups: no group {name!r} (groups: {known})")
    merged: dict[str, Any] = {}
    properties: dict[str, PropertyValue] = {}
    for layer in (defaults, *(groups[name] for name in member_of), own):
        merged.update(layer)
        properties.update(layer.get("properties", {}))
    node = own.get("node", _default_node(address))
    if not node.strip() or any(not ch.isprintable() for ch in node):
        raise InventoryError(f"{path}: {where}: node: {node!r} is not a usable node name")
    key_file = merged.get("key_file")
    return Host(
        address=address,
        node=node,
        user=merged.get("user"),
        port=merged.get("port", 22),
        key_file=(path.parent / Path(key_file).expanduser()) if key_file else None,
        jump_host=merged.get("jump_host"),
        properties=properties,
        python=merged.get("python", "python3"),
        workdir=merged.get("workdir", "~/.shoal-agent"),
        groups=tuple(member_of),
    )


def _settings(
    path: Path, where: str, table: dict[str, Any], extra: dict[str, tuple[type, str]]
) -> dict[str, Any]:
    """``table``'s settings, checked; ``extra`` are the keys allowed only here."""
    allowed = {**_SETTINGS, **extra}
    for key, value in table.items():
        if key not in allowed:
            raise InventoryError(
                f"{path}: {where}: unknown key {key!r} (known: {', '.join(sorted(allowed))})"
            )
        kind, description = allowed[key]
        # bool is an int in Python; `port = true` is still a mistake.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise InventoryError(
                f"{path}: {where}: {key}: expected {description}, not {_type_name(value)}"
            )
        problem = _problem(key, value)
        if problem:
            raise InventoryError(f"{path}: {where}: {key}: {problem}")
    return dict(table)


def _problem(key: str, value: Any) -> str | None:
    """What is wrong with a value of the right type, if anything."""
    if key == "port" and not 1 <= value <= 65535:
        return f"{value} is not a port (1 to 65535)"
    if key == "groups":
        wrong = [g for g in value if not isinstance(g, str)]
        if wrong:
            return f"expected group names (strings), not {_type_name(wrong[0])}"
    if key == "properties":
        for name, prop in value.items():
            if not isinstance(prop, str | int | float | bool):
                return f"{name}: expected a string, number or boolean, not {_type_name(prop)}"
    if isinstance(value, str) and key != "node" and not value.strip():
        return "may not be empty"
    return None


def _is_address(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return bool(address) and not any(ch.isspace() or ch in "@/:[]" for ch in address)
    return True


def _default_node(address: str) -> str:
    """The host part of an address: an IP address whole, a DNS name's first label."""
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return address.split(".", 1)[0]


def _type_name(value: Any) -> str:
    for kind, name in _TOML_TYPES.items():
        if type(value) is kind:
            shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
            return f"{'an' if name[0] in 'aeiou' else 'a'} {name} ({shown})"
    if isinstance(value, list):
        return "an array"
    return f"a {type(value).__name__}"
