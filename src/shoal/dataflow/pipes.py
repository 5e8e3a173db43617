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

from shoal.dataflow import registry

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

    As in FISSION, a pipe is cached by id: ``PicklePipe(5) is PicklePipe(5)``
    until :func:`shoal.dataflow.base.reset`, and ``source``/``destination``
    name the jobs that list it as an output/input. Where a program reads or
    writes the pipe as a byte stream, FISSION's ``write(file_obj, data)`` and
    ``read(file_obj)`` frame each value; override both for a protocol of your
    own (between two Python jobs shoal carries values itself and calls neither).
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

    def __new__(cls, id: int | None = None, *args: Any, **kwargs: Any) -> BasePipe:
        # FISSION handed back the pipe already made for an id, so the same id
        # in two jobs' lists is one object. A different class for a cached id
        # makes a new pipe; loading the network reports the clash by job name.
        # (Unpickling calls __new__ without an id: that copy is never cached.)
        cacheable = isinstance(id, int) and not isinstance(id, bool)
        cached = registry.PIPES.get(id) if cacheable else None
        if cached is not None and type(cached) is cls:
            return cached
        pipe = super().__new__(cls)
        pipe._source = None
        pipe._destination = None
        if cacheable:
            registry.PIPES[id] = pipe
        return pipe

    def __init__(self, id: int) -> None:
        if isinstance(id, bool) or not isinstance(id, int):
            raise TypeError(f"a pipe id must be an int, got {id!r}")
        self.id = id

    # -- the jobs at either end, as FISSION's pipes knew them

    @property
    def source(self) -> Any:
        """The job that lists this pipe in its outputs (the last one made, if several)."""
        return getattr(self, "_source", None)

    @source.setter
    def source(self, job: Any) -> None:
        # FISSION raised on a second source here; shoal lets the network check
        # name every job at fault when it loads, so building never fails halfway.
        self._source = job

    @property
    def destination(self) -> Any:
        """The job that lists this pipe in its inputs (the last one made, if several)."""
        return getattr(self, "_destination", None)

    @destination.setter
    def destination(self, job: Any) -> None:
        self._destination = job

    def complete(self) -> bool:
        """True when both ends of the pipe are known."""
        return self.source is not None and self.destination is not None

    def __getstate__(self) -> dict[str, Any]:
        # The end jobs stay behind: a pipe travels inside its job, and the job
        # at the other end (its files, threads, queues) must not travel with it.
        state = self.__dict__.copy()
        state.pop("_source", None)
        state.pop("_destination", None)
        return state

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
        """``encode(pack(value))``, with a fixed ``BLOCK_SIZE`` checked (unless the
        pipe frames values itself with its own ``write``)."""
        data = self.pack(value)
        size = self.block_bytes
        if size is not None and type(self).write is BasePipe.write:
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

    # -- FISSION's stream protocol: how a value is framed where a program reads
    # or writes the pipe (its stdin/stdout or descriptors). Override read() and
    # write() together for a protocol of your own, as in FISSION.

    def read(self, file_obj: BinaryIO) -> Any:
        """One packed value from ``file_obj``: ``BLOCK_SIZE`` bytes by default.

        Raises EOFError at the stream's end (FISSION's ``exit(0)`` there is
        taken as the end too)."""
        size = self.block_bytes
        if size is None:
            raise TypeError(
                f"pipe {self.id}: a {type(self).__name__} has no fixed BLOCK_SIZE, so a "
                "program's stream cannot be cut into values; give it an int BLOCK_SIZE, "
                "mix in PickleMixIn or JSONMixIn, or override read() and write()"
            )
        return _read_exactly(file_obj, size)

    def read_wrapper(self, file_obj: BinaryIO) -> Any:
        """FISSION's read on the sending side; shoal frames streams with :meth:`read` alone."""
        return self.read(file_obj)

    def write(self, file_obj: BinaryIO, data: Any) -> Any:
        """Write one packed value to ``file_obj`` (bytes by default)."""
        if not isinstance(data, bytes | bytearray):
            raise TypeError(
                f"pipe {self.id}: a program reads bytes, pack() gave {data!r}; "
                "make pack() return bytes, or override write() to frame it"
            )
        return file_obj.write(data)

    def read_head(self, file_obj: BinaryIO) -> int:
        """One head from a stream: ``HEAD_SIZE`` big-endian bytes."""
        size = getattr(self, "_head_size", 1)
        raw = file_obj.read(size)
        if len(raw) < size:
            raise EOFError("the stream ended")
        return int.from_bytes(raw, "big")

    def write_head(self, file_obj: BinaryIO, head: int) -> Any:
        """Write one head to a stream: ``HEAD_SIZE`` big-endian bytes."""
        return file_obj.write(int(head).to_bytes(getattr(self, "_head_size", 1), "big"))

    def read_stream(self, stream: BinaryIO) -> Any:
        """One packed value from a program's byte stream (raises EOFError at its end)."""
        try:
            return self.read(stream)
        except SystemExit:
            raise EOFError("the stream ended") from None

    def write_stream(self, stream: BinaryIO, packed: Any) -> None:
        """Write one packed value to a program's byte stream."""
        self.write(stream, packed)

    @property
    def streams(self) -> bool:
        """True when the pipe can frame values on a byte stream (a fixed
        ``BLOCK_SIZE``, a pickle or JSON mixin, or a ``read`` of its own)."""
        return self.block_bytes is not None or type(self).read is not BasePipe.read

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
# pipes; shoal moves values between Python jobs itself, so here read() and
# write() serve where a byte stream is left: a program's output and input.
# The JSON mixins also give pack()/unpack().
# Put them before the pipe class, as in FISSION: ``class P(PickleMixIn, BasePipe)``.


class ReadPickleMixIn:
    """Reads each value as one pickle from a stream (no ``BLOCK_SIZE`` needed)."""

    def read(self, file_obj: BinaryIO) -> Any:
        """One value, unpickled; EOFError at the stream's end (or on a broken pickle)."""
        try:
            return pickle.load(file_obj)
        except EOFError:
            raise
        except (pickle.UnpicklingError, ValueError) as exc:
            pipe = getattr(self, "id", "?")
            raise EOFError(f"pipe {pipe}: not a pickle: {exc}") from None


class WritePickleMixIn:
    """Writes each value as one pickle, so any picklable value travels, whatever
    ``BLOCK_SIZE`` the pipe class it is mixed into has."""

    def write(self, file_obj: BinaryIO, data: Any) -> None:
        """Write ``data`` as one pickle (it frames itself: no block size is checked)."""
        pickle.dump(data, file_obj)


class PickleMixIn(ReadPickleMixIn, WritePickleMixIn):
    """Both pickle mixins: values are pickled both ways; ``pack``/``unpack`` stay as they are."""


class ReadJSONMixIn:
    """Reads each value as one line of UTF-8 JSON and decodes it in ``unpack``."""

    def read(self, file_obj: BinaryIO) -> Any:
        """One JSON line as bytes; EOFError at the stream's end."""
        line = file_obj.readline()
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

    def write(self, file_obj: BinaryIO, data: Any) -> None:
        """Write one packed JSON line (it frames itself: no block size is checked)."""
        file_obj.write(data)


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
