"""Writing a shoal inventory file (shoal.connectors.inventory's TOML) for test hosts.

:func:`write_inventory` lists the namespace hosts of :func:`netns.ssh_hosts`, with
settings shared by all of them in ``[defaults]`` and per-host changes on top::

    with ssh_hosts(3, tmp_path) as hosts:
        write_inventory(tmp_path / "inventory.toml", hosts, python="/usr/bin/python3")
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from netns import NetnsHost


def _toml_value(value: Any) -> str:
    """``value`` written as a TOML value (a string, number, boolean, inline table or array)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))  # a JSON string is a TOML basic string
    if isinstance(value, Mapping):
        return (
            "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
        )
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} into an inventory")


def write_inventory(
    path: str | os.PathLike[str],
    hosts: Sequence[NetnsHost],
    *,
    per_host: Mapping[str, Mapping[str, Any]] | None = None,
    **defaults: Any,
) -> Path:
    """Write a shoal inventory (shoal.connectors.inventory) of ``hosts`` to ``path``.

    Each host gets its address, node name (``host.name``), user root, port, key file,
    work directory and ``host.properties``. ``defaults`` (e.g. ``python=...``) go into
    ``[defaults]`` and replace those per-host settings (but address and node);
    ``per_host[host.name]`` adds or replaces settings of one host (e.g. a wrong
    ``key_file``).
    """
    lines: list[str] = []
    if defaults:
        lines.append("[defaults]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in defaults.items()]
        lines.append("")
    for host in hosts:
        lines.append("[[hosts]]")
        settings: dict[str, Any] = {
            "address": host.address,
            "node": host.name,
            "user": host.user,
            "port": host.port,
            "key_file": host.key_file,
            "workdir": host.workdir,
        }
        if host.properties:
            settings["properties"] = host.properties
        settings = {
            key: value
            for key, value in settings.items()
            if key in ("address", "node") or key not in defaults
        }
        settings.update((per_host or {}).get(host.name, {}))
        lines += [f"{key} = {_toml_value(value)}" for key, value in settings.items()]
        lines.append("")
    path = Path(path)
    path.write_text("\n".join(lines))
    return path
