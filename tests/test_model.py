"""Unit tests for shoal.model."""

from __future__ import annotations

import pickle

import pytest

from shoal.model import (
    Deployment,
    DeploymentExecutionResult,
    Experiment,
    ExperimentExecutionInformation,
    ExperimentStatus,
    Failure,
    FlagValues,
    Node,
    Nodes,
    Pipeline,
    Result,
    Success,
    Task,
    UnwrapFailedError,
    is_successful,
)


class Echo(Task):
    requirements = ["apt-get install -y iperf3", "pip install scapy"]

    def __init__(self, value: object, name: str | None = None) -> None:
        super().__init__(name=name)
        self.value = value

    def run(self) -> object:
        return self.value


class Lazy(Task):
    """Forgets to call super().__init__()."""

    requirements = ["pip install scapy", "echo hi"]

    def __init__(self, value: int) -> None:
        self.value = value

    def run(self) -> int:
        return self.value * 2


# --- Node / Nodes ---------------------------------------------------------


def test_node_repr_str_eq_hash() -> None:
    a = Node("raspi-1", properties={"x": 1})
    b = Node("raspi-1", cpus=4)
    assert repr(a) == "raspi-1"
    assert str(a) == "raspi-1"
    assert a == b
    assert hash(a) == hash(b)
    assert len({a, b}) == 1
    assert a != Node("raspi-2")
    assert a != "raspi-1"


def test_node_dict_roundtrip() -> None:
    node = Node("n", {"k": "v"}, "arm64", 4, False, {"load": 0.5})
    back = Node.from_dict(node.to_dict())
    assert back.to_dict() == node.to_dict()
    minimal = Node.from_dict({"name": "m"})
    assert (minimal.architecture, minimal.cpus, minimal.online) == ("unknown", 1, True)
    assert minimal.properties == {} and minimal.metrics == {}


def test_node_default_dicts_not_shared() -> None:
    a, b = Node("a"), Node("b")
    a.properties["x"] = 1
    assert b.properties == {}


def _nodes() -> Nodes:
    return Nodes([Node("raspi-1"), Node("raspi-2"), Node("snl-server-5", architecture="amd64")])


def test_nodes_basics() -> None:
    nodes = _nodes()
    assert repr(nodes) == "[raspi-1, raspi-2, snl-server-5]"
    assert repr(Nodes()) == "[]"
    assert len(nodes) == 3
    assert nodes.names() == ["raspi-1", "raspi-2", "snl-server-5"]
    assert [n.name for n in nodes] == nodes.names()
    assert nodes[0] == Node("raspi-1")
    assert isinstance(nodes[1:], Nodes)
    assert nodes[1:].names() == ["raspi-2", "snl-server-5"]
    assert nodes["snl-server-5"].architecture == "amd64"
    assert "raspi-2" in nodes
    assert Node("raspi-2") in nodes
    assert "nope" not in nodes
    with pytest.raises(KeyError, match="nope"):
        nodes["nope"]


def test_nodes_filter_take() -> None:
    nodes = _nodes()
    raspis = nodes.filter(lambda n: n.name.startswith("raspi"))
    assert isinstance(raspis, Nodes)
    assert raspis.names() == ["raspi-1", "raspi-2"]
    assert nodes.take(2).names() == ["raspi-1", "raspi-2"]
    assert len(nodes.take(0)) == 0
    # as netUnicorn's: up to n nodes
    assert raspis.take(3).names() == ["raspi-1", "raspi-2"]
    with pytest.raises(ValueError):
        nodes.take(-1)


# --- FlagValues -----------------------------------------------------------


def test_flag_values_repr_str() -> None:
    fv = FlagValues(text_value="stage 2", int_value=0)
    assert repr(fv) == "FlagValues(text_value='stage 2', int_value=0)"
    assert str(fv) == "text_value='stage 2' int_value=0"
    assert str(FlagValues(int_value=0)) == "text_value=None int_value=0"


def test_flag_values_validation() -> None:
    with pytest.raises(TypeError, match="text_value"):
        FlagValues(text_value=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="int_value"):
        FlagValues(int_value=True)
    with pytest.raises(ValueError, match="int_value"):
        FlagValues(int_value="three")  # type: ignore[arg-type]
    # As pydantic did for netUnicorn: a number in a string is that number.
    assert FlagValues(int_value="3").int_value == 3  # type: ignore[arg-type]


def test_flag_values_dict_roundtrip() -> None:
    fv = FlagValues("a", 1)
    assert fv.to_dict() == {"text_value": "a", "int_value": 1}
    assert FlagValues.from_dict(fv.to_dict()) == fv
    assert FlagValues.from_dict({}) == FlagValues()


