"""Where a client finds the controller and its login.

In order: arguments, then ``SHOAL_ENDPOINT`` / ``SHOAL_LOGIN`` /
``SHOAL_PASSWORD`` from the environment, then a ``.env`` file in the current
directory, then the ``.shoal/up.env`` file that a running ``shoal up`` writes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from dotenv import dotenv_values

UP_ENV = Path(".shoal") / "up.env"


@dataclass(frozen=True)
class ClientSettings:
    endpoint: str
    login: str
    password: str


def _sources() -> list[dict[str, str | None]]:
    sources: list[dict[str, str | None]] = [dict(os.environ)]
    for path in (Path(".env"), UP_ENV):
        if path.is_file():
            sources.append(dotenv_values(path))
    return sources


def lookup(key: str) -> str | None:
    for source in _sources():
        value = source.get(key)
        if value:
            return value
    return None


def resolve(
    endpoint: str | None = None, login: str | None = None, password: str | None = None
) -> ClientSettings:
    endpoint = endpoint or lookup("SHOAL_ENDPOINT")
    if not endpoint:
        raise ValueError(
            "no controller endpoint: pass endpoint=..., set SHOAL_ENDPOINT, "
            "or start one with `shoal up` in this directory"
        )
    return ClientSettings(
        endpoint=endpoint.rstrip("/"),
        login=login or lookup("SHOAL_LOGIN") or "",
        password=password or lookup("SHOAL_PASSWORD") or "",
    )
