"""Data objects of a task graph, and constants: :func:`blob`, :func:`pickled`, :func:`directory`.

>>> from shoal.graph.session import Session
>>> class Fake:
...     def open_session(self, name): return 1
...     def close_session(self, session_id): pass
>>> with Session(Fake()):
...     a = blob("Hello ")
...     b = blob([1, 2], encode="json", label="numbers")
>>> a.spec.content_type, a.payload, b.spec.label, b.payload
('text', b'Hello ', 'numbers', b'[1,2]')
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from shoal.graph import content_types
from shoal.graph.attributes import DataType, ObjectInfo, ObjectSpec
from shoal.graph.data_instance import DataInstance
from shoal.graph.exceptions import RainTypeError
from shoal.graph.ids import ID
from shoal.graph.session import GraphError, Session, active_session
from shoal.graph.states import DataObjectState

if TYPE_CHECKING:
    from shoal.graph.program import Output
    from shoal.graph.task import Task

__all__ = ["DataObject", "blob", "directory", "pickled"]


class DataObject:
    """An immutable data object in a session's graph: a blob or a directory.

    ``DataObject(label, session, data_type, content_type)``, in Rain's order. Made
    by a task (``task.outputs``) or a constant (:func:`blob`). ``spec`` is what was
    specified, ``info`` what the server told at the last ``fetch()``/``update()``
    (``None`` before). ``keep()`` only before submit; ``fetch()`` only if kept.
    """

    def __init__(
        self,
        label: str | None = None,
        session: Session | None = None,
        data_type: str | DataType = "blob",
        content_type: str | None = None,
        *,
        payload: bytes | None = None,
    ) -> None:
        if session is not None and not isinstance(session, Session):
            # Rain's order is (label, session, data_type, content_type): a data type
            # given second by position would otherwise fail far from here.
            raise TypeError(
                f"DataObject(label, session, data_type, content_type): session is a "
                f"Session, not {session!r}"
            )
        self.session = session if session is not None else active_session()
        self.spec = ObjectSpec(
            id=self.session.new_id(), label=label, content_type=content_type, data_type=data_type
        )
        if data_type == "dir" and self.spec.content_type not in (None, "dir"):
            raise ValueError(f"a directory has content type 'dir', not {content_type!r}")
        if data_type == "blob" and self.spec.content_type == "dir":
            raise ValueError("content type 'dir' is for directories, not blobs")
        self._start(payload)

    @classmethod
    def _of_output(cls, output: Output, session: Session) -> DataObject:
        """A fresh object in ``session`` made as ``output`` says: an Output was
        checked when it was made, so none of the checks ``DataObject(...)`` does."""
        content_type = output.effective_content_type
        if output.data_type == "blob" and content_type == "dir":
            raise ValueError("content type 'dir' is for directories, not blobs")
        obj = cls.__new__(cls)
        obj.session = session
        obj.spec = ObjectSpec.of_checked_parts(
            session.new_id(), output.label, content_type, output.data_type
        )
        obj._start(None)
        return obj

    def _start(self, payload: bytes | None) -> None:
        self.info: ObjectInfo | None = None
        self.payload = payload
        self.producer: Task | None = None
        self._keep = False
        self._submitted = False
        self._state: DataObjectState | None = None
        self.session._register_object(self)

    @property
    def id(self) -> ID:
        """The object's ID."""
        assert self.spec.id is not None
        return self.spec.id

    @property
    def label(self) -> str | None:
        """The object's label (its role at the task that makes it).

        Settable before the submit, as Rain's users did (``obj.label = "L1.0"``); it
        sets ``spec.label``. A task's ``outputs`` keep the labels they were made with.
        """
        return self.spec.label

    @label.setter
    def label(self, value: str | None) -> None:
        if value is not None and not isinstance(value, str):
            raise TypeError(f"a label is a str, not {type(value).__name__}")
        if self._submitted:
            # The spec went to the server with the submit: a new label would be the
            # client's alone.
            raise GraphError(f"cannot relabel {self!r}: it is submitted")
        self.spec.label = value

    @property
    def data_type(self) -> str:
        """``'blob'`` or ``'dir'``."""
        return self.spec.data_type

    @property
    def content_type(self) -> str | None:
        """The content type: the one the task set when it made the object, once
        ``fetch()``/``update()`` has brought ``info`` (as in Rain), else the declared
        ``spec.content_type``."""
        declared = self.spec.content_type
        if self.info is None or self.info.content_type is None:
            return declared
        try:
            return content_types.resolve(self.info.content_type, declared)
        except ValueError:
            # The agent checks run-time types against the spec, so a mismatch would
            # be a foreign server's; the data are what info says they are.
            return self.info.content_type

    @property
    def is_submitted(self) -> bool:
        """Whether the object was sent in a submit."""
        return self._submitted

    @property
    def state(self) -> DataObjectState | None:
        """The state at the last submit, wait or update (``None`` before the submit)."""
        return self._state

    def _state_from_info(self) -> None:
        if self.info is not None and self.info.size is not None and not self.info.error:
            self._state = DataObjectState.finished

    def expect_dir(self) -> None:
        """Raise ``TypeError`` unless this is a directory object (Rain's check)."""
        if self.data_type != "dir":
            raise TypeError(f"a directory object expected, not {self!r}")

    def is_kept(self) -> bool:
        """Whether the keep flag is set."""
        return self._keep

    def keep(self) -> None:
        """Ask the server to keep the object until ``unkeep()`` or the session ends.

        Only before the submit that sends the object.
        """
        self.session._check_open()
        if self._submitted:
            raise GraphError(f"keep() of {self!r} after it was submitted; call it before submit")
        self._keep = True

    def unkeep(self) -> None:
        """Drop the keep flag; a submitted object is unkept on the server at once."""
        self.session.unkeep([self])

    def wait(self) -> None:
        """Block until the object is finished (no keep needed)."""
        self.session.wait([self])

    def fetch(self) -> DataInstance:
        """The object's data (waits for it); the object must be kept."""
        return self.session.fetch(self)

    def update(self) -> None:
        """Download the current ``info``."""
        self.session.update([self])

    def __reduce__(self) -> Any:
        # Pickling a data object is only meaningful as an argument of a remote
        # function, where it stands for the task input (see shoal.graph.remote).
        from shoal.graph.remote_arguments import reduce_data_object

        return reduce_data_object(self)

    def __repr__(self) -> str:
        label = f" {self.spec.label!r}" if self.spec.label else ""
        return f"<DataObject {self.spec.data_type}{label} {tuple(self.id)}>"


