"""Content types of shoal.graph: names, subtypes, encoding and decoding (no cluster)."""

from __future__ import annotations

import json
import sys
import types
from datetime import UTC, datetime

import pytest

from shoal.graph import (
    content_types,
)
from shoal.graph.content_types import decode, encode, is_subtype, resolve, validate

# --- content types: names ----------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "pickle",
        "cloudpickle",
        "json",
        "cbor",
        "arrow",
        "text",
        "text-utf-8",
        "text-latin-1",
        "text-utf-16",
        "mime/image/png",
        "mime/text/plain; charset=utf-8",
        "user/mesh",
        "user/any thing/at all",
        "dir",
    ],
)
def test_recognised_content_types_validate_to_themselves(name: str) -> None:
    assert validate(name) == name


def test_unspecified_content_type_is_none() -> None:
    assert validate("") is None
    assert validate(None) is None


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("jsno", "unknown content type 'jsno'"),
        ("JSON", "unknown content type 'JSON'"),
        (" json", "unknown content type ' json'"),
        ("text-", "names ''"),
        ("text-klingon", "'klingon', which is not a text encoding"),
        ("text-base64", "'base64', which is not a text encoding"),
        ("mime/", "bad MIME content type 'mime/'"),
        ("mime/png", "bad MIME content type 'mime/png'"),
        ("mime/image/", "bad MIME content type 'mime/image/'"),
        ("user/", "needs a name after 'user/'"),
        (3, "not int 3"),
        (b"json", "not bytes b'json'"),
    ],
)
def test_bad_content_types_are_named_in_the_error(name: object, says: str) -> None:
    with pytest.raises(ValueError) as err:
        validate(name)  # type: ignore[arg-type]
    assert says in str(err.value)


def test_text_encoding() -> None:
    assert content_types.text_encoding("text") == "utf-8"
    assert content_types.text_encoding("text-utf-16-le") == "utf-16-le"
    for other in (None, "", "json", "mime/text/plain", "user/text", "dir"):
        assert content_types.text_encoding(other) is None


# --- content types: subtypes -------------------------------------------------------------


@pytest.mark.parametrize(
    ("actual", "declared", "expected"),
    [
        # everything is a subtype of the unspecified type, both spellings
        ("json", None, True),
        ("json", "", True),
        ("dir", None, True),
        ("user/x", "", True),
        (None, None, True),
        ("", None, True),
        # equal types
        ("json", "json", True),
        ("cbor", "cbor", True),
        ("mime/image/png", "mime/image/png", True),
        ("user/mesh", "user/mesh", True),
        ("dir", "dir", True),
        # text family
        ("text-latin-1", "text", True),
        ("text-utf-16", "text", True),
        ("text", "text-latin-1", False),
        ("text", "text-utf-8", True),
        ("text-utf8", "text", True),
        ("text-utf8", "text-UTF-8", True),
        ("text-latin-1", "text-iso8859-1", True),
        ("text-latin-1", "text-utf-8", False),
        # pickle readers
        ("pickle", "cloudpickle", True),
        ("cloudpickle", "pickle", False),
        # MIME: case-insensitive, no wildcards
        ("mime/Image/PNG", "mime/image/png", True),
        ("mime/image/png", "mime/image/jpeg", False),
        # user types: no hierarchy
        ("user/mesh/fine", "user/mesh", False),
        # unrelated
        ("json", "text", False),
        ("text", "json", False),
        ("pickle", "json", False),
        ("dir", "text", False),
        ("mime/text/plain", "text", False),
        # an unset actual type is not a subtype of a set one
        (None, "json", False),
        ("", "text", False),
    ],
)
def test_is_subtype(actual: str | None, declared: str | None, expected: bool) -> None:
    assert is_subtype(actual, declared) is expected


def test_is_subtype_rejects_bad_names() -> None:
    with pytest.raises(ValueError, match="'jsno'"):
        is_subtype("jsno", None)
    with pytest.raises(ValueError, match="'txt'"):
        is_subtype("text", "txt")


