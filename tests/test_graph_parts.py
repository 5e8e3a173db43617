"""Unit tests for the pure building blocks of shoal.graph (no cluster, no network)."""

from __future__ import annotations

import doctest
import io
import json
import os
import pickle
import stat
import sys
import tarfile
import types
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shoal.graph import (
    ID,
    DataInstance,
    LabeledList,
    ObjectInfo,
    ObjectSpec,
    TaskInfo,
    TaskSpec,
    TaskSpecInput,
    content_types,
    remove_path,
)
from shoal.graph import attributes as attributes_module
from shoal.graph import data_instance as data_instance_module
from shoal.graph import ids as ids_module
from shoal.graph import labeled_list as labeled_list_module
from shoal.graph.content_types import decode, encode, is_subtype, resolve, validate

# Root ignores file permissions: read-only is then checked on the mode bits alone.
IS_ROOT = os.geteuid() == 0


def write_bits(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode) & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)


# --- docstring examples ----------------------------------------------------------------


@pytest.mark.parametrize(
    "module",
    [
        content_types,
        ids_module,
        labeled_list_module,
        attributes_module,
        data_instance_module,
        sys.modules["shoal.graph"],
    ],
    ids=lambda m: m.__name__,
)
def test_docstring_examples_hold(module: types.ModuleType) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


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


# --- LabeledList ---------------------------------------------------------------------------


def test_labeled_list_by_position_and_label() -> None:
    ll = LabeledList(["a", "b"], labels=["output1", None])
    ll.append("c", label="output2")
    ll.append("d")
    assert len(ll) == 4
    assert list(ll) == ll.data == ["a", "b", "c", "d"]
    assert ll[0] == ll["output1"] == "a"
    assert ll[2] == ll["output2"] == "c"
    assert ll[-1] == "d"
    assert ll.labels == ["output1", None, "output2", None]
    assert [ll.get_label(i) for i in range(4)] == ["output1", None, "output2", None]
    assert ll.get_label(-2) == "output2"
    assert ll.index_of_label("output2") == 2
    assert "output1" in ll  # Rain's `in` is about labels
    assert "a" not in ll
    assert [] not in ll  # an unhashable value is simply no label
    assert ll.get("nope") is None
    assert ll.get("nope", 5) == 5
    assert ll.get("output2") == "c"
    assert ll.items() == [("output1", "a"), (None, "b"), ("output2", "c"), (None, "d")]
    assert ll.index("c") == 2
    assert list(reversed(ll)) == ["d", "c", "b", "a"]
    tail = LabeledList.from_pairs(ll.items()[2:])
    assert LabeledList(pairs=[("output2", "c"), (None, "d")]) == tail
    assert LabeledList(ll) == ll  # a copy keeps the labels


def test_labeled_list_errors() -> None:
    ll = LabeledList([1], labels=["x"])
    with pytest.raises(KeyError, match="label 'x' is already"):
        ll.append(2, label="x")
    assert len(ll) == 1  # nothing was added
    with pytest.raises(KeyError, match="label 'y' is already"):
        LabeledList([1, 2], labels=["y", "y"])
    with pytest.raises(ValueError, match="2 items but 1 labels"):
        LabeledList([1, 2], labels=["y"])
    with pytest.raises(TypeError, match="may not be an int"):
        ll.append(2, label=3)
    with pytest.raises(KeyError, match="no item labelled 'z' \\(labels: 'x'\\)"):
        ll["z"]
    with pytest.raises(IndexError):
        ll[5]
    with pytest.raises(KeyError, match="labels: none"):
        LabeledList([1])["x"]
    with pytest.raises(TypeError, match="not both"):
        LabeledList([1], pairs=[("a", 1)])
    ll.append(2)
    with pytest.raises(KeyError, match="label 'x' is already"):
        ll.set_label(1, "x")
    with pytest.raises(KeyError, match="label 'x' is already"):
        ll.set(1, 20, label="x")
    assert ll.items() == [("x", 1), (None, 2)]  # a refused change changes nothing


