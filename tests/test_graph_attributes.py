"""shoal.graph's docstring examples, LabeledList, IDs, spec and info attributes (no cluster)."""

from __future__ import annotations

import doctest
import json
import pickle
import sys
import types
from datetime import UTC, datetime

import pytest

from shoal.graph import (
    ID,
    LabeledList,
    ObjectInfo,
    ObjectSpec,
    TaskInfo,
    TaskSpec,
    TaskSpecInput,
    content_types,
)
from shoal.graph import attributes as attributes_module
from shoal.graph import data_instance as data_instance_module
from shoal.graph import ids as ids_module
from shoal.graph import labeled_list as labeled_list_module

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