def blob(
    value: Any,
    label: str = "const",
    content_type: str | None = None,
    encode: str | None = None,
) -> DataObject:
    """A constant blob in the active session, uploaded with the next submit.

    ``bytes`` are taken as they are; a ``str`` is UTF-8 and gets content type
    ``'text'`` unless one is given; with ``encode`` the value is serialised by that
    content type (``'json'``, ``'pickle'``, ...), which becomes the content type.

    >>> # blob(b"Raw data"); blob("String data"); blob("[1, 2]", content_type="json")
    >>> # blob([1, 2, 3, 4], encode="json"); blob(b"x", label="input data")
    """
    if encode is not None:
        data, encoded_type = content_types.encode(value, encode)
        if content_type is not None and content_types.validate(content_type) != encoded_type:
            raise ValueError(
                f"blob: content_type {content_type!r} conflicts with encode={encode!r}"
            )
        content_type = encoded_type
    elif isinstance(value, str):
        data = value.encode("utf-8")
        if content_type is None:
            content_type = "text"
        elif content_types.text_encoding(content_type) not in (None, "utf-8"):
            data, _ = content_types.encode(value, content_type)
    elif isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
    else:
        raise RainTypeError(
            f"blob() takes bytes or str, not {type(value).__name__}; "
            "use encode= (e.g. encode='pickle') to serialise other values"
        )
    return DataObject(label, content_type=content_type, payload=data)


def pickled(value: Any, label: str = "const") -> DataObject:
    """``blob(value, label, encode="pickle")``.

    >>> # pickled([1, 2, 3, 4])
    """
    return blob(value, label, encode="pickle")


def directory(path: str | os.PathLike[str], label: str = "const") -> DataObject:
    """A constant ``'dir'`` object with the content of the local directory ``path``.

    The directory is read now (recursively) and uploaded as a tar archive.

    >>> # d = directory("/path/to/dir")
    """
    instance = DataInstance(path=path)
    if instance.data_type != "dir":
        raise ValueError(f"directory(): {path} is not a directory (use blob() for a file)")
    return DataObject(label, data_type="dir", content_type="dir", payload=instance.get_bytes())