def test_labeled_list_changes_as_rain() -> None:
    ll = LabeledList(pairs=[("a", 1), (None, 2), ("c", 3)])
    part = ll[1:]
    assert part == [2, 3]  # a slice is a plain list, as in Rain
    ll["c"] = 30  # by label: the item keeps its label
    ll[0] = 10  # by position: the label is cleared
    assert ll.data == [10, 2, 30]
    assert ll.labels == [None, None, "c"]
    assert "a" not in ll
    ll.set(1, 20, label="b")
    ll.set_label(0, "a")
    assert ll.items() == [("a", 10), ("b", 20), ("c", 30)]
    ll.set_label(0, "first")  # relabelling frees the old label
    assert "a" not in ll and ll["first"] == 10
    ll[0:2] = [7, 8, 9]  # slice assignment: new items have no labels
    assert ll.items() == [(None, 7), (None, 8), (None, 9), ("c", 30)]
    assert ll["c"] == 30  # labels after the slice moved with their items
    assert ll.pop() == 30 and "c" not in ll
    ll.insert(0, 6, label="six")
    del ll[1]
    assert ll.items() == [("six", 6), (None, 8), (None, 9)]
    del ll["six"]
    assert ll.data == [8, 9] and ll.labels == [None, None]
    assert list(LabeledList()) == []


def test_labeled_list_repr_equality_and_pickle() -> None:
    ll = LabeledList([1, "two"], labels=[None, "second"])
    assert repr(ll) == "<LabeledList (1, second: two)>"
    assert ll != LabeledList([1, "two"])
    assert ll != [1, "two"]
    back = pickle.loads(pickle.dumps(ll))
    assert back == ll
    assert back["second"] == "two"
    back.append(3, label="third")
    assert back["third"] == 3
    with pytest.raises(TypeError):
        hash(ll)


# --- IDs and attributes ------------------------------------------------------------------


def test_id() -> None:
    oid = ID(2, 5)
    assert oid == (2, 5)
    assert (oid.session_id, oid.id) == (2, 5)
    assert {oid: 1}[ID(2, 5)] == 1
    assert oid.to_json() == [2, 5]
    assert ID.from_json([2, 5]) == oid
    assert ID.from_json((2, 5)) == oid
    assert ID.from_json(oid) is oid
    for bad in ([1], [1, 2, 3], ["1", 2], [1.0, 2], [True, 2], "1,2", None, {"id": 1}):
        with pytest.raises(ValueError, match="pair of integers"):
            ID.from_json(bad)


def test_task_spec_round_trip_and_omissions() -> None:
    spec = TaskSpec(
        id=ID(1, 10),
        task_type="executor/method",
        config={"args": ["grep", "rain"], "shell": False},
        inputs=[TaskSpecInput(ID(1, 1), "data"), TaskSpecInput(ID(1, 2))],
        outputs=[ID(1, 11), ID(1, 12)],
        resources={"cpus": 4},
        user={"foo": 42},
    )
    d = spec.to_dict()
    assert d == {
        "id": [1, 10],
        "task_type": "executor/method",
        "config": {"args": ["grep", "rain"], "shell": False},
        "inputs": [{"id": [1, 1], "label": "data"}, {"id": [1, 2]}],
        "outputs": [[1, 11], [1, 12]],
        "resources": {"cpus": 4},
        "user": {"foo": 42},
    }
    assert TaskSpec.from_dict(json.loads(json.dumps(d))) == spec
    assert TaskSpec().to_dict() == {}
    assert TaskSpec.from_dict({}) == TaskSpec()
    # config is task data: an empty one is kept; only None is left out
    assert TaskSpec(config={}).to_dict() == {"config": {}}
    assert TaskSpec.from_dict({"config": {}}).config == {}
    assert TaskSpec(config=0).to_dict() == {"config": 0}


