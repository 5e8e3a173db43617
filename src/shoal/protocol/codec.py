"""msgpack codecs for frames (lists of messages) and length-prefixed streams."""

from __future__ import annotations

import struct
from typing import Any, Generic, TypeVar

import msgspec

_LEN = struct.Struct("!I")
MAX_FRAME = 256 * 1024 * 1024
T = TypeVar("T")


class FrameEncoder:
    """Encodes a list of messages into one msgpack frame."""

    def __init__(self) -> None:
        self._enc = msgspec.msgpack.Encoder()

    def encode(self, messages: list[Any]) -> bytes:
        return self._enc.encode(messages)

    def encode_prefixed(self, message: Any) -> bytes:
        """One message with a 4-byte length prefix, for byte streams."""
        body = self._enc.encode(message)
        return _LEN.pack(len(body)) + body


class FrameDecoder(Generic[T]):
    """Decodes frames of the message union ``kind``; raises msgspec.ValidationError."""

    def __init__(self, kind: Any) -> None:
        self._frame = msgspec.msgpack.Decoder(list[kind])
        self._one = msgspec.msgpack.Decoder(kind)

    def decode(self, data: bytes) -> list[T]:
        return self._frame.decode(data)

    def decode_one(self, data: bytes) -> T:
        return self._one.decode(data)


def split_prefixed(buffer: bytearray) -> list[bytes]:
    """Pop every complete length-prefixed body off the front of ``buffer``."""
    out: list[bytes] = []
    while len(buffer) >= _LEN.size:
        (size,) = _LEN.unpack_from(buffer)
        if size > MAX_FRAME:
            raise ValueError(f"frame of {size} bytes exceeds the limit of {MAX_FRAME}")
        end = _LEN.size + size
        if len(buffer) < end:
            break
        out.append(bytes(buffer[_LEN.size : end]))
        del buffer[:end]
    return out
