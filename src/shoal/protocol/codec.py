"""msgpack codecs for frames (lists of messages); byte streams frame them with
:mod:`shoal.protocol.framing`."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import msgspec

T = TypeVar("T")


class FrameEncoder:
    """Encodes a list of messages into one msgpack frame."""

    def __init__(self) -> None:
        self._enc = msgspec.msgpack.Encoder()

    def encode(self, messages: list[Any]) -> bytes:
        return self._enc.encode(messages)

    def encode_one(self, message: Any) -> bytes:
        """One message on its own (a frame body of a byte stream)."""
        return self._enc.encode(message)


class FrameDecoder(Generic[T]):
    """Decodes frames of the message union ``kind``; raises msgspec.ValidationError."""

    def __init__(self, kind: Any) -> None:
        self._frame = msgspec.msgpack.Decoder(list[kind])
        self._one = msgspec.msgpack.Decoder(kind)

    def decode(self, data: bytes) -> list[T]:
        return self._frame.decode(data)

    def decode_one(self, data: bytes) -> T:
        return self._one.decode(data)
