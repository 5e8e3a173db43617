"""The data objects an agent holds, and how they move between agents.

Objects too big to travel inline (to the controller) but under
:data:`MEMORY_LIMIT` stay in the agent's memory, as the task's worker handed
them over, and are sent from there. Bigger ones, and any once the memory
budget is spent, live as files (blobs) or trees (dirs) under
``<root>/objects/<session>/<id>``, read-only once made, and stream from disk.

A peer (or the controller) fetches an object over a channel to the object's
own endpoint here (:func:`~shoal.protocol.graph_messages.object_endpoint`): the
channel server opens it only with a capability the controller signed for that
object, that reader and a short time; this side sends a header and the data,
the reader closes. A directory travels as a tar archive.

With user isolation the root and ``objects/`` may be passed through but not
listed by others, and each session's folder belongs to its user's account, 0700.

What is freed leaves at once and is deleted later: it is renamed into
``<root>/trash`` (one quick call) and :meth:`ObjectStore.sweep` deletes it in a
thread. Deleting is slow for big or many files (5 GB of 5 MB objects took 2 s
on the development VM), and in the event loop it would hold up the agent's
heartbeats (the controller takes 5 s of silence for a lost node), its channels
and every other session's tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import logging
import os
import shutil
import stat
import tarfile
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import BinaryIO

from shoal.agent.isolation import Account, private_folder
from shoal.channel import AsyncChannel, ChannelError
from shoal.graph.data_instance import DataInstance, remove_path
from shoal.graph.transfer import TransferError, read_batches, read_header, send_object
from shoal.protocol.graph_messages import CHUNK, parse_object_endpoint

log = logging.getLogger("shoal.agent.graph")

# An object up to this size stays in memory. Up to here, handing the bytes over
# (worker -> agent -> channel) costs less than writing a file and reading it
# back; past it, memory held per object grows while the saving stays one copy,
# and the disk streams as fast as the wire takes it.
MEMORY_LIMIT = 1024 * 1024
# All objects held in memory together: past it, new ones go to disk, so many
# mid-size objects cannot grow an agent without bound.
MEMORY_BUDGET = 256 * 1024 * 1024
# Disk that fetching inputs ahead of their tasks leaves free, at least: a task
# fetches what did not come ahead when it runs, and needs room to work.
DISK_RESERVE = 1024 * 1024 * 1024
# Blobs this agent writes are read-only from the start: objects never change, and
# a task of another account (with isolation) need not chmod the agent's file to
# link it read-only (it could not).
READ_ONLY = 0o444
# Reads that take only what the page cache holds (Linux); 0 where there are none.
_RWF_NOWAIT: int = getattr(os, "RWF_NOWAIT", 0)
_nowait = bool(_RWF_NOWAIT)
# Buffers one writev takes at most (the POSIX minimum of IOV_MAX).
IOV_MAX = 1024


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
        self.trash = root / "trash"
        private_folder(self.trash, None)
        self._discarded = itertools.count()
        # Set when something was put in the trash; the sweeper clears it.
        self._litter = asyncio.Event()
        self._swept = asyncio.Event()  # set when the trash was found empty
        if any(self.trash.iterdir()):
            self._litter.set()  # left by an agent that stopped before it swept
        else:
            self._swept.set()
        self._memory: dict[tuple[int, int], bytes] = {}
        self.memory_bytes = 0

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
        return (session, obj) in self._memory or os.path.lexists(self.path(session, obj))

    def held(self, session: int, obj: int) -> bytes | None:
        """The object's data if it is held in memory (a mid-size blob)."""
        return self._memory.get((session, obj))

    def hold(self, session: int, obj: int, data: bytes) -> bool:
        """Keep a blob in memory if it is small enough and the budget allows."""
        if len(data) > MEMORY_LIMIT or self.memory_bytes + len(data) > MEMORY_BUDGET:
            return False
        if (session, obj) not in self._memory:
            self._memory[session, obj] = data
            self.memory_bytes += len(data)
        return True

    def has_room(self, size: int) -> bool:
        """Whether an object of ``size`` bytes fits here with room to spare: in
        the memory budget, or on the disk leaving :data:`DISK_RESERVE` free."""
        if size <= MEMORY_LIMIT and self.memory_bytes + size <= MEMORY_BUDGET:
            return True
        return shutil.disk_usage(self.incoming).free - size >= DISK_RESERVE

    def put(self, session: int, obj: int, data: bytes) -> None:
        """Keep a blob: in memory if it may be, else as its file."""
        if self.hold(session, obj, data) or self.has(session, obj):
            return
        target = self.path(session, obj)
        temp = self.incoming / f"{session}-{obj}-put"
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            temp.write_bytes(data)
            os.chmod(temp, READ_ONLY)
            os.replace(temp, target)
        finally:
            remove_path_quietly(temp)

    def _forget(self, key: tuple[int, int]) -> None:
        data = self._memory.pop(key, None)
        if data is not None:
            self.memory_bytes -= len(data)

    def free(self, pairs: list[tuple[int, int]]) -> None:
        for session, obj in pairs:
            self._forget((session, obj))
            self.discard(self.path(session, obj))

    def drop_session(self, session: int) -> None:
        for key in [k for k in self._memory if k[0] == session]:
            self._forget(key)
        self.discard(self.objects / str(session))

    def clear(self) -> None:
        self._memory.clear()
        self.memory_bytes = 0
        for folder in (self.objects, self.incoming):
            mode = folder.stat().st_mode & 0o777
            self.discard(folder)
            folder.mkdir(parents=True, exist_ok=True)
            os.chmod(folder, mode)

    def discard(self, path: Path) -> None:
        """Take ``path`` (a file or a folder under the root) out of the store now;
        :meth:`sweep` deletes it. A path that is not there is no error."""
        try:
            os.rename(path, self.trash / f"{next(self._discarded)}-{path.name}")
        except OSError as exc:
            if not os.path.lexists(path):
                return
            # The trash is gone, or on another file system: deleted here, as before.
            log.warning("cannot move %s to the trash (%s); deleting it now", path, exc)
            remove_path_quietly(path)
            return
        self._swept.clear()
        self._litter.set()

    async def sweep(self) -> None:
        """Delete what was discarded, in a thread, for as long as the agent runs."""
        while True:
            await self._litter.wait()
            self._litter.clear()
            await asyncio.to_thread(self._empty_trash)
            if not self._litter.is_set():
                self._swept.set()

    async def swept(self) -> None:
        """Return once everything discarded so far is deleted (a sweeper runs)."""
        await self._swept.wait()

    def _empty_trash(self) -> None:
        try:
            entries = list(os.scandir(self.trash))
        except OSError as exc:
            log.warning("cannot read the trash %s: %s", self.trash, exc)
            return
        for entry in entries:
            try:
                remove_path_quietly(Path(entry.path))
            except OSError as exc:
                # Left for the next sweep (or the next agent): an undeletable
                # entry must not stop the others, nor the sweeper.
                log.warning("cannot delete %s: %s", entry.path, exc)

    def instance(self, session: int, obj: int) -> DataInstance:
        return DataInstance(path=self.path(session, obj))

    async def stream(self, session: int, obj: int) -> tuple[str, int, AsyncIterator[bytes]]:
        """``(data_type, size, chunks)`` of a held object; a dir as a tar archive."""
        held = self._memory.get((session, obj))
        if held is not None:
            return "blob", len(held), _memory_chunks(held)
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
                archive = await asyncio.to_thread(_tar_tree, fd, self.incoming)
            finally:
                os.close(fd)
            return "dir", archive.tell(), _file_chunks(archive, rewind=True)
        if not stat.S_ISREG(mode):
            os.close(fd)
            raise TransferError(f"object ({session}, {obj}) is neither a file nor a folder")
        return "blob", os.fstat(fd).st_size, _blob_chunks(fd)

    async def receive(
        self,
        session: int,
        obj: int,
        data_type: str,
        size: int,
        batches: AsyncIterator[list[bytes]],
    ) -> None:
        """Keep an object of ``size`` bytes arriving in ``batches`` of chunks: a
        mid-size blob in memory, else written into the store (atomically).

        Each batch (what arrived while the previous one was written) is written
        in one call in a thread: one thread hop per batch, not per chunk, so a
        busy machine, where every hop waits for a time slice, does not slow the
        transfer down to the pace of its scheduler."""
        target = self.path(session, obj)
        if self.has(session, obj):
            return
        if data_type == "blob" and size <= MEMORY_LIMIT:
            parts = [data async for batch in batches for data in batch]
            self.put(session, obj, b"".join(parts))
            return
        temp = self.incoming / f"{session}-{obj}-{os.getpid()}-{id(batches)}"
        fd: int | None = None
        try:
            async for batch in batches:
                fd = await asyncio.to_thread(_write_batch, temp, fd, batch)
            if fd is None:  # an empty object: nothing came to open the file for
                fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.close(fd)
            fd = None
            target.parent.mkdir(parents=True, exist_ok=True)
            if data_type == "dir":
                staging = temp.with_suffix(".d")
                await asyncio.to_thread(_unpack, temp, staging)
                os.replace(staging, target)
            else:
                os.chmod(temp, READ_ONLY)
                os.replace(temp, target)
        finally:
            if fd is not None:
                os.close(fd)
            # What a transfer that failed half-way left (a big file, maybe).
            self.discard(temp)
            self.discard(temp.with_suffix(".d"))