def test_to_dict_does_not_share_dicts() -> None:
    spec = TaskSpec(user={"a": 1})
    spec.to_dict()["user"]["a"] = 2
    assert spec.user == {"a": 1}
    d = {"user": {"a": 1}}
    ObjectSpec.from_dict(d).user["a"] = 2
    assert d == {"user": {"a": 1}}


def test_task_info_round_trip() -> None:
    start = datetime(2024, 5, 1, 12, 30, 15, 250000, tzinfo=UTC)
    info = TaskInfo(
        error="", start_time=start, duration=1.5, governor="node01", user={"bar": [1, 2, 42]}
    )
    info.append_debug("Variable a = 11")
    info.append_debug("Variable b = 21")
    assert info.debug == "Variable a = 11\nVariable b = 21"
    d = info.to_dict()
    assert d == {
        "start_time": "2024-05-01T12:30:15.250000+00:00",
        "duration": 1.5,
        "governor": "node01",
        "debug": "Variable a = 11\nVariable b = 21",
        "user": {"bar": [1, 2, 42]},
    }
    back = TaskInfo.from_dict(json.loads(json.dumps(d)))
    assert back == info
    assert not back.failed
    assert TaskInfo(error="boom").failed
    assert TaskInfo().to_dict() == {}


def test_object_spec_and_info_round_trip() -> None:
    spec = ObjectSpec(id=ID(3, 4), label="output1", content_type="json", user={"k": "v"})
    assert spec.to_dict() == {
        "id": [3, 4],
        "label": "output1",
        "content_type": "json",
        "data_type": "blob",
        "user": {"k": "v"},
    }
    assert ObjectSpec.from_dict(spec.to_dict()) == spec
    assert ObjectSpec.from_dict({}) == ObjectSpec()
    assert ObjectSpec(content_type="").content_type is None
    info = ObjectInfo(error="bad", size=0, content_type="text-latin-1", debug="x")
    assert info.to_dict() == {
        "error": "bad",
        "size": 0,
        "content_type": "text-latin-1",
        "debug": "x",
    }
    assert ObjectInfo.from_dict(info.to_dict()) == info
    assert info.failed
    info.append_debug("y")
    assert info.debug == "x\ny"
    assert ObjectInfo().to_dict() == {}


def test_from_dict_is_tolerant() -> None:
    # missing keys take defaults, nulls read as missing, unknown keys are ignored
    info = TaskInfo.from_dict({"governor": "n1", "error": None, "user": None, "future_key": 1})
    assert info == TaskInfo(governor="n1")
    spec = ObjectSpec.from_dict({"id": [1, 2], "data_type": "dir", "whatever": []})
    assert spec == ObjectSpec(id=ID(1, 2), data_type="dir")
    spec2 = TaskSpec.from_dict({"inputs": [{"id": [1, 1]}], "outputs": [[1, 2]]})
    assert spec2.inputs == [TaskSpecInput(ID(1, 1))]
    assert spec2.outputs == [ID(1, 2)]


def test_start_time_from_a_number_of_seconds() -> None:
    info = TaskInfo.from_dict({"start_time": 0})
    assert info.start_time == datetime(1970, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("cls", "data", "says"),
    [
        (TaskInfo, {"duration": "long"}, "TaskInfo.duration must be a number"),
        (TaskInfo, {"start_time": "yesterday"}, "TaskInfo.start_time must be an ISO 8601 time"),
        (TaskInfo, {"start_time": 1e300}, "TaskInfo.start_time"),
        (TaskInfo, {"error": 3}, "TaskInfo.error must be a string"),
        (TaskInfo, {"user": [1]}, "TaskInfo.user must be a dict"),
        (ObjectInfo, {"size": -1}, "ObjectInfo.size cannot be negative"),
        (ObjectInfo, {"size": 1.5}, "ObjectInfo.size must be a whole number"),
        (ObjectInfo, {"size": True}, "ObjectInfo.size must be a number"),
        (ObjectInfo, {"content_type": "jsno"}, "ObjectInfo.content_type: unknown content type"),
        (ObjectSpec, {"data_type": "file"}, "ObjectSpec.data_type is 'blob' or 'dir'"),
        (ObjectSpec, {"id": [1]}, "ObjectSpec.id: an ID is a pair of integers"),
        (ObjectSpec, {"label": 5}, "ObjectSpec.label must be a string"),
        (TaskSpec, {"inputs": "abc"}, "TaskSpec.inputs must be a list"),
        (TaskSpec, {"inputs": [{"label": "x"}]}, "TaskSpecInput needs an 'id'"),
        (TaskSpec, {"outputs": [[1, 2], "x"]}, "TaskSpec.outputs: an ID"),
        (TaskSpec, {"resources": 4}, "TaskSpec.resources must be a dict"),
        (TaskSpec, [1, 2], "TaskSpec is read from a dict, not list"),
    ],
)
def test_from_dict_names_bad_values(cls: type, data: object, says: str) -> None:
    with pytest.raises(ValueError) as err:
        cls.from_dict(data)  # type: ignore[attr-defined]
    assert says in str(err.value)