def test_resolve() -> None:
    assert resolve(None, "json") == "json"
    assert resolve("", None) is None
    assert resolve("text-latin-1", "text") == "text-latin-1"
    assert resolve("json", None) == "json"
    with pytest.raises(ValueError, match="'json' is not a subtype of the declared content type"):
        resolve("json", "text")


# --- content types: encode and decode --------------------------------------------------


VALUE = {"a": [1, 2.5, None, True], "b": "žluťoučký kůň", "c": {"nested": "x"}}


@pytest.mark.parametrize("how", ["pickle", "cloudpickle", "json"])
def test_encode_decode_round_trip(how: str) -> None:
    data, ct = encode(VALUE, how)
    assert isinstance(data, bytes)
    assert ct == how
    assert decode(data, ct) == VALUE


def test_json_is_compact_utf8() -> None:
    data, _ = encode({"k": "ž"}, "json")
    assert data == '{"k":"ž"}'.encode()


def test_pickle_keeps_python_types() -> None:
    value = (1, {2, 3}, b"bytes", datetime(2024, 1, 2, tzinfo=UTC))
    assert decode(*encode(value, "pickle")) == value


def test_cloudpickle_carries_functions_that_pickle_cannot() -> None:
    def scale(x: int) -> int:
        return 3 * x

    with pytest.raises(ValueError, match="cannot encode function as 'pickle'"):
        encode(scale, "pickle")
    data, ct = encode(scale, "cloudpickle")
    assert decode(data, ct)(5) == 15


@pytest.mark.parametrize(
    ("text", "how"),
    [
        ("Hello world!", "text"),
        ("žluťoučký kůň", "text"),
        ("žluťoučký kůň", "text-utf-16"),
        ("café", "text-latin-1"),
        ("žluť", "text-latin2"),
        ("", "text"),
    ],
)
def test_text_round_trip(text: str, how: str) -> None:
    data, ct = encode(text, how)
    assert ct == how
    enc = content_types.text_encoding(how)
    assert enc is not None
    assert data == text.encode(enc)
    assert decode(data, ct) == text


def test_text_needs_a_str_and_an_encodable_one() -> None:
    with pytest.raises(ValueError, match="'text' encodes a str, not bytes"):
        encode(b"raw", "text")
    with pytest.raises(ValueError, match="cannot encode the text as 'text-latin-1'"):
        encode("日本", "text-latin-1")


def test_cbor_round_trip_with_cbor2() -> None:
    pytest.importorskip("cbor2")
    data, ct = encode(VALUE, "cbor")
    assert ct == "cbor"
    assert decode(data, ct) == VALUE


def test_cbor_goes_through_the_cbor2_module(monkeypatch: pytest.MonkeyPatch) -> None:
    # Checks the wiring without the package: a stand-in cbor2 with the same two calls.
    fake = types.ModuleType("cbor2")
    fake.dumps = lambda v: b"CBOR" + json.dumps(v).encode()  # type: ignore[attr-defined]
    fake.loads = lambda b: json.loads(b[4:])  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "cbor2", fake)
    data, ct = encode([1, 2], "cbor")
    assert (data, ct) == (b"CBOR[1, 2]", "cbor")
    assert decode(data, "cbor") == [1, 2]


def test_arrow_round_trip_with_pyarrow() -> None:
    pa = pytest.importorskip("pyarrow")
    table = pa.table({"x": [1, 2, 3], "name": ["a", "b", "c"]})
    data, ct = encode(table, "arrow")
    assert ct == "arrow"
    back = decode(data, ct)
    assert isinstance(back, pa.Table)
    assert back.equals(table)
    # a record batch loads back as the same table
    assert decode(encode(table.to_batches()[0], "arrow")[0], "arrow").equals(table)
    # any other value loads back as itself, as Rain's pyarrow.serialize() did
    columns = {"x": [1, 2, 3], "name": ["a", "b", "c"]}
    assert decode(encode(columns, "arrow")[0], "arrow") == columns