def _write_batch(path: Path, fd: int | None, batch: list[bytes]) -> int:
    """Write ``batch`` at the end of the file ``fd`` (opened first, as a new
    file at ``path``, when None); returns the descriptor."""
    if fd is None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    for start in range(0, len(batch), IOV_MAX):
        parts = [memoryview(b) for b in batch[start : start + IOV_MAX]]
        while parts:
            written = os.writev(fd, parts)
            # A regular file takes the whole write unless the disk is full
            # (which raises); a short one is finished all the same.
            while parts and written >= len(parts[0]):
                written -= len(parts[0])
                parts.pop(0)
            if parts and written:
                parts[0] = parts[0][written:]
    return fd


def _unpack(archive: Path, target: Path) -> None:
    DataInstance(archive.read_bytes(), data_type="dir").write(target)


def remove_path_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        if os.path.lexists(path):
            remove_path(path)


async def _memory_chunks(data: bytes) -> AsyncIterator[bytes]:
    if len(data) <= CHUNK:
        yield data  # no copy
        return
    view = memoryview(data)
    for start in range(0, len(view), CHUNK):
        yield bytes(view[start : start + CHUNK])


def _tar_tree(top: int, spill: Path) -> BinaryIO:
    """A tar of the tree under the open folder ``top``, as DataInstance makes one
    (sorted entries, no owners), read without following any symlink. A small
    one is kept in memory; past MEMORY_LIMIT it goes to an unlinked file in
    ``spill``, so a big tree never sits in memory whole."""
    archive = tempfile.SpooledTemporaryFile(MEMORY_LIMIT, dir=spill)  # noqa: SIM115
    try:
        with tarfile.open(fileobj=archive, mode="w", format=tarfile.PAX_FORMAT) as tar:
            _add_entries(tar, top, "")
    except BaseException:
        archive.close()
        raise
    return archive  # type: ignore[return-value]


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


