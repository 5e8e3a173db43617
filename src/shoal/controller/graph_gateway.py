"""The WebSocket a graph client talks on: one request at a time, answered in order
(a quiet Submit only when it fails).

A WebSocket (not REST) because a chain of dependent tasks submitted one by one
is bound by round trips, and a frame on an open socket is the cheapest one.
Sessions belong to the connection that opened them and end with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import msgspec
from fastapi import WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from shoal.controller.auth import Authenticator, accept_user
from shoal.controller.graph_service import GraphRequestError, GraphService
from shoal.controller.graph_state import GTask
from shoal.controller.records import RecordService
from shoal.protocol import FrameDecoder, FrameEncoder
from shoal.protocol.graph_messages import (
    CloseSession,
    Fetch,
    FetchData,
    GraphRequest,
    Infos,
    OpenSession,
    PutData,
    RequestDone,
    RequestFailed,
    SessionOpened,
    Submit,
    Unkeep,
    Update,
    Wait,
    WaitDone,
)
from shoal.store.faults import StoreError

log = logging.getLogger("shoal.controller.graph")


class GraphGateway:
    def __init__(
        self, auth: Authenticator, graphs: GraphService, records: RecordService | None = None
    ) -> None:
        self.auth = auth
        self.graphs = graphs
        self.records = records
        self._decoder: FrameDecoder[GraphRequest] = FrameDecoder(GraphRequest)
        self._encoder = FrameEncoder()

    async def serve(self, ws: WebSocket) -> None:
        caller = await accept_user(ws, self.auth)
        if caller is None:
            return
        connection = _Connection(self, ws, caller.user_id, caller.login)
        try:
            # The reader notices a client that goes away even while a request
            # waits (for a task, say); the processor answers requests in order.
            async with asyncio.TaskGroup() as tg:
                processor = tg.create_task(connection.process())
                try:
                    await connection.read()
                finally:
                    processor.cancel()
        except* (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            self.graphs.close_all(caller.user_id, connection.owned)
            if ws.application_state != WebSocketState.DISCONNECTED:
                with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                    await ws.close()

    async def _reply(self, ws: WebSocket, *messages: object) -> None:
        await ws.send_bytes(self._encoder.encode(list(messages)))

    async def _handle(
        self, ws: WebSocket, owner: int, owned: set[int], request: object, login: str = ""
    ) -> None:
        graphs = self.graphs
        if isinstance(request, PutData):
            try:
                graphs.put_data(owner, request)
            except GraphRequestError as exc:
                # No reply to a chunk: the Submit that follows reports the problem.
                log.info("graph upload refused: %s", exc)
            return
        req = request.req  # type: ignore[attr-defined]
        try:
            if isinstance(request, OpenSession):
                sid = graphs.open_session(owner, request.name, login)
                owned.add(sid)
                record = await self._record(owner, sid, request)
                await self._reply(ws, SessionOpened(req, sid, record=record))
            elif isinstance(request, Submit):
                graphs.submit(owner, request)
                if not request.quiet:
                    await self._reply(ws, RequestDone(req))
            elif isinstance(request, Wait):
                items = await self._wait(ws, owner, request)
                await self._reply(
                    ws,
                    WaitDone(
                        req,
                        tasks=[i.id for i in items if isinstance(i, GTask)],
                        objects=[i.id for i in items if not isinstance(i, GTask)],
                    ),
                )
            elif isinstance(request, Fetch):
                await self._fetch(ws, owner, request)
            elif isinstance(request, Unkeep):
                graphs.unkeep(owner, request.session, request.ids)
                if not request.quiet:
                    await self._reply(ws, RequestDone(req))
            elif isinstance(request, Update):
                tasks, objects = graphs.infos(owner, request.session, request.ids)
                await self._reply(ws, Infos(req, tasks=tasks, objects=objects))
            elif isinstance(request, CloseSession):
                graphs.close_session(owner, request.session)
                owned.discard(request.session)
                await self._reply(ws, RequestDone(req))
        except GraphRequestError as exc:
            await self._reply(
                ws,
                RequestFailed(
                    req,
                    str(exc),
                    session_failed=exc.session_failed,
                    task=exc.task,
                    debug=exc.debug,
                ),
            )

    async def _record(self, owner: int, sid: int, request: OpenSession) -> str:
        """Open the session's experiment record; its name ("" if the store is away:
        the session works all the same, unrecorded)."""
        if self.records is None:
            return ""
        base = "".join(ch for ch in request.name if ch != "/" and ord(ch) >= 32)[:180]
        try:
            record_id, name = await self.records.create(
                owner, base or "graph-session", "graph", dict(request.reproduction)
            )
        except StoreError as exc:
            log.warning("graph session %d is not recorded: %s", sid, exc)
            return ""
        session = self.graphs.sessions.get(sid)
        if session is not None:
            session.record_id = record_id
        return name

    async def _wait(self, ws: WebSocket, owner: int, request: Wait) -> list[object]:
        return await self.graphs.wait(owner, request.session, request.ids, request.some)

    async def _fetch(self, ws: WebSocket, owner: int, request: Fetch) -> None:
        obj = await self.graphs.fetch(owner, request.session, request.object)
        previous: bytes | None = None
        async for data in self.graphs.chunks(obj):
            if previous is not None:
                await self._reply(ws, FetchData(request.req, previous))
            previous = data
        await self._reply(
            ws,
            FetchData(
                request.req, previous or b"", last=True, spec=obj.spec(), info=dict(obj.info)
            ),
        )


class _Connection:
    """One client's stream: what it owns and the requests waiting their turn."""

    def __init__(self, gateway: GraphGateway, ws: WebSocket, owner: int, login: str) -> None:
        self.gateway = gateway
        self.ws = ws
        self.owner = owner
        self.login = login
        self.owned: set[int] = set()
        self.queue: asyncio.Queue[object] = asyncio.Queue()
        self.active = False  # the processor is answering a request

    async def read(self) -> None:
        while True:
            data = await self.ws.receive_bytes()
            try:
                requests = self.gateway._decoder.decode(data)
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                log.warning("graph client sent a malformed frame: %s", exc)
                await self.ws.close(code=1003, reason=f"malformed frame: {exc}"[:120])
                return
            for request in requests:
                if self.active or not self.queue.empty() or isinstance(request, Wait | Fetch):
                    self.queue.put_nowait(request)  # after what is pending, in order
                else:
                    # Nothing pending and quick to answer: answer it here, a
                    # task switch sooner (a chain of submits feels each one).
                    await self.gateway._handle(self.ws, self.owner, self.owned, request, self.login)

    async def process(self) -> None:
        while True:
            request = await self.queue.get()
            self.active = True
            try:
                await self.gateway._handle(self.ws, self.owner, self.owned, request, self.login)
            finally:
                self.active = not self.queue.empty()
