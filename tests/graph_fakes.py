"""An in-memory graph transport for client-side tests, and its fixtures ``transport``
and ``session`` (loaded by conftest.py): what reaches the transport is recorded,
and failures can be set up."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import pytest

from shoal.graph.attributes import ObjectInfo, ObjectSpec, TaskInfo, TaskSpec
from shoal.graph.data_instance import DataInstance
from shoal.graph.ids import ID
from shoal.graph.session import Session, SessionException


class FakeTransport:
    """Records everything; fetch gives constants back or what ``results`` holds."""

    def __init__(self) -> None:
        self.opened: list[str] = []
        self.closed: list[int] = []
        self.submits: list[dict[str, Any]] = []
        self.task_ids: set[ID] = set()
        self.payloads: dict[ID, bytes] = {}
        self.results: dict[ID, DataInstance] = {}
        self.infos: dict[ID, TaskInfo | ObjectInfo] = {}
        self.waited: list[list[ID]] = []
        self.unkept: list[ID] = []
        self.fail: str | None = None

    def _maybe_fail(self) -> None:
        if self.fail is not None:
            raise SessionException(self.fail)

    def open_session(self, name: str) -> int:
        self.opened.append(name)
        return len(self.opened)

    def submit(
        self,
        session_id: int,
        tasks: Sequence[TaskSpec],
        objects: Sequence[ObjectSpec],
        payloads: Mapping[ID, bytes],
        kept: Collection[ID],
    ) -> None:
        self._maybe_fail()
        self.submits.append(
            {
                "tasks": list(tasks),
                "objects": list(objects),
                "payloads": dict(payloads),
                "kept": set(kept),
            }
        )
        self.task_ids.update(t.id for t in tasks)
        self.payloads.update(payloads)

    def wait(self, ids: Collection[ID]) -> None:
        self._maybe_fail()
        self.waited.append(list(ids))

    def wait_some(self, ids: Collection[ID]) -> tuple[list[ID], list[ID]]:
        self._maybe_fail()
        ids = list(ids)
        return [i for i in ids if i in self.task_ids], [i for i in ids if i not in self.task_ids]

    def fetch(self, object_id: ID) -> DataInstance:
        self._maybe_fail()
        if object_id in self.results:
            return self.results[object_id]
        return DataInstance(self.payloads[object_id], info=ObjectInfo(size=1))

    def unkeep(self, ids: Collection[ID]) -> None:
        self._maybe_fail()
        self.unkept.extend(ids)

    def update(self, ids: Collection[ID]) -> Mapping[ID, TaskInfo | ObjectInfo]:
        self._maybe_fail()
        return {i: self.infos[i] for i in ids if i in self.infos}

    def close_session(self, session_id: int) -> None:
        self.closed.append(session_id)


@pytest.fixture
def transport() -> FakeTransport:
    return FakeTransport()


@pytest.fixture
def session(transport: FakeTransport) -> Any:
    with Session(transport) as s:
        yield s
