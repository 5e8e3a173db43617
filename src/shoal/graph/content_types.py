"""Content types of data objects: checking them, relating them, and (de)serialising by them.

A content type names the format of a blob's bytes. shoal, like Rain, treats every
object as raw bytes; the content type only tells tasks and clients how to read them.
The recognised names (the Rain user guide's list):

==================  ===================================================
``''`` or ``None``  raw bytes, unknown or unspecified format
``'pickle'``        a Python object serialised by :mod:`pickle`
``'cloudpickle'``   a Python object serialised by cloudpickle
``'json'``          an object serialised as JSON (UTF-8)
``'cbor'``          an object serialised as CBOR (needs ``cbor2``)
``'arrow'``         a Python value or a table in Apache Arrow's IPC stream format
                    (needs ``pyarrow``)
``'text'``          UTF-8 text
``'text-<enc>'``    text in the encoding ``<enc>``, e.g. ``'text-latin-1'``
``'mime/<type>'``   a MIME type, e.g. ``'mime/image/png'``
``'user/<type>'``   a user-defined type; any non-empty name after ``user/``
``'dir'``           a directory object (data type ``'dir'``)
==================  ===================================================

>>> validate("text-utf-8")
'text-utf-8'
>>> is_subtype("text-latin-1", "text")
True
>>> data, ct = encode([1, 2, 3], "json")
>>> data, ct
(b'[1,2,3]', 'json')
>>> decode(data, ct)
[1, 2, 3]

Python values are read and written only for the formats that have a Python reading:
pickle, cloudpickle, json, cbor, arrow, text, text-<enc>, and ``user/`` types given
an encoder and decoder with :func:`register_user_type`. ``''``, ``mime/...`` and
``'dir'`` have none: their data is read as bytes (or, for a directory, mapped to disk).

Every bad input raises ``ValueError`` with a message naming it; a missing optional
package raises ``ImportError`` naming the package to install.
"""

from __future__ import annotations

import codecs
import importlib
import json
import pickle
from collections.abc import Callable
from types import ModuleType
from typing import Any

from shoal.graph.exceptions import ContentTypeError

__all__ = [
    "decode",
    "encode",
    "is_subtype",
    "register_user_type",
    "resolve",
    "text_encoding",
    "unregister_user_type",
    "validate",
]

# Names that stand alone (no "<...>" part). '' is handled apart as "unspecified".
_PLAIN = ("pickle", "cloudpickle", "json", "cbor", "arrow", "text", "dir")
_PREFIXES = ("text-", "mime/", "user/")
_ENCODABLE = (
    "pickle, cloudpickle, json, cbor, arrow, text, text-<encoding> or a registered user/ type"
)

# user/<type> -> (encode, decode), filled by register_user_type(); process-local.
_user_types: dict[str, tuple[Callable[[Any], bytes], Callable[[bytes], Any]]] = {}


def validate(content_type: str | None) -> str | None:
    """Check a content type name and return it, with ``''`` turned into ``None``.

    Both ``''`` and ``None`` mean "unspecified"; shoal keeps ``None`` in Python objects
    (the guide's ``@remote`` returns ``None`` for bytes) and accepts either as input.
    A ``'text-<enc>'`` must name an encoding Python knows as a text encoding (checked
    now, so that a typo fails when the graph is built, not when a task reads its
    input); ``'mime/<type>'`` must have the form ``mime/<major>/<minor>``.

    >>> validate("json")
    'json'
    >>> validate("") is None
    True
    >>> validate("jsno")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: unknown content type 'jsno'; expected '', pickle, cloudpickle, json, ...
    """
    if content_type is None or content_type == "":
        return None
    if not isinstance(content_type, str):
        raise ValueError(
            f"a content type is a string or None, not {type(content_type).__name__} "
            f"{content_type!r}"
        )
    if content_type in _PLAIN:
        return content_type
    if content_type.startswith("text-"):
        _check_encoding(content_type[len("text-") :], content_type)
        return content_type
    if content_type.startswith("mime/"):
        major, slash, minor = content_type[len("mime/") :].partition("/")
        if not (major and slash and minor) or content_type != content_type.strip():
            raise ValueError(
                f"bad MIME content type {content_type!r}; write it as mime/<type>/<subtype>, "
                "e.g. 'mime/image/png'"
            )
        return content_type
    if content_type.startswith("user/"):
        if content_type == "user/":
            raise ValueError("content type 'user/' needs a name after 'user/', e.g. 'user/mesh'")
        return content_type
    raise ValueError(
        f"unknown content type {content_type!r}; expected '', pickle, cloudpickle, json, cbor, "
        "arrow, text, text-<encoding>, mime/<type>, user/<type> or dir"
    )