@pytest.mark.parametrize(("how", "package"), [("cbor", "cbor2"), ("arrow", "pyarrow")])
def test_missing_optional_package_is_named(
    how: str, package: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # None in sys.modules makes "import <package>" fail, as if it were not installed.
    monkeypatch.setitem(sys.modules, package, None)
    with pytest.raises(ImportError, match=f"needs the '{package}' package.*pip install {package}"):
        encode([1], how)
    with pytest.raises(ImportError, match=f"pip install {package}"):
        decode(b"\x00", how)


def test_user_types_encode_and_decode_once_registered() -> None:
    with pytest.raises(ValueError, match=r"unknown user content type 'user/point'.*register"):
        encode((1, 2), "user/point")
    with pytest.raises(ValueError, match="unknown user content type 'user/point'"):
        decode(b"1,2", "user/point")
    content_types.register_user_type(
        "user/point",
        encode=lambda p: f"{p[0]},{p[1]}".encode(),
        decode=lambda b: tuple(int(v) for v in b.split(b",")),
    )
    try:
        assert encode((1, 2), "user/point") == (b"1,2", "user/point")
        assert decode(b"1,2", "user/point") == (1, 2)
        assert is_subtype("user/point", "user/point")
    finally:
        content_types.unregister_user_type("user/point")
    with pytest.raises(ValueError, match="unknown user content type"):
        decode(b"1,2", "user/point")


def test_register_user_type_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="only user/<type>"):
        content_types.register_user_type("json", encode=bytes, decode=bytes)
    with pytest.raises(ValueError, match="callable"):
        content_types.register_user_type("user/x", encode=b"", decode=bytes)  # type: ignore[arg-type]


def test_a_user_encoder_must_return_bytes() -> None:
    content_types.register_user_type("user/bad", encode=lambda v: "not bytes", decode=bytes)
    try:
        with pytest.raises(ValueError, match="returned str, not bytes"):
            encode(1, "user/bad")
    finally:
        content_types.unregister_user_type("user/bad")


@pytest.mark.parametrize(
    ("how", "says"),
    [
        (None, "no content type to encode by"),
        ("", "no content type to encode by"),
        ("mime/image/png", "cannot encode to 'mime/image/png'"),
        ("dir", "cannot encode to 'dir'"),
        ("jsno", "unknown content type 'jsno'"),
    ],
)
def test_encode_errors(how: str | None, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        encode([1], how)  # type: ignore[arg-type]


def test_encode_names_the_value_it_cannot_serialise() -> None:
    with pytest.raises(ValueError, match="cannot encode set as 'json'"):
        encode({1, 2}, "json")


@pytest.mark.parametrize(
    ("content_type", "says"),
    [
        (None, "no content type to load by"),
        ("", "no content type to load by"),
        ("user/unknown", "unknown user content type 'user/unknown'"),
        ("mime/image/png", "'mime/image/png' has no Python reading"),
        ("dir", "a directory"),
        ("jsno", "unknown content type"),
    ],
)
def test_decode_errors(content_type: str | None, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        decode(b"{}", content_type)


def test_decode_reports_bad_data() -> None:
    with pytest.raises(ValueError, match="cannot decode 5 bytes as 'json'"):
        decode(b"{oops", "json")
    with pytest.raises(ValueError, match="cannot decode 3 bytes as 'pickle'"):
        decode(b"bad", "pickle")
    with pytest.raises(ValueError, match="as 'text'"):
        decode(b"\xff\xfe\xfa", "text")
    with pytest.raises(ValueError, match="reads bytes, not str"):
        decode("[]", "json")  # type: ignore[arg-type]


def test_decode_takes_any_bytes_like() -> None:
    data, ct = encode(VALUE, "json")
    assert decode(bytearray(data), ct) == VALUE
    assert decode(memoryview(data), ct) == VALUE
