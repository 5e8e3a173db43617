"""Pipes: the typed, numbered connections between jobs.

A pipe is named by its integer id; the same id written in two jobs' lists is
the same pipe (one source job, one destination job). The class decides how
values travel (pickle, JSON, fixed-size bytes) and how the receiver sees them
(``BLOCK_COUNT`` values per round, or an optional input that never blocks).
"""

from __future__ import annotations

import json
import pickle
from typing import Any, BinaryIO, ClassVar

__all__ = [
    "BasePipe",
    "BytesPipe",
    "JSONMixIn",
    "JSONPipe",
    "OptionalBytesPipe",
    "OptionalJSONPipe",
    "OptionalMixIn",
    "OptionalPicklePipe",
    "PickleMixIn",
    "PicklePipe",
    "ReadJSONMixIn",
    "ReadPickleMixIn",
    "WriteJSONMixIn",
    "WritePickleMixIn",
]


class BasePipe:
    """A connection from one job's output to another job's input.

    ``pack(value)`` runs on the sender and ``unpack(data)`` on the receiver
    (override both to change what travels, as in FISSION). ``BLOCK_SIZE`` as
    an int makes the pipe carry blocks of exactly that many bytes (what
    ``pack`` returns is checked; programs read and write that many bytes per
    value); left at None the pipe carries any picklable value.
    ``BLOCK_COUNT`` > 1 hands the receiver a list of that many consecutive
    values per round instead of single values.
    """

    BLOCK_SIZE: ClassVar[int | str | None] = None
    BLOCK_COUNT: ClassVar[int] = 1
    OPTIONAL: ClassVar[bool] = False
    ASYNC: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Checked when the class is defined, as FISSION's metaclass did.
        count, size = cls.BLOCK_COUNT, cls.BLOCK_SIZE
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise TypeError(f"{cls.__name__}: BLOCK_COUNT must be an int >= 1, got {count!r}")
        numeric = not isinstance(size, str | None)
        if numeric and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise TypeError(
                f"{cls.__name__}: BLOCK_SIZE must be an int >= 1 or a str, got {size!r}"
            )

    def __init__(self, id: int) -> None:
        if isinstance(id, bool) or not isinstance(id, int):
            raise TypeError(f"a pipe id must be an int, got {id!r}")
        self.id = id

    def pack(self, data: Any) -> Any:
        """What the sender's value becomes before it travels (FISSION's hook)."""
        return data

    def unpack(self, data: Any) -> Any:
        """The value the receiving job gets from what :meth:`pack` produced."""
        return data

    def encode(self, value: Any) -> Any:
        """shoal's wire hook after :meth:`pack` (identity unless overridden)."""
        return value

    def decode(self, data: Any) -> Any:
        """The inverse of :meth:`encode`, before :meth:`unpack`."""
        return data

    @property
    def block_bytes(self) -> int | None:
        """Bytes per value when the pipe carries fixed-size blocks, else None."""
        size = self.BLOCK_SIZE
        return size if isinstance(size, int) and not isinstance(size, bool) else None

    @property
    def transparent(self) -> bool:
        """True when values travel as they are (no hook to call)."""
        kind = type(self)
        return (
            kind.pack is BasePipe.pack
            and kind.unpack is BasePipe.unpack
            and kind.encode is BasePipe.encode
            and kind.decode is BasePipe.decode
            and self.block_bytes is None
        )

    def to_wire(self, value: Any) -> Any:
        """``encode(pack(value))``, with a fixed ``BLOCK_SIZE`` checked."""
        data = self.pack(value)
        size = self.block_bytes
        if size is not None:
            if isinstance(data, bytearray | memoryview):
                data = bytes(data)
            if not isinstance(data, bytes) or len(data) != size:
                got = f"{len(data)} bytes" if isinstance(data, bytes) else type(data).__name__
                raise TypeError(
                    f"pipe {self.id} ({type(self).__name__}) carries blocks of BLOCK_SIZE={size} "
                    f"bytes, but pack() gave {got}"
                )
        return self.encode(data)

    def from_wire(self, data: Any) -> Any:
        """The receiving job's value: ``unpack(decode(data))``."""
        return self.unpack(self.decode(data))

    def read_stream(self, stream: BinaryIO) -> Any:
        """One packed value from a program's byte stream (raises EOFError at its end)."""
        size = self.block_bytes
        if size is None:
            raise TypeError(f"pipe {self.id}: a program cannot write a {type(self).__name__}")
        data = _read_exactly(stream, size)
        return data

    def write_stream(self, stream: BinaryIO, packed: Any) -> None:
        """Write one packed value to a program's byte stream."""
        if not isinstance(packed, bytes | bytearray):
            raise TypeError(f"pipe {self.id}: a program reads bytes, pack() gave {packed!r}")
        stream.write(packed)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BasePipe) and other.id == self.id and type(other) is type(self)

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.id})"