def _check_encoding(encoding: str, content_type: str) -> None:
    try:
        # Encoding an empty string rejects both unknown names and codecs that are
        # not text encodings (base64, rot13...), which bytes.decode() cannot use.
        "".encode(encoding)
        b"".decode(encoding)
    except LookupError:
        raise ValueError(
            f"content type {content_type!r} names {encoding!r}, which is not a text "
            "encoding Python knows (e.g. 'text-utf-8', 'text-latin-1', 'text-utf-16')"
        ) from None


def text_encoding(content_type: str | None) -> str | None:
    """The Python codec name to read a text content type by, or ``None`` if it is not text.

    >>> text_encoding("text"), text_encoding("text-latin-1"), text_encoding("json")
    ('utf-8', 'latin-1', None)
    """
    content_type = validate(content_type)
    if content_type == "text":
        return "utf-8"
    if content_type is not None and content_type.startswith("text-"):
        return content_type[len("text-") :]
    return None


def _codec_name(encoding: str) -> str:
    # 'utf8', 'UTF-8' and 'utf_8' are one codec; compare what Python resolves them to.
    return codecs.lookup(encoding).name


def is_subtype(actual: str | None, declared: str | None) -> bool:
    """Whether data of type ``actual`` may stand where the graph declared ``declared``.

    The rules, the guide's first and then the ones shoal adds:

    - every type (unspecified included) is a subtype of the unspecified type;
    - every type is a subtype of itself;
    - ``'text-<enc>'`` is a subtype of ``'text'``: ``'text'`` declared means
      "some text", the encoding being told by the actual type;
    - ``'text'`` (UTF-8) and ``'text-<enc>'`` are subtypes of each other when
      ``<enc>`` is UTF-8 by another name, and two ``'text-<enc>'`` types are equal when
      Python resolves both names to one codec (``text-utf8`` is ``text-UTF-8``): they
      describe the same bytes;
    - ``'pickle'`` is a subtype of ``'cloudpickle'``, not the reverse: a cloudpickle
      reader is :func:`pickle.loads`, so it reads any pickle, while a cloudpickle
      stream may need cloudpickle installed where it is read;
    - MIME types compare without regard to case (RFC 2045); there are no wildcards;
    - ``user/`` types are equal or unrelated (no hierarchy: the guide allows any name);
    - an unspecified ``actual`` is a subtype only of the unspecified type. When a task
      sets no type the declared one applies; :func:`resolve` does that.

    Both arguments are validated first (``ValueError`` if one is not a content type).

    >>> is_subtype("json", None), is_subtype("text-latin-1", "text"), is_subtype("text", "json")
    (True, True, False)
    """
    actual = validate(actual)
    declared = validate(declared)
    if declared is None or actual == declared:
        return True
    if actual is None:
        return False
    actual_enc = text_encoding(actual)
    declared_enc = text_encoding(declared)
    if actual_enc is not None and declared_enc is not None:
        return declared == "text" or _codec_name(actual_enc) == _codec_name(declared_enc)
    if actual == "pickle" and declared == "cloudpickle":
        return True
    if actual.startswith("mime/") and declared.startswith("mime/"):
        return actual.lower() == declared.lower()
    return False


def resolve(actual: str | None, declared: str | None) -> str | None:
    """The content type an object ends with: ``actual`` if set, else ``declared``.

    This is the guide's rule for an object whose type was declared in the graph and
    may also be set by the task that made it. Raises ``ValueError`` when ``actual`` is
    not a subtype of ``declared``.

    >>> resolve(None, "json"), resolve("text-latin-1", "text")
    ('json', 'text-latin-1')
    """
    actual = validate(actual)
    declared = validate(declared)
    if actual is None:
        return declared
    if not is_subtype(actual, declared):
        raise ValueError(
            f"content type {actual!r} is not a subtype of the declared content type {declared!r}"
        )
    return actual


