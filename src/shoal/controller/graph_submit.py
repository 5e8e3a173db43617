"""A client's Submit checked before any of it enters a session's graph.

Everything is checked first (ids, data, outputs, that the new tasks form no
cycle), so a submit is all or nothing.
"""

from __future__ import annotations

import sys
from collections import defaultdict

from shoal.controller.graph_state import NO_USER, GObject, GSession, GTask
from shoal.protocol.graph_messages import Submit, function_digest

MAX_CONSTANT = 1024 * 1024 * 1024  # bytes of one uploaded constant


class GraphRequestError(Exception):
    """A client request that cannot be done; ``str()`` says why."""

    def __init__(
        self,
        message: str,
        *,
        session_failed: bool = False,
        task: int | None = None,
        debug: str = "",
    ) -> None:
        super().__init__(message)
        self.session_failed = session_failed
        self.task = task
        self.debug = debug


def session_error(session: GSession) -> GraphRequestError:
    return GraphRequestError(
        session.error or "the session failed",
        session_failed=True,
        task=session.error_task,
        debug=session.error_debug,
    )


def add_functions(session: GSession, message: Submit) -> None:
    """Keep the submit's new functions in the session (before anything else is
    checked: the client counts them as sent even if the rest is refused)."""
    for digest, data in message.functions.items():
        if digest in session.functions:
            continue
        if function_digest(data) != digest:
            raise GraphRequestError(
                f"a function sent as {digest[:16]}... does not have that digest "
                "(Submit.functions is keyed by the SHA-256 of the pickled function)"
            )
        session.functions[sys.intern(digest)] = data


def check_objects(session: GSession, message: Submit) -> dict[int, GObject]:
    new: dict[int, GObject] = {}
    produced = {o for t in message.tasks for o in t.outputs}
    for spec in message.objects:
        if spec.id in session.objects or spec.id in session.tasks or spec.id in new:
            raise GraphRequestError(f"object id {spec.id} is already used in the session")
        if spec.data_type not in ("blob", "dir"):
            raise GraphRequestError(
                f"object {spec.id}: data_type is 'blob' or 'dir', not {spec.data_type!r}"
            )
        if spec.content_type is not None and (
            not spec.content_type or len(spec.content_type) > 200
        ):
            raise GraphRequestError(f"object {spec.id}: bad content type {spec.content_type!r}")
        obj = GObject(
            session, spec.id, spec.label, spec.content_type, spec.data_type, spec.user or NO_USER
        )
        obj.keep = spec.keep
        upload = session.uploads.get(spec.id)
        if spec.id in produced:
            if spec.data is not None or upload is not None:
                raise GraphRequestError(f"object {spec.id} has data and a task that makes it")
        else:
            if spec.data is None and upload is None:
                raise GraphRequestError(
                    f"object {spec.id} has neither data nor a task that makes it"
                )
            data = bytes(upload or b"") + (spec.data or b"")
            obj.data, obj.size = data, len(data)
        new[spec.id] = obj
    for spec in message.objects:
        session.uploads.pop(spec.id, None)
    return new


def check_tasks(session: GSession, message: Submit, new_objects: dict[int, GObject]) -> list[GTask]:
    tasks: list[GTask] = []
    for spec in message.tasks:
        if spec.id in session.objects or spec.id in session.tasks or spec.id in new_objects:
            raise GraphRequestError(f"task id {spec.id} is already used in the session")
        if spec.cpus < 1:
            raise GraphRequestError(f"task {spec.id}: cpus must be at least 1")
        inputs: list[tuple[GObject, str | None]] = []
        for ref in spec.inputs:
            obj = new_objects.get(ref.id)
            if obj is None:
                obj = session.objects.get(ref.id)
                if obj is None:
                    raise GraphRequestError(
                        f"task {spec.id} reads object {ref.id}, which the session does not have"
                    )
                if obj.freed:
                    raise GraphRequestError(
                        f"task {spec.id} reads object {ref.id} of an earlier submit, which "
                        "was freed: it was not kept and no task needed it any more "
                        "(keep() it before the submit that creates it)"
                    )
            inputs.append((obj, ref.label))
        outputs = []
        for oid in spec.outputs:
            obj = new_objects.get(oid)
            if obj is None:
                raise GraphRequestError(
                    f"task {spec.id}: output {oid} must be a new object of the same submit"
                )
            if obj.producer is not None:
                raise GraphRequestError(f"object {oid} is an output of two tasks")
            outputs.append(obj)
        function = spec.function
        if function:
            if function not in session.functions:
                raise GraphRequestError(
                    f"task {spec.id} runs function {function[:16]}..., which the session "
                    "was not sent (send it in Submit.functions)"
                )
            function = sys.intern(function)  # one string for the many tasks of one function
        task = GTask(
            session,
            spec.id,
            sys.intern(spec.task_type),  # one string for the many tasks of one kind
            spec.config,
            tuple(inputs),
            tuple(outputs),
            spec.cpus,
            sys.intern(spec.name),
            spec.user or NO_USER,
            function=function,
        )
        for obj in outputs:
            obj.producer = task
        tasks.append(task)
    check_acyclic(tasks)
    return tasks


def check_acyclic(tasks: list[GTask]) -> None:
    # Kahn's algorithm over the new tasks: a task whose inputs can never be
    # made (a cycle) would wait for ever.
    new = {id(t) for t in tasks}
    readers: dict[int, list[GTask]] = defaultdict(list)
    blocking: dict[int, int] = {}
    for task in tasks:
        count = 0
        for obj, _ in task.inputs:
            if obj.producer is not None and id(obj.producer) in new:
                readers[id(obj)].append(task)
                count += 1
        blocking[id(task)] = count
    todo = [t for t in tasks if blocking[id(t)] == 0]
    seen = 0
    while todo:
        task = todo.pop()
        seen += 1
        for out in task.outputs:
            for reader in readers.get(id(out), ()):
                blocking[id(reader)] -= 1
                if blocking[id(reader)] == 0:
                    todo.append(reader)
    if seen != len(tasks):
        raise GraphRequestError("the submitted tasks form a cycle")
