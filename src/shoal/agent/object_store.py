"""The data objects an agent holds, and how they move between agents.

Objects too big to travel inline live as files (blobs) or trees (dirs) under
``<root>/objects/<session>/<id>``, read-only once made. Peers fetch them from this
agent's data server: a plain TCP socket, one object per connection, opened only
by a capability the controller signed for that object, that reader and a short
time (:mod:`shoal.protocol.capabilities`). A directory travels as a tar archive.

With user isolation the root and ``objects/`` may be passed through but not
listed by others, and each session's folder belongs to its user's account, 0700.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import stat
import struct
import tarfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import BinaryIO

import msgspec

from shoal.agent.isolation import Account, private_folder
from shoal.graph.data_instance import DataInstance, remove_path
from shoal.protocol import capabilities

log = logging.getLogger("shoal.agent.graph")

_LEN = struct.Struct("!I")
_HEADER_LIMIT = 64 * 1024
CHUNK = 1024 * 1024
CONNECT_TIMEOUT = 5.0


class TransferError(Exception):
    """An object could not be had from a peer."""


class ObjectStore:
    """The graph objects this agent holds, and the folders its tasks work in.

    ``isolated``: other accounts run tasks here, so the shared folders are
    passable (0711) but not listable, and each user's folders are their own.
    """

    def __init__(self, root: Path, isolated: bool = False) -> None:
        self.root = root
        self.objects = root / "objects"
        self.work = root / "work"
        self.incoming = root / "incoming"
        shared = 0o711 if isolated else 0o700
        root.mkdir(parents=True, exist_ok=True)
        os.chmod(root, shared)
        for folder in (self.objects, self.work):
            folder.mkdir(exist_ok=True)
            os.chmod(folder, shared)
        private_folder(self.incoming, None)

    def prepare_session(self, session: int, account: Account) -> None:
        """The session's object folder, owned by the account that runs its tasks."""
        private_folder(self.objects / str(session), account)

    def work_dir(self, account: Account | None) -> Path:
        """Where the account's task workers keep their working folders."""
        if account is None:
            return self.work
        folder = self.work / account.name
        private_folder(folder, account)
        return folder

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
            mode = folder.stat().st_mode & 0o777
            remove_path_quietly(folder)
            folder.mkdir(parents=True, exist_ok=True)
            os.chmod(folder, mode)

    def instance(self, session: int, obj: int) -> DataInstance:
        return DataInstance(path=self.path(session, obj))

    async def stream(self, session: int, obj: int) -> tuple[str, int, AsyncIterator[bytes]]:
        """``(data_type, size, chunks)`` of a held object; a dir as a tar archive."""
        path = self.path(session, obj)
        if not self.has(session, obj):
            raise TransferError(f"this node does not hold object ({session}, {obj})")
        # A task may own the folder an object is in (user isolation) and swap
        # parts of it for links to files only this agent may read: nothing is
        # followed, everything is opened relative to a folder already open.
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as exc:
            raise TransferError(f"object ({session}, {obj}) cannot be read: {exc}") from None
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            try:
                data = await asyncio.to_thread(_tar_tree, fd)
            finally:
                os.close(fd)
            return "dir", len(data), _memory_chunks(data)
        if not stat.S_ISREG(mode):
            os.close(fd)
            raise TransferError(f"object ({session}, {obj}) is neither a file nor a folder")
        f = os.fdopen(fd, "rb")
        return "blob", os.fstat(fd).st_size, _file_chunks(f)

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