def _require(module: str, package: str, content_type: str) -> ModuleType:
    # Optional formats import their library only when used, so shoal itself does not
    # depend on them; a missing one gets a message that says what to install.
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"content type {content_type!r} needs the {package!r} package, which is not "
            f"installed here: pip install {package}"
        ) from exc


def register_user_type(
    content_type: str,
    *,
    encode: Callable[[Any], bytes],
    decode: Callable[[bytes], Any],
) -> None:
    """Teach :func:`encode` and :func:`decode` a ``user/<type>`` content type.

    The registry is per process: a worker that must load such objects needs the same
    registration (e.g. at import of the module that defines the task). Registering a
    name again replaces its functions.

    >>> register_user_type("user/csv-line",
    ...     encode=lambda v: ",".join(v).encode(), decode=lambda b: b.decode().split(","))
    >>> decode(b"a,b", "user/csv-line")
    ['a', 'b']
    >>> unregister_user_type("user/csv-line")
    """
    content_type = validate(content_type) or ""
    if not content_type.startswith("user/"):
        raise ValueError(f"only user/<type> content types can be registered, not {content_type!r}")
    if not (callable(encode) and callable(decode)):
        raise ValueError("register_user_type needs callable encode= and decode= functions")
    _user_types[content_type] = (encode, decode)


def unregister_user_type(content_type: str) -> None:
    """Forget a ``user/<type>`` registered by :func:`register_user_type` (no error if unknown)."""
    _user_types.pop(content_type, None)


def encode(value: Any, how: str) -> tuple[bytes, str]:
    """Serialise ``value`` by content type ``how``; return the bytes and the content type.

    ``how`` is one of pickle, cloudpickle, json, cbor, arrow, text, text-<enc>, or a
    registered ``user/`` type. Text types need a ``str``. ``arrow`` takes what
    Rain's did, any Python value Arrow can type (numbers, strings, lists, dicts with
    str keys...), which loads back as that value, and also a ``pyarrow.Table`` or
    ``RecordBatch`` (loads back as a ``pyarrow.Table``) or a pandas DataFrame (loads
    back as a DataFrame); it writes one Arrow IPC stream.

    >>> encode("žluť", "text-utf-16-le")
    (b'~\\x01l\\x00u\\x00e\\x01', 'text-utf-16-le')
    """
    content_type = validate(how)
    if content_type is None:
        raise ContentTypeError(f"no content type to encode by; use one of {_ENCODABLE}")
    encoding = text_encoding(content_type)
    if encoding is not None:
        if not isinstance(value, str):
            raise ValueError(
                f"content type {content_type!r} encodes a str, not {type(value).__name__}"
            )
        try:
            return value.encode(encoding), content_type
        except UnicodeEncodeError as exc:
            raise ValueError(f"cannot encode the text as {content_type!r}: {exc}") from exc
    serialise = _encoder(content_type)
    try:
        data = serialise(value)
    except Exception as exc:
        raise ValueError(
            f"cannot encode {type(value).__name__} as {content_type!r}: {exc}"
        ) from exc
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ValueError(
            f"the encoder of {content_type!r} returned {type(data).__name__}, not bytes"
        )
    return bytes(data), content_type


def _encoder(content_type: str) -> Callable[[Any], bytes]:
    if content_type == "pickle":
        return lambda v: pickle.dumps(v, protocol=pickle.HIGHEST_PROTOCOL)
    if content_type == "cloudpickle":
        cloudpickle = _require("cloudpickle", "cloudpickle", content_type)
        return lambda v: cloudpickle.dumps(v, protocol=pickle.HIGHEST_PROTOCOL)
    if content_type == "json":
        # Compact and UTF-8 (RFC 8259 says JSON exchanged between systems is UTF-8).
        return lambda v: json.dumps(v, ensure_ascii=False, separators=(",", ":")).encode()
    if content_type == "cbor":
        cbor2 = _require("cbor2", "cbor2", content_type)
        return cbor2.dumps
    if content_type == "arrow":
        return _arrow_encoder(_require("pyarrow", "pyarrow", content_type))
    if content_type in _user_types:
        return _user_types[content_type][0]
    if content_type.startswith("user/"):
        raise ValueError(
            f"unknown user content type {content_type!r}: register it with "
            "shoal.graph.content_types.register_user_type() to encode by it"
        )
    raise ValueError(f"cannot encode to {content_type!r}; encode= takes {_ENCODABLE}")


