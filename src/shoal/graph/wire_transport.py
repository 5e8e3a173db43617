"""The graph transport over the controller's WebSocket (``/api/graph/ws``).

Requests are answered in order: the client is synchronous, and a chain of
dependent submits is bound by this round trip, so nothing else sits on it. A
submit or an unkeep is sent quiet (answered only if it fails) and its outcome
read with the next request's answer, so one step of a chain (submit, wait,
unkeep) costs one reply.
"""

from __future__ import annotations

import contextlib
import itertools
import pickle
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from websockets.exceptions import ConnectionClosed, WebSocketException

from shoal.client.blocking_websocket import BlockingWebSocket
from shoal.client.reproduction import reproduction
from shoal.client.retry import RECONNECT_DEADLINE, retry_call
from shoal.graph.attributes import ObjectInfo, ObjectSpec, TaskInfo, TaskSpec
from shoal.graph.data_instance import DataInstance
from shoal.graph.exceptions import TaskException
from shoal.graph.ids import ID
from shoal.graph.session import GraphError
from shoal.graph.transport import SessionException
from shoal.protocol.codec import FrameDecoder, FrameEncoder
from shoal.protocol.graph_messages import (
    CHUNK,
    CloseSession,
    Fetch,
    FetchData,
    GraphReply,
    Infos,
    OpenSession,
    PutData,
    RequestFailed,
    SessionOpened,
    Submit,
    SubmitInput,
    SubmitObject,
    SubmitTask,
    Unkeep,
    Update,
    Wait,
    WaitDone,
    function_digest,
)

RECEIVE_TURN = 1.0  # seconds of one bounded wait for the controller's next message
OPEN_TIMEOUT = 10.0  # seconds for one attempt at the handshake

__all__ = ["WireTransport"]


