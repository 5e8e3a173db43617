"""Per-transfer capabilities for the agents' data servers.

The controller gives every agent a key of its own (in Welcome, over the agent's
authenticated WebSocket). When it tells a node to fetch an input from a peer,
it signs, with that peer's key, which object (session, id), which reader (the
fetching node's name) and until when. The peer's data server serves an object
only to a request whose capability checks out for exactly that object and
reader, before it expires; nothing else opens it, so knowing or guessing an id
is worth nothing. A key never leaves the agent process (task workers do not
see it).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

import msgspec

KEY_BYTES = 32


def new_key() -> bytes:
    """A fresh data-server key for one agent."""
    return secrets.token_bytes(KEY_BYTES)


def _message(session: int, obj: int, reader: str, expires: float) -> bytes:
    # msgpack keeps the fields apart: node names may contain any separator.
    return msgspec.msgpack.encode((session, obj, reader, round(expires, 3)))


def sign(key: bytes, session: int, obj: int, reader: str, expires: float) -> str:
    """The capability letting ``reader`` fetch ``(session, obj)`` until ``expires``."""
    return hmac.new(key, _message(session, obj, reader, expires), hashlib.sha256).hexdigest()


def check(
    key: bytes,
    capability: str,
    session: int,
    obj: int,
    reader: str,
    expires: float,
    now: float,
) -> str:
    """Why the capability does not open ``(session, obj)`` for ``reader``; "" if it does.

    ``now`` is the controller's clock as this agent estimates it (the two clocks
    need not agree).
    """
    if not key:
        return "this node has no data key yet"
    expected = sign(key, session, obj, reader, expires)
    if not hmac.compare_digest(expected.encode(), capability.encode()):
        return "the capability is not valid for this object and reader"
    if now > expires:
        return "the capability has expired"
    return ""


__all__ = ["KEY_BYTES", "check", "new_key", "sign"]
