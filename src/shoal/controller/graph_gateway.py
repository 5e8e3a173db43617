"""The WebSocket a graph client talks on: one request at a time, answered in order
(a quiet Submit only when it fails).

A WebSocket (not REST) because a chain of dependent tasks submitted one by one
is bound by round trips, and a frame on an open socket is the cheapest one.
Sessions belong to the connection that opened them and end with it.

Under shoal's own WebSocket protocol the connection's frames are taken where
they are read (its frame tap, see :mod:`shoal.controller.ws_protocol`): a
request that needs no waiting (a submit, an unkeep, an update) is answered in
that callback, and the others are queued there for the connection's processor.
On the ASGI path each frame cost a queue hand-off, a pause and a resume of
reading and two task wake-ups, in every step of a chain.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import msgspec
from fastapi import WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from shoal.controller.auth import Authenticator, accept_user
from shoal.controller.graph_service import GraphRequestError, GraphService
from shoal.controller.graph_state import GTask
from shoal.controller.records import RecordService
from shoal.controller.ws_protocol import TAP, FrameTap
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
    """Serves graph clients' WebSockets: their sessions, submits, waits and fetches,
    answered in order on each connection (see the module doc)."""

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
        tap: FrameTap | None = ws.scope.get("extensions", {}).get(TAP)
        if tap is not None and tap.write is not None:
            connection.write, connection.writable = tap.write, tap.writable
            tap.sink = connection.take
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
            if tap is not None:
                tap.sink = None
            self.graphs.close_all(caller.user_id, connection.owned)
            if ws.application_state != WebSocketState.DISCONNECTED:
                with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                    await ws.close()

    async def _reply(self, ws: WebSocket, *messages: object) -> None:
        await ws.send_bytes(self._encoder.encode(list(messages)))

    def answer(self, owner: int, owned: set[int], request: object) -> object | None:
        """The reply to a request that needs no waiting (None: no reply is due);
        raises :class:`GraphRequestError` when it is refused."""
        graphs = self.graphs
        if isinstance(request, PutData):
            try:
                graphs.put_data(owner, request)
            except GraphRequestError as exc:
                # No reply to a chunk: the Submit that follows reports the problem.
                log.info("graph upload refused: %s", exc)
            return None
        if isinstance(request, Submit):
            graphs.submit(owner, request)
            return None if request.quiet else RequestDone(request.req)
        if isinstance(request, Unkeep):
            graphs.unkeep(owner, request.session, request.ids)
            return None if request.quiet else RequestDone(request.req)
        if isinstance(request, Update):
            tasks, objects = graphs.infos(owner, request.session, request.ids)
            return Infos(request.req, tasks=tasks, objects=objects)
        assert isinstance(request, CloseSession)
        graphs.close_session(owner, request.session)
        owned.discard(request.session)
        return RequestDone(request.req)

    def answer_or_failure(self, owner: int, owned: set[int], request: object) -> object | None:
        """:meth:`answer`, with a refusal as its RequestFailed reply."""
        try:
            return self.answer(owner, owned, request)
        except GraphRequestError as exc:
            return _failure(request, exc)

    async def _handle(
        self, ws: WebSocket, owner: int, owned: set[int], request: object, login: str = ""
    ) -> None:
        if isinstance(request, QUICK):
            reply = self.answer_or_failure(owner, owned, request)
            if reply is not None:
                await self._reply(ws, reply)
            return
        req = request.req  # type: ignore[attr-defined]
        try:
            if isinstance(request, OpenSession):
                sid = self.graphs.open_session(owner, request.name, login)
                owned.add(sid)
                record = await self._record(owner, sid, request)
                await self._reply(ws, SessionOpened(req, sid, record=record))
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
        except GraphRequestError as exc:
            await self._reply(ws, _failure(request, exc))

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


# Requests answered without waiting for anything (see GraphGateway.answer).
QUICK = (PutData, Submit, Unkeep, Update, CloseSession)


def _failure(request: object, exc: GraphRequestError) -> RequestFailed:
    return RequestFailed(
        request.req,  # type: ignore[attr-defined]
        str(exc),
        session_failed=exc.session_failed,
        task=exc.task,
        debug=exc.debug,
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
        # Sends one frame at once, and whether the client takes what is sent (the
        # frame tap's), when the protocol has a tap.
        self.write: Callable[[bytes], bool] | None = None
        self.writable: Callable[[], bool] = lambda: True

    def take(self, data: bytes) -> bool:
        """The frame tap's sink: handle a frame where it was read. False (a frame
        that does not decode) leaves it to :meth:`read`, which says what is wrong.

        A request is answered here only when nothing is pending and the client
        reads its answers; otherwise it waits its turn with the processor, whose
        answers wait for a client that reads slowly (as the usual path's do)."""
        gateway = self.gateway
        try:
            requests = gateway._decoder.decode(data)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return False
        write = self.write
        assert write is not None
        for request in requests:
            if not self._answers_now(request):
                self.queue.put_nowait(request)  # after what is pending, in order
                continue
            try:
                reply = gateway.answer_or_failure(self.owner, self.owned, request)
            except Exception as exc:
                # A fault of ours, half done: the frame must not be handled a
                # second time by the usual path. The processor raises it, which
                # ends the connection as it did when the endpoint raised.
                self.queue.put_nowait(exc)
                return True
            if reply is not None:
                # Not sent only when the connection is closing: nobody reads it then.
                write(gateway._encoder.encode([reply]))
        return True

    def _answers_now(self, request: object) -> bool:
        """Whether ``request`` may be answered where it was read: nothing waits
        before it, it needs no waiting itself, and the client takes answers."""
        return (
            not self.active
            and self.queue.empty()
            and isinstance(request, QUICK)
            and self.writable()
        )

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
                # With a tap the sink answers too, and one of them answering here
                # while the other answers a later request could send the answers
                # out of order: then only the processor answers what comes here.
                if self.write is None and self._answers_now(request):
                    # A task switch sooner (a chain of submits feels each one).
                    await self.gateway._handle(self.ws, self.owner, self.owned, request, self.login)
                else:
                    self.queue.put_nowait(request)  # after what is pending, in order

    async def process(self) -> None:
        while True:
            request = await self.queue.get()
            if isinstance(request, Exception):
                raise request
            self.active = True
            try:
                await self.gateway._handle(self.ws, self.owner, self.owned, request, self.login)
            finally:
                self.active = not self.queue.empty()