def test_attributes_are_slotted() -> None:
    # A typo in an attribute name fails instead of silently adding a new attribute.
    spec = TaskSpec()
    with pytest.raises(AttributeError):
        spec.usr = {}  # type: ignore[attr-defined]
    spec.user["foo"] = 42  # the guide's way to set user data before submit
    assert spec.to_dict() == {"user": {"foo": 42}}


def test_attributes_pickle() -> None:
    info = TaskInfo(governor="n", start_time=datetime(2024, 1, 1, tzinfo=UTC))
    assert pickle.loads(pickle.dumps(info)) == info
    spec = TaskSpec(id=ID(1, 1), inputs=[TaskSpecInput(ID(1, 0), "x")])
    assert pickle.loads(pickle.dumps(spec)) == spec


# --- DataInstance: blobs -------------------------------------------------------------------


def test_blob_in_memory() -> None:
    d = DataInstance(b"Hello world!")
    assert d.get_bytes() == b"Hello world!"
    assert d.get_str() == "Hello world!"
    assert d.data_type == "blob"
    assert d.content_type is None
    assert d.path is None
    assert d.size == 12
    assert repr(d) == "<DataInstance blob in memory>"
    assert DataInstance(bytearray(b"ab")).get_bytes() == b"ab"
    assert DataInstance(memoryview(b"ab")).get_bytes() == b"ab"


@pytest.mark.parametrize(
    "how", ["pickle", "cloudpickle", "json", "text", "text-utf-16", "text-latin-1"]
)
def test_load_by_content_type(how: str) -> None:
    value = "café" if how.startswith("text") else VALUE
    data, ct = encode(value, how)
    d = DataInstance(data, content_type=ct)
    assert d.content_type == how
    assert d.load() == value
    if how.startswith("text"):
        assert d.get_str() == value


def test_content_type_from_spec_and_info() -> None:
    d = DataInstance(b"[1]", spec=ObjectSpec(content_type="json"))
    assert d.content_type == "json"
    assert d.load() == [1]
    d = DataInstance(b"x", spec=ObjectSpec(content_type="text"), content_type="text-latin-1")
    assert d.content_type == "text-latin-1"
    assert d.info.content_type == "text-latin-1"
    assert d.spec.content_type == "text"
    d = DataInstance(b"x", info=ObjectInfo(content_type="text"))
    assert d.content_type == "text"


def test_content_type_conflicts_are_errors() -> None:
    with pytest.raises(ValueError, match="'json' is not a subtype of the object's declared"):
        DataInstance(b"x", spec=ObjectSpec(content_type="text"), content_type="json")
    given = ObjectInfo()
    with pytest.raises(ValueError, match="not a subtype"):
        DataInstance(b"x", spec=ObjectSpec(content_type="text"), info=given, content_type="json")
    assert given.content_type is None
    with pytest.raises(ValueError, match=r"info\.content_type is 'text'"):
        DataInstance(b"x", info=ObjectInfo(content_type="text"), content_type="json")
    with pytest.raises(ValueError, match="'dir' is for directories"):
        DataInstance(b"x", content_type="dir")
    with pytest.raises(ValueError, match="unknown content type 'jsno'"):
        DataInstance(b"x", content_type="jsno")