async def _blob_chunks(fd: int) -> AsyncIterator[bytes]:
    """The data of the open file ``fd`` in CHUNKs (it is closed at the end).

    What the page cache holds (an object made or received here a moment ago:
    the usual case) is read in the event loop, without blocking: a copy from
    the cache costs less than handing the read to a thread, and far less on a
    busy machine, where each hop waits for a time slice. Only what must come
    from the disk is read in a thread."""
    global _nowait
    try:
        size = os.fstat(fd).st_size
        offset = 0
        while offset < size:
            buffer = bytearray(min(CHUNK, size - offset))
            view = memoryview(buffer)
            got = 0
            if _nowait:
                try:
                    got = os.preadv(fd, [view], offset, _RWF_NOWAIT)
                except BlockingIOError:
                    pass  # not in the cache: from the disk, below
                except OSError as exc:
                    if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                        raise
                    _nowait = False  # this kernel or file system cannot: threads from now on
            while got < len(buffer):
                more = await asyncio.to_thread(os.preadv, fd, [view[got:]], offset + got)
                if not more:
                    raise TransferError("the object's file ended before its size")
                got += more
            offset += got
            yield buffer  # type: ignore[misc]  # bytes-like; the channel encodes it as bytes
    finally:
        os.close(fd)


async def _file_chunks(f: BinaryIO, rewind: bool = False) -> AsyncIterator[bytes]:
    with f:
        if rewind:
            f.seek(0)
        while data := await asyncio.to_thread(f.read, CHUNK):
            yield data


# --- an object's endpoint, and fetching from one --------------------------------------


async def serve_object(store: ObjectStore | None, channel: AsyncChannel) -> None:
    """Send the object ``channel``'s endpoint names. The channel server checked the
    capability already: the controller granted this object to this opener (a
    node running a task that reads it, or the controller itself)."""
    key = parse_object_endpoint(channel.endpoint)
    if key is None or store is None:
        await channel.close(f"this node holds no object {channel.endpoint!r}")
        return
    try:
        data_type, size, chunks = await store.stream(*key)
    except TransferError as exc:
        await channel.close(str(exc))
        return
    await send_object(channel, data_type, size, chunks)


async def receive_object(
    channel: AsyncChannel,
    receive: Callable[[str, int, AsyncIterator[list[bytes]]], Awaitable[None]],
) -> None:
    """Read an object from ``channel`` (opened to its endpoint on a holder) and hand
    its type, size and data (in batches, as they arrive) to ``receive``; then
    close the channel."""
    try:
        header = await read_header(channel)
        await receive(header.data_type, header.size, read_batches(channel, header))
        try:
            await channel.close()
        except ChannelError as exc:
            raise TransferError(str(exc)) from None
    finally:
        await channel.aclose()


__all__ = [
    "MEMORY_LIMIT",
    "ObjectStore",
    "TransferError",
    "receive_object",
    "serve_object",
]
