"""The vocabulary of a Channel: what its two ends say to each other.

Each message is one frame (a length-prefixed body on a stream, one binary
message on a WebSocket), msgpack-encoded and tagged by class name (``t``).

A channel starts with ``Open`` from the opener, answered by ``Accept`` or
``Refuse``. Then either end sends ``Data`` (a batch of payloads: one frame
carries many small messages) within the credit the other end granted, and
``Credit`` as its application consumes. ``Close`` ends the channel for both
directions: the end that receives it answers with its own ``Close``; data sent
before a ``Close`` is delivered before it.
"""

from __future__ import annotations

import struct

import msgspec

CHANNEL_PROTOCOL = 1
# A payload this large is sent from where it lies, not copied into its frame
# (see encode_data), and a body this large is written on its own; below it,
# one copy joins it with its neighbours for less.
SEND_IN_PLACE = 64 * 1024


class _Msg(msgspec.Struct, tag_field="t", tag=True, omit_defaults=True, array_like=True):
    pass


class Open(_Msg):
    """Open ``channel`` to ``endpoint`` on ``node`` as ``opener``, showing the
    ``capability`` the controller issued for exactly these; the opener may be sent
    ``credit_messages`` messages and ``credit_bytes`` bytes before it grants more."""

    channel: str
    capability: str
    node: str
    endpoint: str
    opener: str
    credit_messages: int
    credit_bytes: int
    version: int = CHANNEL_PROTOCOL


class Accept(_Msg):
    """The target took the channel; the opener may send this much before more credit."""

    credit_messages: int
    credit_bytes: int


class Refuse(_Msg):
    """The channel was not opened; ``reason`` names what was wrong."""

    reason: str


class Data(_Msg):
    """Payloads in order; each one is one message of the application."""

    payloads: list[bytes]


class Credit(_Msg):
    """The sender of this may be sent this many more messages and bytes."""

    messages: int
    bytes: int


class Close(_Msg):
    """The end of the channel. ``reason`` "": a clean end; else what went wrong.
    ``lost``: sent by a relay, whose connection to the peer broke."""

    reason: str = ""
    lost: bool = False


ChannelMessage = Open | Accept | Refuse | Data | Credit | Close


class ChannelGrant(msgspec.Struct, omit_defaults=True):
    """What the controller hands an opener: the channel's id, the capability to
    open it, and the ways to the target. ``addresses`` are ``host:port`` of the
    target node's channel server; ``direct`` False (the controller runs TLS, or
    the node serves no channels) means through the controller only."""

    channel: str
    capability: str
    opener: str
    node: str
    endpoint: str
    expires: float
    addresses: list[str] = []
    direct: bool = True


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(ChannelMessage)


def encode(message: ChannelMessage) -> bytes:
    return _encoder.encode(message)


# A frame body given in pieces, sent one after another: one length prefix for all.
Pieces = tuple[bytes | bytearray | memoryview, ...]

# msgpack of Data: [tag, [payload, ...]], each payload a bin.
_DATA_HEAD = _encoder.encode(Data([]))[:-1]  # the array, the tag; the empty list's marker cut
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")


def _array_header(count: int) -> bytes:
    if count < 16:
        return bytes((0x90 | count,))
    if count < 1 << 16:
        return b"\xdc" + _U16.pack(count)
    return b"\xdd" + _U32.pack(count)


def _bin_header(size: int) -> bytes:
    if size < 1 << 8:
        return bytes((0xC4, size))
    if size < 1 << 16:
        return b"\xc5" + _U16.pack(size)
    return b"\xc6" + _U32.pack(size)


def encode_data(payloads: list[bytes], size: int) -> bytes | Pieces:
    """``encode(Data(payloads))``, but a payload of :data:`SEND_IN_PLACE` bytes or
    more is not copied: the frame comes as pieces (a tuple), that payload one of
    them as it is. ``size``: the payloads' bytes in all (the caller counted
    them: a batch of small messages is not looked through again). The payloads
    must not change until the frame is written."""
    if size < SEND_IN_PLACE or max(map(len, payloads)) < SEND_IN_PLACE:
        return _encoder.encode(Data(payloads))
    pieces: list[bytes | bytearray | memoryview] = []
    head = bytearray(_DATA_HEAD)
    head += _array_header(len(payloads))
    for payload in payloads:
        length = len(payload)
        head += _bin_header(length)
        if length < SEND_IN_PLACE:
            head += payload
        else:
            pieces.append(bytes(head))
            pieces.append(payload)
            head = bytearray()
    if head:
        pieces.append(bytes(head))
    return tuple(pieces)


def decode(body: bytes) -> ChannelMessage:
    """One message; raises ``msgspec.DecodeError``/``ValidationError`` on a bad frame."""
    return _decoder.decode(body)


__all__ = [
    "CHANNEL_PROTOCOL",
    "Accept",
    "ChannelGrant",
    "ChannelMessage",
    "Close",
    "Credit",
    "Data",
    "Open",
    "Pieces",
    "Refuse",
    "decode",
    "encode",
    "encode_data",
]