def test_load_without_content_type_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no content type to load by"):
        DataInstance(b"[1]").load()
    labelled = DataInstance(b"[1]", spec=ObjectSpec(id=ID(1, 2), label="out"))
    with pytest.raises(ValueError, match=r"no content type to load by: object \(1, 2\) \('out'\)"):
        labelled.load()


def test_get_str_uses_the_text_encoding() -> None:
    assert DataInstance("ž".encode("utf-16"), content_type="text-utf-16").get_str() == "ž"
    # other content types read as UTF-8
    assert DataInstance('"ž"'.encode(), content_type="json").get_str() == '"ž"'
    with pytest.raises(UnicodeDecodeError):
        DataInstance(b"\xff").get_str()


def test_constructor_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        DataInstance()
    with pytest.raises(ValueError, match="exactly one"):
        DataInstance(b"x", path=tmp_path)
    with pytest.raises(TypeError, match="must be bytes, not str"):
        DataInstance("text")  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError, match="missing"):
        DataInstance(path=tmp_path / "missing")
    with pytest.raises(ValueError, match=r"data_type 'blob' given, but .* is a dir"):
        DataInstance(path=tmp_path, data_type="blob")
    with pytest.raises(ValueError, match="data_type must be 'blob' or 'dir'"):
        DataInstance(b"x", data_type="file")
    with pytest.raises(ValueError, match="spec has data_type 'blob', but the data is a dir"):
        DataInstance(path=tmp_path, spec=ObjectSpec())


def test_pickled_instance_keeps_its_metadata() -> None:
    d = DataInstance(b"[1]", spec=ObjectSpec(id=ID(1, 2), label="x"), content_type="json")
    back = pickle.loads(pickle.dumps(d))
    assert back.get_bytes() == b"[1]"
    assert back.spec == d.spec
    assert back.info == d.info
    assert back.load() == [1]


def test_blob_on_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "data.json"
    src.write_bytes(b'{"x": 1}')
    d = DataInstance(path=src, content_type="json")
    assert d.path == src
    assert d.data_type == "blob"
    assert d.size == 8
    assert d.get_bytes() == b'{"x": 1}'
    assert d.load() == {"x": 1}
    assert repr(d) == f"<DataInstance blob 'json' at {str(src)!r}>"
    # a relative path is kept as an absolute one
    monkeypatch.chdir(tmp_path)
    assert DataInstance(path="data.json").path == src


