"""The agent's object store on its own: which objects stay in memory, and freeing."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from shoal.agent import object_store
from shoal.agent.object_store import MEMORY_LIMIT, ObjectStore


async def _read(store: ObjectStore, session: int, obj: int) -> tuple[str, int, bytes]:
    data_type, size, chunks = await store.stream(session, obj)
    return data_type, size, b"".join([c async for c in chunks])


def test_mid_size_objects_stay_in_memory_and_big_ones_on_disk(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "graph")
    mid, big = b"m" * MEMORY_LIMIT, b"b" * (MEMORY_LIMIT + 1)
    store.put(1, 1, mid)
    store.put(1, 2, big)
    assert store.held(1, 1) is mid and not store.path(1, 1).exists()
    assert store.held(1, 2) is None and store.path(1, 2).read_bytes() == big
    assert asyncio.run(_read(store, 1, 1)) == ("blob", len(mid), mid)
    assert asyncio.run(_read(store, 1, 2)) == ("blob", len(big), big)
    store.free([(1, 1), (1, 2)])
    assert not store.has(1, 1) and not store.has(1, 2) and store.memory_bytes == 0


def test_the_memory_budget_sends_the_rest_to_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(object_store, "MEMORY_BUDGET", 3 * 1000)
    store = ObjectStore(tmp_path / "graph")
    for obj in range(5):
        store.put(7, obj, bytes([obj]) * 1000)
    assert [store.held(7, obj) is not None for obj in range(5)] == [True] * 3 + [False] * 2
    assert store.path(7, 4).read_bytes() == b"\x04" * 1000
    store.drop_session(7)
    assert store.memory_bytes == 0 and not store.has(7, 0) and not store.has(7, 4)


def test_received_objects_go_where_their_size_says(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "graph")

    async def batches(data: bytes, per_batch: int = 3):
        # As a channel hands them over: a few chunks at a time.
        chunks = [data[start : start + 100_000] for start in range(0, len(data), 100_000)]
        for start in range(0, len(chunks), per_batch):
            yield chunks[start : start + per_batch]

    mid, big = b"x" * 300_000, b"y" * (MEMORY_LIMIT + 5)
    asyncio.run(store.receive(2, 1, "blob", len(mid), batches(mid)))
    asyncio.run(store.receive(2, 2, "blob", len(big), batches(big)))
    assert store.held(2, 1) == mid and store.held(2, 2) is None
    assert store.path(2, 2).read_bytes() == big
    assert not list(store.incoming.iterdir())  # nothing left half-written


def test_a_big_blob_is_sent_whole_in_chunks(tmp_path: Path) -> None:
    """A file of several chunks (and a piece) streams back exactly, read from the
    page cache in the event loop or from the disk in a thread alike."""
    store = ObjectStore(tmp_path / "graph")
    big = bytes(range(256)) * (3 * object_store.CHUNK // 256) + b"tail"
    store.put(3, 1, big)
    assert asyncio.run(_read(store, 3, 1)) == ("blob", len(big), big)


def test_reads_without_the_page_cache_still_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(object_store, "_nowait", False)
    store = ObjectStore(tmp_path / "graph")
    big = b"z" * (2 * object_store.CHUNK + 7)
    store.put(3, 2, big)
    assert asyncio.run(_read(store, 3, 2)) == ("blob", len(big), big)


def test_freed_objects_leave_at_once_and_are_deleted_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deleting 5 GB took the development VM 2 s: in the agent's loop it would
    hold its heartbeats up. The objects are gone from the store at once; the
    files go in a thread."""
    deleted_in: list[int] = []
    remove_path = object_store.remove_path

    def recording(path: Path) -> None:
        deleted_in.append(threading.get_ident())
        remove_path(path)

    monkeypatch.setattr(object_store, "remove_path", recording)
    big = b"b" * (MEMORY_LIMIT + 1)

    async def main() -> int:
        store = ObjectStore(tmp_path / "graph")
        for obj in range(3):
            store.put(1, obj, big)
        store.put(2, 0, big)
        async with asyncio.TaskGroup() as tg:
            sweeper = tg.create_task(store.sweep())
            store.free([(1, 0), (1, 1)])
            store.drop_session(2)
            assert [store.has(1, 0), store.has(1, 1), store.has(2, 0)] == [False] * 3
            async with asyncio.timeout(10):
                await store.swept()
            sweeper.cancel()
        assert not any(store.trash.iterdir())
        assert store.path(1, 2).read_bytes() == big  # the one not freed is untouched
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    assert deleted_in and loop_thread not in deleted_in


def test_what_a_stopped_agent_left_in_the_trash_is_swept_by_the_next(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "graph")
    store.put(1, 1, b"b" * (MEMORY_LIMIT + 1))
    store.free([(1, 1)])  # no sweeper ran: the agent stopped
    assert any(store.trash.iterdir())

    async def next_agent() -> ObjectStore:
        again = ObjectStore(tmp_path / "graph")
        async with asyncio.TaskGroup() as tg:
            sweeper = tg.create_task(again.sweep())
            async with asyncio.timeout(10):
                await again.swept()
            sweeper.cancel()
        return again

    assert not any(asyncio.run(next_agent()).trash.iterdir())


def test_a_store_that_lost_its_trash_deletes_at_once(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "graph")
    store.put(1, 1, b"b" * (MEMORY_LIMIT + 1))
    store.trash.rmdir()  # removed by hand, say
    store.free([(1, 1)])
    assert not store.has(1, 1) and not store.path(1, 1).exists()
