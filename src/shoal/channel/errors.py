"""What can go wrong with a channel, each error naming the peer and why."""

from __future__ import annotations


class ChannelError(OSError):
    """A channel could not be opened, or broke. ``peer`` is who was at the other
    end (a node name, or an opener such as ``user:alice``) when known; the message
    says what happened."""

    def __init__(self, message: str, *, peer: str = "") -> None:
        super().__init__(message)
        self.peer = peer

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ChannelRefused(ChannelError):
    """The channel was not opened: the reason names what was wrong (capability,
    endpoint, node)."""


class ChannelUnavailable(ChannelError):
    """The channel could not be opened for now: the controller could not be
    reached, or the node is not online. Trying again later may work."""


class ChannelLost(ChannelError):
    """The peer went away: its connection dropped, or it closed with an error."""


class ChannelClosed(ChannelError):
    """The channel ended cleanly; nothing more will come and nothing more can be sent."""


class ChannelTimeout(ChannelError, TimeoutError):
    """A channel did not open, or its peer did not answer, in time."""


class ChannelProtocolError(ChannelLost):
    """The peer broke the channel protocol (a malformed frame, more data than its
    credit); the channel is dropped."""


__all__ = [
    "ChannelClosed",
    "ChannelError",
    "ChannelLost",
    "ChannelProtocolError",
    "ChannelRefused",
    "ChannelTimeout",
    "ChannelUnavailable",
]