def test_write_blob_from_memory_and_from_disk(tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(b"on disk")
    for d, expected in (
        (DataInstance(b"in memory"), b"in memory"),
        (DataInstance(path=src), b"on disk"),
    ):
        target = tmp_path / "out" / ("m" if d.path is None else "d") / "copy.bin"
        d.write(target)  # missing parents are made
        assert not target.is_symlink()
        assert target.read_bytes() == expected
        target.write_bytes(b"changed")  # the copy is writable...
        assert d.get_bytes() == expected  # ...and changing it leaves the object alone
    with pytest.raises(FileExistsError, match="already exists"):
        DataInstance(b"x").write(src)
    assert src.read_bytes() == b"on disk"


def test_link_blob_on_disk_is_read_only(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    src = store / "obj"
    src.write_bytes(b"immutable")
    d = DataInstance(path=src)
    target = tmp_path / "work" / "input"
    d.link(target)
    assert target.is_symlink()
    assert Path(os.readlink(target)) == src.resolve()
    assert target.read_bytes() == b"immutable"
    assert write_bits(src) == 0
    if not IS_ROOT:
        with pytest.raises(PermissionError):
            target.write_bytes(b"changed")
    # a writable copy can still be made from a linked (read-only) object
    d.write(tmp_path / "copy")
    assert write_bits(tmp_path / "copy") & stat.S_IWUSR
    # linking twice is fine: the source is already read-only
    d.link(tmp_path / "work" / "input2")
    with pytest.raises(FileExistsError):
        d.link(target)
    # the store can delete it; removing the link leaves the object
    remove_path(target)
    assert src.exists()
    remove_path(src)
    assert not src.exists()


def test_link_follows_a_symlink_to_the_stored_file(tmp_path: Path) -> None:
    src = tmp_path / "obj"
    src.write_bytes(b"x")
    (tmp_path / "alias").symlink_to(src)
    DataInstance(path=tmp_path / "alias").link(tmp_path / "linked")
    assert Path(os.readlink(tmp_path / "linked")) == src.resolve()
    assert write_bits(src) == 0


def test_link_falls_back_to_write_in_memory(tmp_path: Path) -> None:
    target = tmp_path / "input"
    DataInstance(b"data").link(target)
    assert not target.is_symlink()
    assert target.read_bytes() == b"data"
    assert write_bits(target) & stat.S_IWUSR


def test_files_on_disk_are_not_read_unless_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "big"
    with open(src, "wb") as f:
        f.truncate(16 * 1024 * 1024)  # sparse: large, cheap to make

    def no_reading(*_args: object, **_kwargs: object) -> bytes:
        raise AssertionError("the file was read into memory")

    monkeypatch.setattr(Path, "read_bytes", no_reading)
    d = DataInstance(path=src)
    assert d.size == 16 * 1024 * 1024
    repr(d)
    d.write(tmp_path / "copy")
    d.link(tmp_path / "link")
    assert (tmp_path / "copy").stat().st_size == d.size
    with pytest.raises(AssertionError, match="read into memory"):
        d.get_bytes()


# --- DataInstance: directories -----------------------------------------------------------


def make_tree(root: Path) -> Path:
    (root / "a" / "deep" / "path").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "myfile.txt").write_bytes(b"12345")
    (root / "a" / "deep" / "path" / "x").write_bytes(b"67890")
    run = root / "run.sh"
    run.write_text("#!/bin/sh\necho hi\n")
    run.chmod(0o755)
    (root / "link-to-x").symlink_to("a/deep/path/x")
    return root


def read_tree(root: Path) -> dict[str, object]:
    """Every entry under root: file contents, 'dir', or the symlink's target."""
    out: dict[str, object] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_symlink():
            out[rel] = ("symlink", os.readlink(p))
        elif p.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = p.read_bytes()
    return out


TREE = {
    "a": "dir",
    "a/deep": "dir",
    "a/deep/path": "dir",
    "a/deep/path/x": b"67890",
    "empty": "dir",
    "link-to-x": ("symlink", "a/deep/path/x"),
    "myfile.txt": b"12345",
    "run.sh": b"#!/bin/sh\necho hi\n",
}


def test_directory_on_disk(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "tree")
    d = DataInstance(path=root)
    assert d.data_type == "dir"
    assert d.content_type == "dir"
    assert d.size == 5 + 5 + len("#!/bin/sh\necho hi\n")
    assert repr(d) == f"<DataInstance dir at {str(root)!r}>"
    with pytest.raises(ValueError, match="is a directory: there is no value to load"):
        d.load()
    with pytest.raises(ValueError, match="is a directory, which has no text"):
        d.get_str()
    with pytest.raises(ValueError, match="a directory has content type 'dir', not 'json'"):
        DataInstance(path=root, content_type="json")
    assert DataInstance(path=root, content_type="dir").content_type == "dir"


def test_directory_bytes_are_a_tar_that_reads_back(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "tree")
    data = DataInstance(path=root).get_bytes()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert set(members) == set(TREE)  # relative names, no './' prefix
        assert tar.extractfile("myfile.txt").read() == b"12345"  # type: ignore[union-attr]
        assert members["link-to-x"].issym()
        assert members["link-to-x"].linkname == "a/deep/path/x"
        assert members["run.sh"].mode & 0o100
        assert members["empty"].isdir()
        assert all(m.uid == 0 and m.uname == "" for m in members.values())
    # the same tree gives the same archive
    assert DataInstance(path=root).get_bytes() == data


def test_directory_write_from_disk_and_from_tar(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "tree")
    on_disk = DataInstance(path=root)
    in_memory = DataInstance(on_disk.get_bytes(), data_type="dir")
    assert in_memory.data_type == "dir"
    assert in_memory.content_type == "dir"
    assert in_memory.path is None
    assert in_memory.get_bytes() == on_disk.get_bytes()
    for name, d in (("from-disk", on_disk), ("from-tar", in_memory)):
        target = tmp_path / "out" / name
        d.write(target)
        assert read_tree(target) == TREE, name
        assert os.access(target / "run.sh", os.X_OK)
        # a fresh, writable copy: it can be changed and added to
        assert write_bits(target / "a" / "deep") & stat.S_IWUSR
        (target / "a" / "deep" / "path" / "x").write_bytes(b"changed")
        (target / "a" / "new").write_bytes(b"new")
    assert read_tree(root) == TREE
    with pytest.raises(FileExistsError):
        in_memory.write(tmp_path / "out" / "from-tar")


def test_directory_link_on_disk_is_read_only(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "store" / "obj")
    d = DataInstance(path=root)
    target = tmp_path / "work" / "adir"
    d.link(target)
    assert target.is_symlink()
    assert read_tree(target) == TREE
    for p in [root, *root.rglob("*")]:
        if not p.is_symlink():
            assert write_bits(p) == 0, p
    if not IS_ROOT:
        with pytest.raises(PermissionError):
            (target / "myfile.txt").write_bytes(b"changed")
        with pytest.raises(PermissionError):
            (target / "new-file").write_bytes(b"x")
    # a writable copy of a read-only tree is writable
    d.write(tmp_path / "copy")
    (tmp_path / "copy" / "a" / "deep" / "new").write_bytes(b"x")
    assert write_bits(tmp_path / "copy" / "myfile.txt") & stat.S_IWUSR
    # the store can delete the read-only tree
    remove_path(target)
    assert root.exists()
    remove_path(root)
    assert not root.exists()
    remove_path(root)  # gone already: no error


def test_directory_in_memory_link_falls_back_to_write(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "tree")
    d = DataInstance(DataInstance(path=root).get_bytes(), spec=ObjectSpec(data_type="dir"))
    d.link(tmp_path / "linked")
    assert not (tmp_path / "linked").is_symlink()
    assert read_tree(tmp_path / "linked") == TREE


def tar_of(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for info, content in members:
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content) if content else None)
    return buffer.getvalue()


