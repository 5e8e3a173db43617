"""Channel grants that go through the controller's relay, for tests of that path on
nodes that could also be reached directly."""

from __future__ import annotations

import asyncio

import msgspec

from shoal.channel.connect import request_grant
from shoal.channel.sync import channel_loop
from shoal.protocol.channel_messages import ChannelGrant


def relayed_grant(controller: str, token: str, node: str, endpoint: str) -> ChannelGrant:
    """A grant for ``endpoint`` on ``node`` with the node's direct address taken out
    (addresses are not part of the capability): its channel goes through the relay."""
    opening = request_grant(controller, token, node, endpoint)
    grant = asyncio.run_coroutine_threadsafe(opening, channel_loop()).result(30)
    return msgspec.structs.replace(grant, addresses=[], direct=False)