# --- Result ---------------------------------------------------------------


def test_result_repr() -> None:
    assert repr(Success(0)) == "<Success: 0>"
    assert repr(Failure("boom")) == "<Failure: boom>"
    assert (
        repr(Success({"text_value": "stage 1", "int_value": 3}))
        == "<Success: {'text_value': 'stage 1', 'int_value': 3}>"
    )
    assert repr(Success(FlagValues("stage 2", 0))) == "<Success: text_value='stage 2' int_value=0>"


def test_result_unwrap_and_friends() -> None:
    ok, bad = Success(1), Failure("boom")
    assert ok.unwrap() == 1
    assert bad.failure() == "boom"
    assert ok.value_or(5) == 1
    assert bad.value_or(5) == 5
    assert ok.is_success and not bad.is_success
    assert is_successful(ok) and not is_successful(bad)
    with pytest.raises(UnwrapFailedError) as info:
        bad.unwrap()
    assert info.value.halted_container is bad
    with pytest.raises(UnwrapFailedError):
        ok.failure()
    with pytest.raises(TypeError):
        Result(1)


def test_result_eq_hash() -> None:
    assert Success(1) == Success(1)
    assert Success(1) != Failure(1)
    assert Success(1) != Success(2)
    assert Success(1) != 1
    assert len({Success(1), Success(1), Failure(1)}) == 2
    with pytest.raises(TypeError):
        hash(Success([1]))


def test_result_immutable() -> None:
    with pytest.raises(AttributeError):
        Success(1)._inner_value = 2  # type: ignore[misc]


def test_result_pattern_matching() -> None:
    def describe(r: Result) -> str:
        match r:
            case Success(value):
                return f"ok {value}"
            case Failure(error):
                return f"err {error}"
        return "?"

    assert describe(Success(3)) == "ok 3"
    assert describe(Failure("x")) == "err x"


@pytest.mark.parametrize(
    "obj",
    [Success(0), Failure("boom"), Success({"a": [Success(1)]}), FlagValues("t", 2)],
)
def test_pickle_roundtrip(obj: object) -> None:
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        assert pickle.loads(pickle.dumps(obj, protocol=protocol)) == obj


def test_unwrap_error_pickles() -> None:
    err = UnwrapFailedError(Failure("boom"))
    back = pickle.loads(pickle.dumps(err))
    assert back.halted_container == Failure("boom")
    assert "boom" in str(back)


# --- Task / Pipeline ------------------------------------------------------


def test_task_defaults_and_call() -> None:
    t = Echo(5)
    assert len(t.name) == 36
    assert t.previous_steps == {}
    assert t() == 5
    assert repr(Echo(1, name="hello")) == "<Echo hello>"
    assert Echo(1).name != Echo(1).name


def test_task_without_super_init_has_defaults() -> None:
    t = Lazy(2)
    assert isinstance(t.name, str) and t.name
    assert t.previous_steps == {}
    assert t.requirements == ["pip install scapy", "echo hi"]
    t.requirements.append("more")
    assert Lazy.requirements == ["pip install scapy", "echo hi"]
    assert t() == 4


def test_task_is_abstract() -> None:
    with pytest.raises(TypeError):
        Task()  # type: ignore[abstract]


def test_pipeline_stages() -> None:
    a, b, c = Echo(1, name="a"), Echo(2, name="b"), Lazy(3)
    c.name = "c"
    p = Pipeline(name="p").then(a).then([b, c])
    assert p.stages == [[a], [b, c]]
    assert p.tasks == [a, b, c]
    assert len(p) == 2
    assert list(p) == [[a], [b, c]]
    assert p.requirements() == ["apt-get install -y iperf3", "pip install scapy", "echo hi"]
    assert "[a] -> [b, c]" in repr(p)
    assert p.early_stopping is True

    p2 = Pipeline([a, (b, c)], early_stopping=False)
    assert p2.stages == [[a], [b, c]]
    assert p2.early_stopping is False
    assert len(Pipeline()) == 0