def _read_exactly(stream: BinaryIO, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            raise EOFError("the stream ended")
        data += chunk
    return data


# -- FISSION's mixins: how values are framed on a stream, and (JSON) packed.
#
# FISSION's Read*/Write* mixins supplied a pipe's read()/write() on its named
# pipes; shoal moves values between Python jobs itself, so here they supply
# what still meets a byte stream: read_stream() (a program's output) and
# write_stream() (a program's input), plus the JSON mixins' pack()/unpack().
# Put them before the pipe class, as in FISSION: ``class P(PickleMixIn, BasePipe)``.


class ReadPickleMixIn:
    """Reads each value as one pickle from a stream (no ``BLOCK_SIZE`` needed)."""

    def read_stream(self, stream: BinaryIO) -> Any:
        """One value, unpickled; EOFError at the stream's end (or on a broken pickle)."""
        try:
            return pickle.load(stream)
        except EOFError:
            raise
        except (pickle.UnpicklingError, ValueError) as exc:
            pipe = getattr(self, "id", "?")
            raise EOFError(f"pipe {pipe}: not a pickle: {exc}") from None


class WritePickleMixIn:
    """Writes each value as one pickle, so any picklable value travels, whatever
    ``BLOCK_SIZE`` the pipe class it is mixed into has."""

    def write_stream(self, stream: BinaryIO, packed: Any) -> None:
        """Write ``packed`` to a program's input as one pickle."""
        pickle.dump(packed, stream)

    def to_wire(self, value: Any) -> Any:
        """``encode(pack(value))``; a pickle frames itself, so no block size is checked."""
        return self.encode(self.pack(value))  # type: ignore[attr-defined]


class PickleMixIn(ReadPickleMixIn, WritePickleMixIn):
    """Both pickle mixins: values are pickled both ways; ``pack``/``unpack`` stay as they are."""


class ReadJSONMixIn:
    """Reads each value as one line of UTF-8 JSON and decodes it in ``unpack``."""

    def read_stream(self, stream: BinaryIO) -> Any:
        """One JSON line as bytes; EOFError at the stream's end."""
        line = stream.readline()
        if not line:
            raise EOFError("the stream ended")
        return line

    def unpack(self, data: Any) -> Any:
        """The value of one JSON line (bytes or str)."""
        return json.loads(data.decode() if isinstance(data, bytes | bytearray) else data)


class WriteJSONMixIn:
    """Packs each value as one line of UTF-8 JSON (ending in a newline) and writes it."""

    def pack(self, data: Any) -> Any:
        """``data`` as one JSON line, in bytes; TypeError naming the pipe if it is not JSON."""
        try:
            return (json.dumps(data) + "\n").encode()
        except (TypeError, ValueError) as exc:
            pipe = f"pipe {getattr(self, 'id', '?')} is a {type(self).__name__}"
            raise TypeError(f"{pipe} and cannot carry {data!r}: {exc}") from None

    def write_stream(self, stream: BinaryIO, packed: Any) -> None:
        """Write one packed JSON line to a program's input."""
        stream.write(packed)

    def to_wire(self, value: Any) -> Any:
        """``encode(pack(value))``; a line frames itself, so no block size is checked."""
        return self.encode(self.pack(value))  # type: ignore[attr-defined]


class JSONMixIn(ReadJSONMixIn, WriteJSONMixIn):
    """Both JSON mixins: values travel as JSON lines."""


class PicklePipe(PickleMixIn, BasePipe):
    """Carries any picklable Python value (a program sees a pickle stream)."""

    BLOCK_SIZE = "PKL"


class JSONPipe(JSONMixIn, BasePipe):
    """Carries JSON values, one line of UTF-8 JSON each (``pack`` gives that line)."""

    BLOCK_SIZE = "JSON"


class BytesPipe(BasePipe):
    """Carries ``bytes`` blocks of exactly ``block_size`` bytes each.

    ``block_count`` > 1 hands the receiver that many blocks per round, as
    FISSION's ``BytesPipe(id, block_size, block_count)``.
    """

    def __init__(self, id: int, block_size: int, block_count: int = 1) -> None:
        super().__init__(id)
        if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size <= 0:
            raise ValueError(f"BytesPipe({id}): size must be a positive int, got {block_size!r}")
        if isinstance(block_count, bool) or not isinstance(block_count, int) or block_count < 1:
            raise ValueError(f"BytesPipe({id}): block_count must be an int >= 1")
        self.BLOCK_SIZE = block_size  # type: ignore[misc]
        self.BLOCK_COUNT = block_count  # type: ignore[misc]

    @property
    def size(self) -> int:
        return int(self.BLOCK_SIZE)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.id}, {self.size})"


class OptionalMixIn:
    """Makes a pipe an optional input: the receiver never waits for it.

    Each round the receiver takes the oldest buffered value. With an empty
    buffer it gets the last value it took when ``OPTIONAL_STORE`` is on (the default,
    as in FISSION), otherwise ``OPTIONAL_DEFAULT`` (also the value before anything arrived).
    ``OPTIONAL_BUFFER_SIZE`` bounds the buffer (0: unbounded); when it is
    full, ``OPTIONAL_DELETE_MODE`` says which value is dropped: ``'oldest'``
    (the buffer keeps the newest) or ``'newest'`` (the arriving one is dropped).
    """

    OPTIONAL: ClassVar[bool] = True
    ASYNC: ClassVar[bool] = True
    OPTIONAL_DEFAULT: ClassVar[Any] = None
    OPTIONAL_STORE: ClassVar[bool] = True
    OPTIONAL_BUFFER_SIZE: ClassVar[int] = 0
    OPTIONAL_DELETE_MODE: ClassVar[str] = "oldest"


class OptionalPicklePipe(OptionalMixIn, PicklePipe):
    """An optional input carrying any picklable value."""


class OptionalJSONPipe(OptionalMixIn, JSONPipe):
    """An optional input carrying JSON values."""


class OptionalBytesPipe(OptionalMixIn, BytesPipe):
    """An optional input carrying fixed-size byte blocks."""
