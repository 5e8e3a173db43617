"""Channel capabilities: what lets an opener open a channel to a node.

The controller gives every agent a key of its own (in Welcome, over the agent's
authenticated WebSocket); a key never leaves the agent process (task workers do
not see it). A channel capability lets one opener open one channel to one
endpoint of one node until an expiry. A graph object has an endpoint of its own
on each node holding it, so a capability for it names exactly that object and
that reader; knowing or guessing an id is worth nothing.

A capability states what it opens (so a refusal can say which part did not
match) and carries an HMAC-SHA256 of those fields, made with the target
node's data key: the node checks it itself on the direct path, the controller
(which holds every node's key) on the relay path.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass

import msgspec

KEY_BYTES = 32


def new_key() -> bytes:
    """A fresh data-server key for one agent."""
    return secrets.token_bytes(KEY_BYTES)


@dataclass(frozen=True)
class ChannelClaim:
    """What a channel capability opens."""

    channel: str
    opener: str
    node: str
    endpoint: str
    expires: float
    # A tag of the token the grant was made for ("": none, e.g. a node opener):
    # when that token is revoked, the controller has the node close the
    # channels whose capability carries its tag, wherever they went.
    token: str = ""


def token_tag(digest: str) -> str:
    """The tag a capability carries for the token whose digest is ``digest``
    (a prefix of a hash of the token: it names the token, and opens nothing)."""
    return digest[:16]


def _claim_body(claim: ChannelClaim) -> bytes:
    fields = (claim.channel, claim.opener, claim.node, claim.endpoint, round(claim.expires, 3))
    if claim.token:
        fields += (claim.token,)
    return msgspec.msgpack.encode(("channel", *fields))


def sign_channel(key: bytes, claim: ChannelClaim) -> str:
    """The capability for ``claim``: its fields, then their MAC (``BODY.MAC``)."""
    body = _claim_body(claim)
    mac = hmac.new(key, body, hashlib.sha256).hexdigest()
    return base64.urlsafe_b64encode(body).decode().rstrip("=") + "." + mac


def read_channel_claim(capability: str) -> ChannelClaim | None:
    """The claim a channel capability states (not yet checked); None if malformed."""
    encoded, _, _ = capability.partition(".")
    try:
        body = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        kind, channel, opener, node, endpoint, expires, *rest = msgspec.msgpack.decode(body)
    except (binascii.Error, ValueError, TypeError, msgspec.DecodeError):
        return None
    token = rest[0] if len(rest) == 1 else None if rest else ""
    fields = (channel, opener, node, endpoint, token)
    if kind != "channel" or not all(isinstance(f, str) for f in fields):
        return None
    if not isinstance(expires, int | float):
        return None
    return ChannelClaim(channel, opener, node, endpoint, float(expires), token)


def token_of(capability: str) -> str:
    """The tag of the token a capability's grant was made for ("": none)."""
    claim = read_channel_claim(capability)
    return claim.token if claim is not None and claim.token else ""


def check_channel(
    key: bytes, capability: str, channel: str, opener: str, node: str, endpoint: str, now: float
) -> str:
    """Why ``capability`` does not let ``opener`` open ``channel`` to ``endpoint`` on
    ``node`` at ``now`` (the controller's clock, as the checker estimates it); ""
    if it does."""
    if not key:
        return f"node {node} has no data key yet"
    claim = read_channel_claim(capability)
    if claim is None:
        return "the channel capability is malformed"
    for what, issued, shown in (
        ("channel", claim.channel, channel),
        ("opener", claim.opener, opener),
        ("node", claim.node, node),
        ("endpoint", claim.endpoint, endpoint),
    ):
        if issued != shown:
            return f"the capability is for {what} {issued!r}, not {shown!r}"
    if not hmac.compare_digest(sign_channel(key, claim).encode(), capability.encode()):
        return "the channel capability was not issued for this node (bad signature)"
    if now > claim.expires:
        return f"the capability for channel {claim.channel!r} has expired"
    return ""


__all__ = [
    "KEY_BYTES",
    "ChannelClaim",
    "check_channel",
    "new_key",
    "read_channel_claim",
    "sign_channel",
    "token_of",
    "token_tag",
]