class WireTransport:
    """A :class:`~shoal.graph.transport.GraphTransport` talking to a controller."""

    def __init__(
        self, endpoint: str, token: str, retry_deadline: float = RECONNECT_DEADLINE
    ) -> None:
        url = endpoint.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
        self._stack = contextlib.ExitStack()
        try:
            # A controller that restarts refuses connections for a moment: retried
            # (a refused handshake, e.g. a bad token, is not).
            opened = retry_call(
                BlockingWebSocket,
                url.rstrip("/") + "/api/graph/ws",
                headers={"Authorization": f"Bearer {token}"},
                open_timeout=OPEN_TIMEOUT,
                what=f"opening the graph stream at {url}",
                retry_on=(OSError,),
                deadline=retry_deadline,
            )
            self._ws = self._stack.enter_context(opened)
        except (OSError, WebSocketException) as exc:
            raise GraphError(f"cannot open the graph stream at {url}: {exc}") from None
        self._encoder = FrameEncoder()
        self._decoder: FrameDecoder[Any] = FrameDecoder(GraphReply)
        self._requests = itertools.count(1)
        self._pending: list[Any] = []
        # Requests whose reply is read later (submits, sent quiet: answered only
        # when they fail), by request number: a chain of dependent submits then
        # costs one reply per step, read with the next request's.
        self._deferred: dict[int, str] = {}
        self._failure: tuple[RequestFailed, str] | None = None
        self._broken: str | None = None
        self.records: dict[int, str] = {}  # session id -> the name of its record
        # Digests of the functions each session was sent: a function goes once
        # per session, its tasks carry the digest.
        self._sent_functions: dict[int, set[str]] = {}
        # Digests by the identity of a function's pickle (every task of one
        # @remote function shares that bytes object): hashed once, not per task.
        self._digests: dict[int, tuple[bytes, str]] = {}

    def close(self) -> None:
        self._stack.close()

    # --- plumbing ----------------------------------------------------------------------

    def _send(self, *messages: Any) -> None:
        if self._broken is not None:
            raise SessionException(self._broken)
        try:
            self._ws.send(self._encoder.encode(list(messages)))
        except (ConnectionClosed, OSError) as exc:
            self._broken = f"lost the connection to the controller: {exc}"
            raise SessionException(self._broken) from None

    def _receive(self) -> Any:
        while not self._pending:
            try:
                # A bounded wait, again and again: a Ctrl-C that came just before
                # the wait began is seen at the next turn, not never.
                data = self._ws.recv(timeout=RECEIVE_TURN)
            except TimeoutError:
                continue
            except (ConnectionClosed, OSError) as exc:
                self._broken = f"lost the connection to the controller: {exc}"
                raise SessionException(self._broken) from None
            except BaseException:
                # Ctrl-C (or a test's timeout) while a reply is due: the replies
                # would be out of step from now on. Drop the connection; the
                # controller ends its sessions and stops their tasks.
                self._broken = "the connection was interrupted while waiting for the controller"
                with contextlib.suppress(Exception):
                    self._stack.close()
                raise
            if isinstance(data, bytes):
                self._pending.extend(self._decoder.decode(data))
        return self._pending.pop(0)

    def _call(self, message: Any, session_id: int | None = None) -> Any:
        self._send(message)
        reply = self._reply_to(message.req)
        self._raise_deferred(session_id)
        if isinstance(reply, RequestFailed):
            self._raise(reply, session_id)
        return reply

    def _call_later(self, message: Any, what: str) -> None:
        self._send(message)
        self._deferred[message.req] = what

    def _reply_to(self, req: int) -> Any:
        """The next reply to request ``req``. The replies of deferred requests read
        on the way are noted (a failure among them is raised by
        :meth:`_raise_deferred`); a quiet request that succeeded has none, so once
        ``req`` is answered, every request before it is settled."""
        while True:
            reply = self._receive()
            if reply.req == req:
                self._deferred.clear()
                return reply
            what = self._deferred.pop(reply.req, None)
            if isinstance(reply, RequestFailed) and what is not None and self._failure is None:
                self._failure = (reply, what)

    def _take_arrived(self) -> None:
        """Note the replies already here, without waiting: no request waits for an
        answer now, so they are all answers to deferred (quiet) ones."""
        while True:
            if not self._pending:
                try:
                    data = self._ws.recv(timeout=0)
                except TimeoutError:
                    return
                except (ConnectionClosed, OSError) as exc:
                    self._broken = f"lost the connection to the controller: {exc}"
                    raise SessionException(self._broken) from None
                if isinstance(data, bytes):
                    self._pending.extend(self._decoder.decode(data))
                continue
            reply = self._pending.pop(0)
            what = self._deferred.pop(reply.req, None)
            if isinstance(reply, RequestFailed) and what is not None and self._failure is None:
                self._failure = (reply, what)

    def _raise_deferred(self, session_id: int | None) -> None:
        """Raise the first failure of a deferred request (a submit) read so far."""
        if self._failure is not None:
            reply, what = self._failure
            self._failure = None
            if not reply.session_failed:
                reply.message = f"{what} failed: {reply.message}"
            self._raise(reply, session_id)

    @staticmethod
    def _raise(reply: RequestFailed, session_id: int | None) -> None:
        if not reply.session_failed:
            raise GraphError(reply.message)
        if reply.task is not None and session_id is not None:
            raise TaskException(
                reply.message, task_id=ID(session_id, reply.task), debug=reply.debug
            )
        raise SessionException(reply.message)

    # --- GraphTransport ----------------------------------------------------------------

    def open_session(self, name: str) -> int:
        """Open a session; the controller keeps its record, named in :attr:`records`."""
        info = reproduction({"session": name})
        reply = self._call(OpenSession(next(self._requests), name, reproduction=info))
        assert isinstance(reply, SessionOpened)
        if reply.record:
            self.records[reply.session] = reply.record
        return reply.session

    def submit(
        self,
        session_id: int,
        tasks: Sequence[TaskSpec],
        objects: Sequence[ObjectSpec],
        payloads: Mapping[ID, bytes],
        kept: Collection[ID],
    ) -> None:
        wire_objects = []
        for spec in objects:
            assert spec.id is not None
            data = payloads.get(spec.id)
            if data is not None and len(data) > CHUNK:
                # Big constants go ahead in pieces: no frame has to hold them whole.
                view = memoryview(data)
                for start in range(0, len(view), CHUNK):
                    self._send(PutData(session_id, spec.id.id, bytes(view[start : start + CHUNK])))
                data = b""
            wire_objects.append(
                SubmitObject(
                    id=spec.id.id,
                    label=spec.label,
                    content_type=spec.content_type,
                    data_type=spec.data_type,
                    keep=spec.id in kept,
                    data=data,
                    user=spec.user,
                )
            )
        sent = self._sent_functions.setdefault(session_id, set())
        functions: dict[str, bytes] = {}
        wire_tasks = []
        for spec in tasks:
            config, function = spec.config, ""
            if spec.task_type == "python" and isinstance(config, dict):
                data = config.get("function")
                if isinstance(data, bytes):
                    function = self._digest(data)
                    if function not in sent:
                        functions[function] = data
                    # Without the function, which goes once per session (copied in
                    # C and one key deleted: a comprehension cost a quarter of this loop).
                    config = dict(config)
                    del config["function"]
            wire_tasks.append(
                SubmitTask(
                    id=spec.id.id,  # type: ignore[union-attr]
                    task_type=spec.task_type,
                    config=pickle.dumps(config, protocol=pickle.HIGHEST_PROTOCOL),
                    inputs=[SubmitInput(i.id.id, i.label) for i in spec.inputs],
                    outputs=[o.id for o in spec.outputs],
                    cpus=int(spec.resources.get("cpus", 1)),
                    name=spec.name or "",
                    user=spec.user,
                    function=function,
                )
            )
        self._call_later(
            Submit(
                next(self._requests),
                session_id,
                wire_tasks,
                wire_objects,
                quiet=True,
                functions=functions,
            ),
            "a submit",
        )
        # The controller keeps a submit's functions even when the rest of it is
        # refused, so they count as sent once they are on the wire.
        sent.update(functions)

    def _digest(self, data: bytes) -> str:
        known = self._digests.get(id(data))
        if known is not None and known[0] is data:
            return known[1]
        digest = function_digest(data)
        self._digests[id(data)] = (data, digest)
        return digest

    def _wait(self, ids: Collection[ID], some: bool) -> tuple[list[ID], list[ID]]:
        ids = list(ids)
        if not ids:
            return [], []
        session_id = ids[0].session_id
        reply = self._call(
            Wait(next(self._requests), session_id, [i.id for i in ids], some), session_id
        )
        assert isinstance(reply, WaitDone)
        return (
            [ID(session_id, i) for i in reply.tasks],
            [ID(session_id, i) for i in reply.objects],
        )

    def wait(self, ids: Collection[ID]) -> None:
        self._wait(ids, False)

    def wait_some(self, ids: Collection[ID]) -> tuple[list[ID], list[ID]]:
        return self._wait(ids, True)

    def fetch(self, object_id: ID) -> DataInstance:
        request = Fetch(next(self._requests), object_id.session_id, object_id.id)
        self._send(request)
        reply = self._reply_to(request.req)
        parts: list[bytes] = []
        # Read to the end of the answer (the last piece, or a failure) before
        # raising anything: the replies of later requests must not meet its rest.
        while not isinstance(reply, RequestFailed):
            assert isinstance(reply, FetchData)
            parts.append(reply.data)
            if reply.last:
                break
            reply = self._receive()
        self._raise_deferred(object_id.session_id)
        if isinstance(reply, RequestFailed):
            self._raise(reply, object_id.session_id)
        spec = ObjectSpec.from_dict(reply.spec)
        info = ObjectInfo.from_dict(reply.info)
        return DataInstance(b"".join(parts), data_type=spec.data_type, spec=spec, info=info)

    def unkeep(self, ids: Collection[ID]) -> None:
        ids = list(ids)
        if ids:
            session_id = ids[0].session_id
            # Quiet, as a submit: waiting for its answer was a second round trip
            # in every step of a chain. Rain's unkeep raised at once when the
            # session had failed; here a failure that has already arrived is
            # raised now, a later one by the next call.
            self._take_arrived()
            self._raise_deferred(session_id)
            self._call_later(
                Unkeep(next(self._requests), session_id, [i.id for i in ids], quiet=True),
                "an unkeep",
            )

    def update(self, ids: Collection[ID]) -> Mapping[ID, TaskInfo | ObjectInfo]:
        ids = list(ids)
        if not ids:
            return {}
        session_id = ids[0].session_id
        reply = self._call(
            Update(next(self._requests), session_id, [i.id for i in ids]), session_id
        )
        assert isinstance(reply, Infos)
        infos: dict[ID, TaskInfo | ObjectInfo] = {}
        for tid, info in reply.tasks.items():
            infos[ID(session_id, tid)] = TaskInfo.from_dict(info)
        for oid, info in reply.objects.items():
            infos[ID(session_id, oid)] = ObjectInfo.from_dict(info)
        return infos

    def close_session(self, session_id: int) -> None:
        self._sent_functions.pop(session_id, None)
        if self._broken is not None:
            return
        with contextlib.suppress(SessionException, GraphError):
            self._call(CloseSession(next(self._requests), session_id))