def test_unpacking_refuses_to_leave_the_tree(tmp_path: Path) -> None:
    escaping = tarfile.TarInfo("../escaped")
    absolute_link = tarfile.TarInfo("passwd")
    absolute_link.type = tarfile.SYMTYPE
    absolute_link.linkname = "/etc/passwd"
    for bad in (tar_of((escaping, b"x")), tar_of((absolute_link, b""))):
        target = tmp_path / "out"
        with pytest.raises(ValueError, match="not a directory archive that can be unpacked"):
            DataInstance(bad, data_type="dir").write(target)
        assert not target.exists()
    assert not (tmp_path / "escaped").exists()


def test_a_dir_that_is_not_a_tar(tmp_path: Path) -> None:
    d = DataInstance(b"not a tar at all" * 100, data_type="dir")
    with pytest.raises(ValueError, match="not a directory archive"):
        d.write(tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_an_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    d = DataInstance(path=tmp_path / "empty")
    assert d.size == 0
    DataInstance(d.get_bytes(), data_type="dir").write(tmp_path / "copy")
    assert (tmp_path / "copy").is_dir()
    assert list((tmp_path / "copy").iterdir()) == []


def test_remove_path_on_plain_things(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"")
    remove_path(f)
    assert not f.exists()
    tree = make_tree(tmp_path / "t")
    remove_path(tree)
    assert not tree.exists()
    remove_path(tmp_path / "never-was")
