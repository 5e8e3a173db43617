"""Wire messages of task graphs: client <-> controller and controller <-> agent.

IDs are session-local numbers: tasks and objects of one session share one
numbering. A session number is random (63 bits) and unique on the controller,
so an object's (session, id) cannot be guessed. Task configs are
opaque bytes to the controller (pickled by the client, unpickled on the node
that runs the task, where the user's code runs anyway).

Small objects travel inline (``data``) and live on the controller; bigger ones
stay on the agents that made them and move agent to agent on demand, or in
:class:`ObjectChunk` s through the controller.
"""

from __future__ import annotations

from typing import Any

import msgspec

INLINE_LIMIT = 64 * 1024  # bytes: an object up to this size travels inline
CHUNK = 1024 * 1024  # bytes per ObjectChunk / FetchData


class _Msg(msgspec.Struct, tag_field="t", tag=True, omit_defaults=True):
    pass


# --- client -> controller ----------------------------------------------------------


class SubmitInput(msgspec.Struct, array_like=True):
    id: int
    label: str | None = None


class SubmitTask(msgspec.Struct, omit_defaults=True):
    id: int
    task_type: str
    config: bytes
    inputs: list[SubmitInput] = []
    outputs: list[int] = []
    cpus: int = 1
    name: str = ""
    user: dict[str, Any] = {}


class SubmitObject(msgspec.Struct, omit_defaults=True):
    id: int
    label: str | None = None
    content_type: str | None = None
    data_type: str = "blob"
    keep: bool = False
    data: bytes | None = None  # a constant's data (or its last chunk after PutData)
    user: dict[str, Any] = {}


class OpenSession(_Msg):
    req: int
    name: str = ""
    # What is needed to run it again (shoal.client.reproduction), kept in its record.
    reproduction: dict[str, Any] = {}


class PutData(_Msg):
    """A chunk of a big constant, sent before the Submit that names the object."""

    session: int
    object: int
    data: bytes


class Submit(_Msg):
    req: int
    session: int
    tasks: list[SubmitTask] = []
    objects: list[SubmitObject] = []


class Wait(_Msg):
    """Answered when every id is finished (``some``: when at least one is)."""

    req: int
    session: int
    ids: list[int]
    some: bool = False


class Fetch(_Msg):
    req: int
    session: int
    object: int


class Unkeep(_Msg):
    req: int
    session: int
    ids: list[int]


class Update(_Msg):
    req: int
    session: int
    ids: list[int]


class CloseSession(_Msg):
    req: int
    session: int


GraphRequest = OpenSession | PutData | Submit | Wait | Fetch | Unkeep | Update | CloseSession


# --- controller -> client ----------------------------------------------------------


class SessionOpened(_Msg):
    req: int
    session: int
    record: str = ""  # the name of its experiment record ("" if it has none)


class Done(_Msg):
    req: int


class WaitDone(_Msg):
    req: int
    tasks: list[int] = []
    objects: list[int] = []


class FetchData(_Msg):
    """Part of a fetched object; ``last`` carries the object's spec and info."""

    req: int
    data: bytes
    last: bool = False
    spec: dict[str, Any] = {}
    info: dict[str, Any] = {}


class Infos(_Msg):
    req: int
    tasks: dict[int, dict[str, Any]] = {}
    objects: dict[int, dict[str, Any]] = {}


class Failure(_Msg):
    """A request failed. ``session_failed``: the session is dead for good."""

    req: int
    message: str
    session_failed: bool = False
    task: int | None = None  # the task whose failure ended the session
    debug: str = ""


GraphReply = SessionOpened | Done | WaitDone | FetchData | Infos | Failure


# --- controller -> agent -----------------------------------------------------------


class GraphHolder(msgspec.Struct, array_like=True):
    """A node that holds an input, and the capability to fetch it from that node.

    ``capability`` opens this one object for the node the task runs on, on this
    holder's data server, until ``expires`` (the controller's clock).
    """

    node: str
    address: str  # "host:port" of its data server ("" when it runs none)
    capability: str
    expires: float


class GraphInput(msgspec.Struct, omit_defaults=True):
    id: int
    label: str | None = None
    data_type: str = "blob"
    content_type: str | None = None
    size: int = 0
    data: bytes | None = None  # inline data
    holders: list[GraphHolder] = []  # agents that hold it
    user: dict[str, Any] = {}  # the object's spec.user, for the task that reads it


class GraphOutput(msgspec.Struct, omit_defaults=True):
    id: int
    label: str | None = None
    data_type: str = "blob"
    content_type: str | None = None


class GraphTask(msgspec.Struct, omit_defaults=True):
    session: int
    id: int
    task_type: str
    config: bytes
    inputs: list[GraphInput] = []
    outputs: list[GraphOutput] = []
    name: str = ""
    cpus: int = 1
    user: dict[str, Any] = {}
    owner: str = ""  # login of the session's user: with --isolate-users, whose uid runs it


class GraphRun(_Msg):
    tasks: list[GraphTask]


class GraphCancel(_Msg):
    """Stop the session's tasks on this node and free its objects here."""

    session: int


class GraphFree(_Msg):
    """Nobody needs these objects any more: ``[session, id]`` pairs."""

    objects: list[tuple[int, int]]


class GraphUpload(_Msg):
    """Send the object's data to the controller in ObjectChunks answering ``request``."""

    request: int
    session: int
    object: int


# --- agent -> controller -----------------------------------------------------------


class GraphObjectResult(msgspec.Struct, omit_defaults=True):
    id: int
    size: int = 0
    content_type: str | None = None
    data: bytes | None = None  # inline; else the agent keeps it


class GraphResult(msgspec.Struct, omit_defaults=True):
    session: int
    id: int
    error: str = ""
    info: dict[str, Any] = {}
    outputs: list[GraphObjectResult] = []


class GraphDone(_Msg):
    results: list[GraphResult]


class GraphFetch(_Msg):
    """The agent could not reach a holder: send the object's data through the controller."""

    request: int
    session: int
    object: int


# --- both ways ---------------------------------------------------------------------


class ObjectChunk(_Msg):
    """Part of an object's data answering ``request``; an ``error`` ends it badly."""

    request: int
    data: bytes = b""
    last: bool = False
    error: str = ""
