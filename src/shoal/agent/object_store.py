"""The data objects an agent holds, and how they move between agents.

Objects too big to travel inline live as files (blobs) or trees (dirs) under
``<root>/objects/<session>/<id>``, read-only once made. Peers fetch them from this
agent's data server: a plain TCP socket, one object per connection, guarded by
the data token the controller handed out. A directory travels as a tar archive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import msgspec

from shoal.graph.data_instance import DataInstance, remove_path

log = logging.getLogger("shoal.agent.graph")

_LEN = struct.Struct("!I")
_HEADER_LIMIT = 64 * 1024
CHUNK = 1024 * 1024
CONNECT_TIMEOUT = 5.0


class TransferError(Exception):
    """An object could not be had from a peer."""


class ObjectStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.objects = root / "objects"
        self.work = root / "work"
        self.incoming = root / "incoming"
        for folder in (self.objects, self.work, self.incoming):
            folder.mkdir(parents=True, exist_ok=True)

    def path(self, session: int, obj: int) -> Path:
        return self.objects / str(session) / str(obj)

    def has(self, session: int, obj: int) -> bool:
        return os.path.lexists(self.path(session, obj))

    def free(self, pairs: list[tuple[int, int]]) -> None:
        for session, obj in pairs:
            remove_path_quietly(self.path(session, obj))

    def drop_session(self, session: int) -> None:
        remove_path_quietly(self.objects / str(session))

    def clear(self) -> None:
        for folder in (self.objects, self.incoming):
            remove_path_quietly(folder)
            folder.mkdir(parents=True, exist_ok=True)

    def instance(self, session: int, obj: int) -> DataInstance:
        return DataInstance(path=self.path(session, obj))

    async def stream(self, session: int, obj: int) -> tuple[str, int, AsyncIterator[bytes]]:
        """``(data_type, size, chunks)`` of a held object; a dir as a tar archive."""
        path = self.path(session, obj)
        if not self.has(session, obj):
            raise TransferError(f"this node does not hold object ({session}, {obj})")
        if path.is_dir():
            data = await asyncio.to_thread(DataInstance(path=path).get_bytes)
            return "dir", len(data), _memory_chunks(data)
        return "blob", path.stat().st_size, _file_chunks(path)

    async def receive(
        self,
        session: int,
        obj: int,
        data_type: str,
        chunks: AsyncIterator[bytes],
    ) -> None:
        """Write an object arriving in ``chunks`` into the store (atomically)."""
        target = self.path(session, obj)
        if self.has(session, obj):
            return
        temp = self.incoming / f"{session}-{obj}-{os.getpid()}-{id(chunks)}"
        try:
            out = await asyncio.to_thread(open, temp, "wb")
            with out:
                async for data in chunks:
                    await asyncio.to_thread(out.write, data)
            target.parent.mkdir(parents=True, exist_ok=True)
            if data_type == "dir":
                archive = temp.read_bytes()
                staging = temp.with_suffix(".d")
                await asyncio.to_thread(DataInstance(archive, data_type="dir").write, staging)
                os.replace(staging, target)
            else:
                os.replace(temp, target)
        finally:
            remove_path_quietly(temp)
            remove_path_quietly(temp.with_suffix(".d"))


def remove_path_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        if os.path.lexists(path):
            remove_path(path)


async def _memory_chunks(data: bytes) -> AsyncIterator[bytes]:
    view = memoryview(data)
    for start in range(0, len(view), CHUNK):
        yield bytes(view[start : start + CHUNK])


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    f = await asyncio.to_thread(open, path, "rb")
    with f:
        while data := await asyncio.to_thread(f.read, CHUNK):
            yield data


# --- the data server and its client ------------------------------------------------


class _Request(msgspec.Struct):
    token: str
    session: int
    object: int


class _Header(msgspec.Struct, omit_defaults=True):
    error: str = ""
    data_type: str = "blob"
    size: int = 0


async def _read_prefixed(reader: asyncio.StreamReader) -> bytes:
    (size,) = _LEN.unpack(await reader.readexactly(_LEN.size))
    if size > _HEADER_LIMIT:
        raise TransferError(f"header of {size} bytes is too big")
    return await reader.readexactly(size)


def _prefixed(message: msgspec.Struct) -> bytes:
    body = msgspec.msgpack.encode(message)
    return _LEN.pack(len(body)) + body


class DataServer:
    """Serves held objects to peers that show the data token."""

    def __init__(self, store_of: Callable[[], ObjectStore | None], token_of: Callable[[], str]):
        self._store_of = store_of
        self._token_of = token_of
        self.server: asyncio.Server | None = None

    async def start(self, host: str = "0.0.0.0") -> int:
        self.server = await asyncio.start_server(self._serve, host, 0)
        return self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = msgspec.msgpack.decode(
                await asyncio.wait_for(_read_prefixed(reader), CONNECT_TIMEOUT), type=_Request
            )
            token, store = self._token_of(), self._store_of()
            if not token or request.token != token:
                writer.write(_prefixed(_Header(error="wrong data token")))
                return
            if store is None:
                writer.write(_prefixed(_Header(error="this node holds no graph objects")))
                return
            try:
                data_type, size, chunks = await store.stream(request.session, request.object)
            except TransferError as exc:
                writer.write(_prefixed(_Header(error=str(exc))))
                return
            writer.write(_prefixed(_Header(data_type=data_type, size=size)))
            async for data in chunks:
                writer.write(data)
                await writer.drain()
        except (OSError, TimeoutError, asyncio.IncompleteReadError, TransferError) as exc:
            log.info("a peer's object request failed: %s", exc)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("malformed object request: %s", exc)
        finally:
            with contextlib.suppress(OSError):
                await writer.drain()
            writer.close()


async def fetch_from_peer(
    address: str,
    token: str,
    session: int,
    obj: int,
    receive: Callable[[str, AsyncIterator[bytes]], Awaitable[None]],
) -> None:
    """Fetch an object from the data server at ``host:port``; hand its data to ``receive``."""
    host, _, port = address.rpartition(":")
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host.strip("[]"), int(port)), CONNECT_TIMEOUT
        )
    except (OSError, TimeoutError, ValueError) as exc:
        raise TransferError(f"cannot reach {address}: {exc}") from None
    try:
        writer.write(_prefixed(_Request(token, session, obj)))
        header = msgspec.msgpack.decode(await _read_prefixed(reader), type=_Header)
        if header.error:
            raise TransferError(f"{address}: {header.error}")

        async def body() -> AsyncIterator[bytes]:
            left = header.size
            while left > 0:
                data = await reader.read(min(CHUNK, left))
                if not data:
                    raise TransferError(f"{address} closed the transfer early")
                left -= len(data)
                yield data

        await receive(header.data_type, body())
    except (OSError, asyncio.IncompleteReadError, msgspec.DecodeError) as exc:
        raise TransferError(f"fetching from {address} failed: {exc}") from None
    finally:
        writer.close()


__all__ = [
    "DataServer",
    "ObjectStore",
    "TransferError",
    "fetch_from_peer",
]
