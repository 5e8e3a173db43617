"""Wire messages of task graphs: client <-> controller and controller <-> agent.

IDs are session-local numbers: tasks and objects of one session share one
numbering. A session number is random (63 bits) and unique on the controller,
so an object's (session, id) cannot be guessed. Task configs are
opaque bytes to the controller (pickled by the client, unpickled on the node
that runs the task, where the user's code runs anyway).

Small objects travel inline (``data``) and live on the controller; bigger ones
stay on the agents that made them and move on demand over a channel
(:mod:`shoal.channel`) to the holder's endpoint for that one object
(:func:`object_endpoint`): direct between agents, or through the controller's
relay when they cannot reach each other.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

from shoal.protocol.channel_messages import ChannelGrant

INLINE_LIMIT = 64 * 1024  # bytes: an object up to this size travels inline
CHUNK = 1024 * 1024  # bytes per FetchData, and per channel message of an object
OBJECT_ENDPOINT = "graph.object/"  # + "SESSION/ID": one object's endpoint on its holder


def object_endpoint(session: int, obj: int) -> str:
    """The endpoint that serves one object on a node holding it. The object is in
    the name, so the capability the controller signs for it opens this object
    only, for the one reader it names."""
    return f"{OBJECT_ENDPOINT}{session}/{obj}"


def parse_object_endpoint(endpoint: str) -> tuple[int, int] | None:
    """``(session, object)`` of an object endpoint; None if it is not one."""
    session, _, obj = endpoint.removeprefix(OBJECT_ENDPOINT).partition("/")
    if not endpoint.startswith(OBJECT_ENDPOINT) or not (session.isdigit() and obj.isdigit()):
        return None
    return int(session), int(obj)


def function_digest(data: bytes) -> str:
    """The name a pickled Python function travels under: its SHA-256, so a task
    carries 64 characters instead of the function, and a node caches it by
    content (the controller checks the digest, so no one can pass other code off
    under a name another user's tasks refer to)."""
    return hashlib.sha256(data).hexdigest()


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
    # A Python task's function: its digest in the session's functions (sent
    # once, in the Submit.functions of the first submit that uses it).
    function: str = ""


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
    """``quiet``: answered only if it fails (a RequestFailed before the reply to a
    later request), so a chain of submit + wait costs one reply per step, not two.
    A controller that does not know the field answers RequestDone as before."""

    req: int
    session: int
    tasks: list[SubmitTask] = []
    objects: list[SubmitObject] = []
    quiet: bool = False
    # Functions new to the session, by digest (function_digest); kept by the
    # controller for the session's life, even when the rest of the submit fails.
    functions: dict[str, bytes] = {}


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
    """``quiet``: answered only if it fails, as a quiet :class:`Submit` (a chain
    of submit, wait, unkeep then costs one round trip a step, not two)."""

    req: int
    session: int
    ids: list[int]
    quiet: bool = False


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


class RequestDone(_Msg, tag="Done"):
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


class RequestFailed(_Msg, tag="Failure"):
    """A request failed. ``session_failed``: the session is dead for good."""

    req: int
    message: str
    session_failed: bool = False
    task: int | None = None  # the task whose failure ended the session
    debug: str = ""


GraphReply = SessionOpened | RequestDone | WaitDone | FetchData | Infos | RequestFailed


# --- controller -> agent -----------------------------------------------------------


class GraphHolder(msgspec.Struct, array_like=True):
    """A node that holds an input, and the grant of a channel to fetch it there.

    ``grant`` opens this one object's endpoint on the holder for the node the
    task runs on (opener ``node:NAME``), until it expires (the controller's
    clock); it says whether the holder can be reached directly.
    """

    node: str
    grant: ChannelGrant


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
    function: str = ""  # a Python task's function, by digest (see GraphRun.functions)


class GraphRun(_Msg):
    """Tasks to run. ``functions``: the pickled functions (by digest) of these
    tasks that were not sent on this connection before; the agent keeps them."""

    tasks: list[GraphTask]
    functions: dict[str, bytes] = {}


class GraphCancel(_Msg):
    """Stop the session's tasks on this node and free its objects here."""

    session: int


class GraphFree(_Msg):
    """Nobody needs these objects any more: ``[session, id]`` pairs."""

    objects: list[tuple[int, int]]


class GraphPrefetch(_Msg):
    """Fetch these finished inputs now, ahead of the task that will read them here
    (it still waits for other inputs). Each ``holders`` grants this node a channel
    to the object; the node answers each with a :class:`GraphPrefetched`.
    ``owner``: the session's user, as in :class:`GraphTask`."""

    session: int
    inputs: list[GraphInput]
    owner: str = ""


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


class GraphPrefetched(_Msg):
    """A :class:`GraphPrefetch` of one object ended: this node holds it now, or
    ``error`` says why not (the task that reads it fetches it when it runs)."""

    session: int
    object: int
    error: str = ""