def test_pipeline_errors() -> None:
    p = Pipeline().then(Echo(1))
    with pytest.raises(ValueError, match="stage 1"):
        p.then([])
    with pytest.raises(TypeError, match=r"position 1.*'oops'"):
        p.then([Echo(1), "oops"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="42"):
        p.then(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="instantiate"):
        p.then(Echo)  # type: ignore[arg-type]
    assert len(p) == 1


def test_pipeline_pickle() -> None:
    p = Pipeline(name="pp").then(Echo(7, name="e")).then([Lazy(1), Lazy(2)])
    back = pickle.loads(pickle.dumps(p))
    assert back.name == "pp"
    assert [t.name for t in back.tasks] == [t.name for t in p.tasks]
    assert back.stages[0][0]() == 7
    assert back.stages[1][1]() == 4
    assert back.stages[1][1].requirements == ["pip install scapy", "echo hi"]


# --- Experiment -----------------------------------------------------------


def test_experiment_status() -> None:
    assert str(ExperimentStatus.READY) == "ExperimentStatus.READY"
    assert ExperimentStatus.RUNNING.value == 3
    assert ExperimentStatus(6) is ExperimentStatus.CANCELLED
    terminal = {s for s in ExperimentStatus if s.is_terminal}
    assert terminal == {
        ExperimentStatus.FINISHED,
        ExperimentStatus.FAILED,
        ExperimentStatus.CANCELLED,
    }


def test_deployment_repr() -> None:
    d = Deployment(Node("snl-server-5"))
    assert repr(d) == "Deployment: Node=snl-server-5, executor_id=, prepared=False"


def test_experiment_map_and_repr() -> None:
    p = Pipeline().then(Echo(1))
    e = Experiment().map(p, Node("snl-server-5")).map(p, "raspi-1")
    assert repr(e) == (
        " - Deployment: Node=snl-server-5, executor_id=, prepared=False\n"
        " - Deployment: Node=raspi-1, executor_id=, prepared=False"
    )
    e.map(p, _nodes().take(2)).map(p, ["x", Node("y")]).append("z", p)
    assert len(e) == 7
    assert [d.node.name for d in e] == [
        "snl-server-5",
        "raspi-1",
        "raspi-1",
        "raspi-2",
        "x",
        "y",
        "z",
    ]
    assert e[0].pipeline is p
    assert isinstance(e[1].node, Node)
    assert len(e[1:3]) == 2
    assert repr(Experiment()) == ""


def test_experiment_map_errors() -> None:
    e = Experiment()
    with pytest.raises(TypeError, match="Echo"):
        e.map(Echo(1), "n")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="42"):
        e.map(Pipeline(), ["ok", 42])  # type: ignore[list-item]
    assert len(e) == 0


def test_deployment_execution_result_repr() -> None:
    res = Success(
        {
            "6429e0dc-79cb-4d83-863c-daff02416449": [Success(0)],
            "eb4c4b51-f2a8-4882-9337-884869a72cb2": [
                Success({"text_value": "stage 1", "int_value": 3})
            ],
        }
    )
    der = DeploymentExecutionResult(Node("snl-server-5"), res)
    assert repr(der) == (
        "DeploymentExecutionResult:\n"
        "  Node: snl-server-5\n"
        "  Result: <class 'shoal.model.result.Success'>\n"
        "    6429e0dc-79cb-4d83-863c-daff02416449: [<Success: 0>]\n"
        "    eb4c4b51-f2a8-4882-9337-884869a72cb2: "
        "[<Success: {'text_value': 'stage 1', 'int_value': 3}>]"
    )


def test_deployment_execution_result_other_shapes() -> None:
    der = DeploymentExecutionResult(Node("n"), None, error="lost", state="failed")
    assert repr(der) == (
        "DeploymentExecutionResult:\n  Node: n\n  Result: None\n  Error: lost\n  State: failed"
    )
    der = DeploymentExecutionResult(Node("n"), Failure("boom"), state="finished")
    assert repr(der) == (
        "DeploymentExecutionResult:\n"
        "  Node: n\n"
        "  Result: <class 'shoal.model.result.Failure'>\n"
        "    boom"
    )


def test_experiment_execution_information_repr() -> None:
    e = Experiment().map(Pipeline().then(Echo(1)), "snl-server-5")
    e[0].executor_id = "c796..."
    e[0].prepared = True
    info = ExperimentExecutionInformation(ExperimentStatus.READY, e, None)
    assert repr(info) == (
        "ExperimentExecutionInformation:\n"
        "status: ExperimentStatus.READY\n"
        "experiment: \n"
        " - Deployment: Node=snl-server-5, executor_id=c796..., prepared=True\n"
        "execution_result:\n"
        "None"
    )
    results = [DeploymentExecutionResult(Node("snl-server-5"), Success({}))]
    info = ExperimentExecutionInformation(ExperimentStatus.FINISHED, None, results)
    assert repr(info).endswith(
        "experiment: \nNone\nexecution_result:\n"
        "[DeploymentExecutionResult:\n  Node: snl-server-5\n"
        "  Result: <class 'shoal.model.result.Success'>]"
    )
