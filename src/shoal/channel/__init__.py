"""The Channel: an ordered, flow-controlled message stream between two endpoints.

A channel opens with a capability the controller issued for one opener, one
node and one endpoint there; it goes direct to the node's channel server when
the opener can reach it and through the controller's relay when it cannot, and
its users do not see which. ``Channel`` is the blocking face, ``AsyncChannel``
the asyncio one; both are the same model (:mod:`shoal.channel.flow`) on the
same transports.

::

    with Channel.connect(controller, token, "node-1", "probe.echo") as ch:
        ch.send(b"hello")
        assert ch.recv() == b"hello"
"""

from shoal.channel.aio import AsyncChannel
from shoal.channel.connect import connect, open_channel, request_grant
from shoal.channel.errors import (
    ChannelClosed,
    ChannelError,
    ChannelLost,
    ChannelProtocolError,
    ChannelRefused,
    ChannelTimeout,
    ChannelUnavailable,
)
from shoal.channel.flow import DEFAULT_WINDOW, Window
from shoal.channel.sync import Channel

__all__ = [
    "DEFAULT_WINDOW",
    "AsyncChannel",
    "Channel",
    "ChannelClosed",
    "ChannelError",
    "ChannelLost",
    "ChannelProtocolError",
    "ChannelRefused",
    "ChannelTimeout",
    "ChannelUnavailable",
    "Window",
    "connect",
    "open_channel",
    "request_grant",
]