def _tar_tree(top: int) -> bytes:
    """A tar of the tree under the open folder ``top``, as DataInstance makes one
    (sorted entries, no owners), read without following any symlink."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add_entries(tar, top, "")
    return buffer.getvalue()


def _add_entries(tar: tarfile.TarFile, folder: int, prefix: str) -> None:
    for name in sorted(os.listdir(folder)):
        st = os.stat(name, dir_fd=folder, follow_symlinks=False)
        info = tarfile.TarInfo(prefix + name)
        info.mode, info.mtime = stat.S_IMODE(st.st_mode), int(st.st_mtime)
        if stat.S_ISLNK(st.st_mode):
            info.type, info.linkname = tarfile.SYMTYPE, os.readlink(name, dir_fd=folder)
            tar.addfile(info)
            continue
        if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
            continue  # a fifo or device is no data
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=folder)
        try:
            opened = os.fstat(fd)
            if stat.S_ISDIR(opened.st_mode):
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
                _add_entries(tar, fd, f"{info.name}/")
            elif stat.S_ISREG(opened.st_mode):
                info.size = opened.st_size
                with os.fdopen(os.dup(fd), "rb") as f:
                    tar.addfile(info, f)
        finally:
            os.close(fd)


async def _file_chunks(f: BinaryIO) -> AsyncIterator[bytes]:
    with f:
        while data := await asyncio.to_thread(f.read, CHUNK):
            yield data


# --- the data server and its client ------------------------------------------------


class _Request(msgspec.Struct):
    session: int
    object: int
    reader: str  # the node that fetches, as the capability names it
    capability: str
    expires: float


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
    """Serves a held object to a peer that shows a capability for it.

    ``key_of`` gives this agent's data key and the offset of the controller's
    clock from ours (capabilities expire by the controller's clock).
    """

    def __init__(
        self,
        store_of: Callable[[], ObjectStore | None],
        key_of: Callable[[], tuple[bytes, float]],
    ) -> None:
        self._store_of = store_of
        self._key_of = key_of
        self.server: asyncio.Server | None = None
        self.host = ""

    async def start(self, host: str) -> int:
        """Listen on ``host`` (a free port); the port."""
        self.close()
        self.server = await asyncio.start_server(self._serve, host, 0)
        self.host = host
        return self.server.sockets[0].getsockname()[1]

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = msgspec.msgpack.decode(
                await asyncio.wait_for(_read_prefixed(reader), CONNECT_TIMEOUT), type=_Request
            )
            key, offset = self._key_of()
            refused = capabilities.check(
                key,
                request.capability,
                request.session,
                request.object,
                request.reader,
                request.expires,
                time.time() + offset,
            )
            if refused:
                log.warning(
                    "refused object (%d, %d) to %r: %s",
                    request.session,
                    request.object,
                    request.reader,
                    refused,
                )
                writer.write(_prefixed(_Header(error=refused)))
                return
            store = self._store_of()
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
    session: int,
    obj: int,
    reader: str,
    capability: str,
    expires: float,
    receive: Callable[[str, AsyncIterator[bytes]], Awaitable[None]],
) -> None:
    """Fetch an object from the data server at ``host:port`` with the capability the
    controller gave ``reader`` for it; hand its data to ``receive``."""
    host, _, port = address.rpartition(":")
    try:
        stream, writer = await asyncio.wait_for(
            asyncio.open_connection(host.strip("[]"), int(port)), CONNECT_TIMEOUT
        )
    except (OSError, TimeoutError, ValueError) as exc:
        raise TransferError(f"cannot reach {address}: {exc}") from None
    try:
        writer.write(_prefixed(_Request(session, obj, reader, capability, expires)))
        header = msgspec.msgpack.decode(await _read_prefixed(stream), type=_Header)
        if header.error:
            raise TransferError(f"{address}: {header.error}")

        async def body() -> AsyncIterator[bytes]:
            left = header.size
            while left > 0:
                data = await stream.read(min(CHUNK, left))
                if not data:
                    raise TransferError(f"{address} closed the transfer early")
                left -= len(data)
                yield data

        await receive(header.data_type, body())
    except (
        OSError,
        asyncio.IncompleteReadError,
        msgspec.DecodeError,
        msgspec.ValidationError,
    ) as exc:
        raise TransferError(f"fetching from {address} failed: {exc}") from None
    finally:
        writer.close()


__all__ = [
    "DataServer",
    "ObjectStore",
    "TransferError",
    "fetch_from_peer",
]