# Schema metadata of an arrow stream that holds one Python value (not a table).
_ARROW_VALUE = b"shoal.value"


def _arrow_encoder(pa: ModuleType) -> Callable[[Any], bytes]:
    def encode_arrow(value: Any) -> bytes:
        # Rain's 'arrow' was pyarrow.serialize(): any Python value, loaded back as
        # that value. pyarrow no longer has it; shoal writes an IPC stream instead:
        # tables as tables, and any other value as a one-row column, marked so
        # that decode() gives the value back.
        if isinstance(value, pa.RecordBatch):
            table = pa.Table.from_batches([value])
        elif isinstance(value, pa.Table):
            table = value
        elif type(value).__name__ == "DataFrame" and hasattr(value, "columns"):
            table = pa.Table.from_pandas(value)
        else:
            table = pa.table({"value": pa.array([value])})
            table = table.replace_schema_metadata({_ARROW_VALUE: b"1"})
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return sink.getvalue().to_pybytes()

    return encode_arrow


def _arrow_decoder(pa: ModuleType) -> Callable[[bytes], Any]:
    def decode_arrow(data: bytes) -> Any:
        table = pa.ipc.open_stream(pa.py_buffer(data)).read_all()
        metadata = table.schema.metadata or {}
        if _ARROW_VALUE in metadata:
            return table.column(0)[0].as_py()
        if b"pandas" in metadata:
            # A DataFrame comes back as one, when pandas is there to make it.
            try:
                return table.to_pandas()
            except ImportError:
                return table
        return table

    return decode_arrow


def decode(data: bytes | bytearray | memoryview, content_type: str | None) -> Any:
    """Deserialise ``data`` by its content type: the inverse of :func:`encode`.

    Raises :class:`~shoal.graph.exceptions.ContentTypeError` (a ``RainException``
    and a ``ValueError``) when there is no content type ("no content type to load
    by"), ``ValueError`` when the type has no Python reading (``mime/...``, ``dir``, an unregistered
    ``user/`` type), or when the bytes are not valid for it.

    >>> decode(b'{"x": 1}', "json")
    {'x': 1}
    >>> decode(b"raw", None)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    shoal.graph.exceptions.ContentTypeError: no content type to load by: ...
    """
    content_type = validate(content_type)
    if content_type is None:
        # Rain raised its RainException here; ContentTypeError is one (and a ValueError).
        raise ContentTypeError(
            "no content type to load by: the object's content type is unspecified; "
            "read its bytes instead"
        )
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ValueError(f"decode() reads bytes, not {type(data).__name__}")
    # One copy for the rare bytearray/memoryview, so every reader (and user decoders,
    # promised bytes) gets bytes.
    data = bytes(data)
    read = _decoder(content_type)
    try:
        return read(data)
    except Exception as exc:
        raise ValueError(f"cannot decode {len(data)} bytes as {content_type!r}: {exc}") from exc


def _decoder(content_type: str) -> Callable[[bytes], Any]:
    encoding = text_encoding(content_type)
    if encoding is not None:
        return lambda d: d.decode(encoding)
    if content_type == "pickle":
        return pickle.loads
    if content_type == "cloudpickle":
        # cloudpickle writes ordinary pickle streams whose functions and classes refer
        # to cloudpickle's helpers; importing it first gives a clear error if missing.
        _require("cloudpickle", "cloudpickle", content_type)
        return pickle.loads
    if content_type == "json":
        return json.loads
    if content_type == "cbor":
        cbor2 = _require("cbor2", "cbor2", content_type)
        return cbor2.loads
    if content_type == "arrow":
        pa = _require("pyarrow", "pyarrow", content_type)
        return _arrow_decoder(pa)
    if content_type in _user_types:
        return _user_types[content_type][1]
    if content_type.startswith("user/"):
        raise ValueError(
            f"unknown user content type {content_type!r}: register it with "
            "shoal.graph.content_types.register_user_type() to load by it"
        )
    if content_type == "dir":
        raise ValueError(
            "a directory ('dir') has no Python value to load; map it to disk with "
            "write()/link(), or read it as a tar archive with get_bytes()"
        )
    raise ValueError(f"content type {content_type!r} has no Python reading; read its bytes instead")
