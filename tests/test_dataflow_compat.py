"""FISSION user code on shoal.dataflow with only its imports changed.

Each test holds code written the way FISSION's own jobs, pipes, nodes and
configs were (``fission.core.*`` imports swapped for ``shoal.dataflow``), and
checks it behaves as it did there.
"""

from __future__ import annotations

import io
import sys
import textwrap
from pathlib import Path

import pytest

from shoal.dataflow import (
    AllocationError,
    BaseJob,
    BaseNode,
    BasePipe,
    BytesPipe,
    CSVSinkJob,
    DataflowError,
    DynamicExecutableJob,
    ExecutableJob,
    InteractiveJob,
    JSONMixIn,
    LocalJob,
    MultiNode,
    NodeInfo,
    PickleMixIn,
    PicklePipe,
    PythonJob,
    ReadJSONMixIn,
    ReadPickleMixIn,
    WriteJSONMixIn,
    WritePickleMixIn,
    allocate,
    emulate,
    load_network,
)
from shoal.dataflow.allocation import link_tq, node_infos
from shoal.dataflow.emulation import JobEmulator
from shoal.dataflow.jobs import setup_call
from shoal.model import Node

GIB = 1 << 30

# ------------------------------------------------------------- 1. NodeInfo


def live_nodes() -> list[Node]:
    """Three agents as the controller lists them: shares *in use*, as agents report."""
    return [
        Node(
            "busy",
            cpus=4,
            metrics={"cpu": 95.0, "memory": 75.0, "memory_used": 3 * GIB, "load": 3.0},
        ),
        Node(
            "idle",
            cpus=4,
            properties={"addresses": "10.0.0.2"},
            metrics={
                "cpu": 4.0,
                "memory": 25.0,
                "memory_used": 1 * GIB,
                "load": 0.1,
                "disk_free": 20 * GIB,
                "swap": 12.5,
                # 0..1 fractions, shoal's link scale
                "links": {"busy": 0.5, "far": 0.2},
            },
        ),
        Node("far", cpus=1, metrics={"cpu": 50.0, "memory": 50.0, "memory_used": GIB}),
    ]


class IdlePreferringJob(PythonJob):
    """FISSION's idiom: dispy's ``cpu`` is the share *available*, so an idle node has > 90."""

    def preference(self, nodes):
        for node in nodes:
            if node.cpu > 90:
                return node
        return None

    def run(self):
        yield 1


@pytest.mark.timeout(30)
def test_nodeinfo_has_fissions_meaning_for_preference() -> None:
    configured = [BaseNode("busy"), BaseNode("10.0.0.2", name="pi-2"), BaseNode("far")]
    infos = {n.name: n for n in node_infos(live_nodes(), configured, {}, neighbours=["busy"])}
    idle, busy, far = infos["idle"], infos["busy"], infos["far"]
    # cpu: available percent; memory: available bytes (75% of 4 GiB free).
    assert (idle.cpu, idle.cpu_used) == (96.0, 4.0)
    assert (busy.cpu, busy.cpu_used) == (5.0, 95.0)
    assert idle.memory == idle.memory_free == 3 * GIB
    assert busy.memory == GIB and busy.memory_used == 75.0
    # disk: available bytes; swap: percent in use (0 where the agent says nothing).
    assert (idle.disk, idle.swap) == (20 * GIB, 12.5)
    assert (busy.disk, busy.swap) == (None, 0.0)
    # TQ, averaged over the neighbours' nodes on BATMAN's 0..255 scale: the node
    # itself is 255; idle reports 0.5 to busy (127.5); far reports nothing (255).
    assert busy.TQ == 255.0
    assert idle.TQ == 127.5
    assert far.TQ == 255.0
    assert idle.links == {"busy": 0.5}
    # _node: the NODES entry it matched (by address here).
    assert idle._node is configured[1] and idle.node.display_name == "pi-2"
    # The FISSION preference picks the idle node, as it did on dispy's numbers.
    assert allocate(IdlePreferringJob(), list(infos.values())).name == "idle"


@pytest.mark.timeout(30)
def test_tq_follows_fissions_batman_rules() -> None:
    tables = {"a": {"b": 0.8}, "b": {}, "c": {"z": 1.0}}
    known = {"a": ["a"], "b": ["b"], "c": ["c"]}
    assert link_tq("a", [], [], tables, known) == 255.0  # no neighbour placed yet
    assert link_tq("a", [], ["a"], tables, known) == 255.0  # the node itself
    assert link_tq("b", [], ["a"], tables, known) == pytest.approx(0.8 * 255)
    # c reports its links and b is not among them: no route, as a BATMAN table.
    assert link_tq("b", [], ["c"], tables, known) == 0.0
    # the client (LOCAL jobs) reports nothing: unknown counts 255.
    assert link_tq("b", [], ["client", "a"], tables, known) == pytest.approx((255 + 204) / 2)
    # a value above 1 is taken as a TQ already
    assert link_tq("x", [], ["y"], {"y": {"x": 200}}, {}) == 200.0
    # Hand-made NodeInfo: either form of a pair fills the other.
    made = NodeInfo("pi", cpu=97.5, memory=2 * GIB)
    assert (made.cpu_used, made.memory_free, made.TQ, made.swap) == (2.5, 2 * GIB, 255.0, 0.0)
    assert made._node.name == "pi" and made._node.groups == ["ALL"]
    assert NodeInfo("pi", cpu_used=30).cpu == 70.0


# ------------------------------------------------------------- 2. extra job arguments


class ParameterJob(PythonJob):
    """FISSION's documented pattern: own arguments first, the rest passed up."""

    def __init__(self, my_path, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.my_path = my_path

    def run(self, value):
        return value


@pytest.mark.timeout(30)
def test_jobs_accept_and_ignore_extra_arguments(tmp_path: Path) -> None:
    # Ignored as FISSION did, with a warning naming them (more often a typo than not).
    with pytest.warns(UserWarning, match="ignored the arguments flag="):
        job = ParameterJob("data.txt", [PicklePipe(1)], [PicklePipe(2)], "spare", flag=True)
    assert (job.my_path, job.inputs, job.outputs) == ("data.txt", [PicklePipe(1)], [PicklePipe(2)])
    BaseJob(None, [PicklePipe(3)], 1, 2)
    with pytest.warns(UserWarning, match="colour="):
        BaseJob(None, [PicklePipe(3)], 1, 2, colour="red")
    with pytest.warns(UserWarning):
        LocalJob(inputs=[PicklePipe(4)], anything=1)
        CSVSinkJob("out.csv", [PicklePipe(5)], "pipe_{pipe.id}", "spare", unused=None)
        InteractiveJob(outputs=[PicklePipe(6)], unused=None)

    class Exe(ExecutableJob):
        EXECUTABLE = "./filter"

        def __init__(self, params="", **kwargs):
            super().__init__(**kwargs)
            self.PARAMETERS = params

    with pytest.warns(UserWarning):
        exe = Exe("--gain 2", inputs=[BytesPipe(7, 4)], outputs=[BytesPipe(8, 4)], unused=1)
        DynamicExecutableJob("dir", "./run", inputs=[BytesPipe(9, 4)], unused=True)
    assert exe.PARAMETERS == "--gain 2" and exe.inputs == [BytesPipe(7, 4)]
    with emulate(job, path=tmp_path) as run:
        assert run("x") == ["x"]


# ------------------------------------------------------------- 3. setup(root, ...)


class RootSetupJob(PythonJob):
    """setup written against FISSION's signature: the job's folder is root/<id>."""

    def setup(self, root, seperate_job_pipes=False, *args, **kwargs):
        super().setup(root, seperate_job_pipes, *args, **kwargs)
        self.calibration = Path(root + f"/{self.id}/calibration.txt").read_text().strip()
        self.flags = (seperate_job_pipes, kwargs)

    def run(self, value):
        return f"{self.calibration}:{value}"


@pytest.mark.timeout(60)
def test_setup_with_fissions_signature_gets_root(tmp_path: Path) -> None:
    job = RootSetupJob(inputs=[PicklePipe(1)], outputs=[PicklePipe(2)])
    job.id = 3
    emulator = JobEmulator(job, root=tmp_path / "emulate", start=False)
    folder = tmp_path / "emulate" / "3"
    # In the job's folder before setup() runs, as a DEPENDENCIES file would be.
    (folder / "calibration.txt").write_text("gain=2\n")
    emulator.start()
    with emulator as run:
        assert run(5) == ["gain=2:5"]
    assert job.directory == folder
    # The emulator runs a copy, leaving ``job`` as made (FISSION ran it in a subprocess).
    assert not hasattr(job, "flags")
    assert emulator.running.flags == (True, {})  # FISSION's wrapper always used per-job fifos
    # Signatures of either world get what they can take.
    plain = PythonJob()
    assert setup_call(plain) == ((str(Path(".").resolve()),), {"seperate_job_pipes": True})

    class NoArgs(PythonJob):
        def setup(self):
            self.ran = True

    assert setup_call(NoArgs()) == ((), {})

    class KeywordsOnly(PythonJob):
        def setup(self, **kwargs):
            self.kwargs = kwargs

    assert setup_call(KeywordsOnly()) == ((), {"seperate_job_pipes": True})

    class Program(ExecutableJob):
        EXECUTABLE = "true"

        def setup(self, root, seperate_job_pipes=False, redirect_stdout_stderr=None):
            pass

    program = Program([], [])
    args, kwargs = setup_call(program)
    assert kwargs == {"seperate_job_pipes": True, "redirect_stdout_stderr": False}
    assert len(args) == 1 and isinstance(args[0], str)


# ------------------------------------------------------------- 4. BaseNode(host, port, ...)


@pytest.mark.timeout(60)
def test_basenode_takes_fissions_positional_form(tmp_path: Path) -> None:
    node = BaseNode("1.2.3.4", 51348)
    assert (node.ip, node.port, node.groups, node.max_jobs) == ("1.2.3.4", 51348, ["ALL"], None)
    full = BaseNode("1.2.3.5", 51348, 2, ["dep.py"], ("arg",), "pi-5")
    assert (full.max_jobs, full.depends, full.setup_args, full.display_name) == (
        2,
        ["dep.py"],
        ("arg",),
        "pi-5",
    )
    keywords = BaseNode("1.2.3.6", port=51348, cpus=1, depends=[], setup_args=(), name="pi-6")
    assert keywords.max_jobs == 1 and keywords.display_name == "pi-6"
    assert BaseNode("pi-7", groups=["HAS_MIC"]).groups == ["HAS_MIC"]
    assert BaseNode("pi-8", ["HAS_MIC", "ALL"]).groups == ["HAS_MIC", "ALL"]

    class MicNode(BaseNode):
        GROUPS = ["HAS_MIC", "ALL"]

    assert MicNode("1.2.3.9", 51348).groups == ["HAS_MIC", "ALL"]
    assert MultiNode("192.168.4.*", 51348).matches("x", ["192.168.4.20"])
    with pytest.raises(TypeError, match="port must be an int"):
        BaseNode("1.2.3.4", 51348.5)
    # A config with FISSION's node list loads.
    folder = tmp_path / "nodes_net"
    folder.mkdir()
    (folder / "config.py").write_text(
        textwrap.dedent(
            """
            from shoal.dataflow import BaseNode, LocalJob, PicklePipe, PythonJob

            class Source(PythonJob):
                def run(self):
                    yield 1

            class Sink(LocalJob):
                def run(self, value):
                    pass

            JOBS = [Source(outputs=[PicklePipe(1)]), Sink(inputs=[PicklePipe(1)])]
            NODES = [BaseNode("192.168.4.2", 51348), BaseNode("192.168.4.3", 51348, 1)]
            """
        )
    )
    network = load_network(folder)
    assert [(n.ip, n.port, n.max_jobs) for n in network.nodes] == [
        ("192.168.4.2", 51348, None),
        ("192.168.4.3", 51348, 1),
    ]


# ------------------------------------------------------------- 5. AllocationError


@pytest.mark.timeout(30)
def test_allocation_error_is_a_runtime_error() -> None:
    class Pinned(PythonJob):
        GROUPS = "HAS_MIC"

        def run(self):
            yield 1

    caught = None
    try:
        allocate(Pinned(), [NodeInfo("pi-1")])
    except RuntimeError as exc:  # FISSION's network code caught it this way
        caught = exc
    assert isinstance(caught, AllocationError) and isinstance(caught, DataflowError)
    assert issubclass(AllocationError, RuntimeError)


# ------------------------------------------------------------- 6. pipe mixins


class StatePipe(PickleMixIn, BasePipe):
    """Any picklable value, as FISSION's PicklePipe was built."""


class RecordPipe(JSONMixIn, BasePipe):
    BLOCK_SIZE = "JSON"


class PickledBlocksPipe(PickleMixIn, BytesPipe):
    """A BytesPipe turned into a pickle carrier: BLOCK_SIZE no longer binds."""


class HalfJSONPipe(ReadJSONMixIn, WriteJSONMixIn, BasePipe):
    pass


class HalfPicklePipe(ReadPickleMixIn, WritePickleMixIn, BasePipe):
    pass


class Increment(PythonJob):
    def run(self, record):
        return {"n": record["n"] + 1, "seen": record.get("seen", [])}


@pytest.mark.timeout(60)
def test_pipe_mixins_combine_with_pipes_as_in_fission(tmp_path: Path) -> None:
    value = {"a": [1, 2], "b": (3, 4)}
    assert emulate(StatePipe(1))(value)[1] == value
    wire, got = emulate(RecordPipe(2))({"x": [1, 2]})
    assert wire == b'{"x": [1, 2]}\n' and got == {"x": [1, 2]}
    assert emulate(HalfJSONPipe(3))([1, "a"])[1] == [1, "a"]
    assert emulate(HalfPicklePipe(4))({1, 2})[1] == {1, 2}
    # Mixed into a BytesPipe, pickling frames the value: no 4-byte check.
    assert emulate(PickledBlocksPipe(5, 4))(["longer than four bytes"])[1] == [
        "longer than four bytes"
    ]
    with pytest.raises(TypeError, match="RecordPipe and cannot carry"):
        RecordPipe(6).to_wire({1, 2})
    # As a program's stream sees them: one pickle, or one JSON line, per value.
    stream = io.BytesIO()
    StatePipe(7).write_stream(stream, StatePipe(7).pack(value))
    RecordPipe(8).write_stream(stream, RecordPipe(8).pack({"k": 1}))
    stream.seek(0)
    assert StatePipe(7).unpack(StatePipe(7).read_stream(stream)) == value
    assert RecordPipe(8).unpack(RecordPipe(8).read_stream(stream)) == {"k": 1}
    with pytest.raises(EOFError):
        RecordPipe(8).read_stream(stream)
    # Between two jobs.
    job = Increment(inputs=[RecordPipe(10)], outputs=[RecordPipe(11)])
    with emulate(job, path=tmp_path) as run:
        assert run({"n": 1}) == [{"n": 2, "seen": []}]


COPY_PROGRAM = """
import argparse, json
parser = argparse.ArgumentParser()
parser.add_argument("-i", action="append")
parser.add_argument("-o", action="append")
args = parser.parse_args()
with open(args.i[0], "rb") as source, open(args.o[0], "wb", buffering=0) as sink:
    for line in source:
        record = json.loads(line)
        record["n"] += 10
        sink.write((json.dumps(record) + "\\n").encode())
"""


@pytest.mark.timeout(90)
def test_json_mixin_pipe_feeds_an_executable_job(tmp_path: Path) -> None:
    script = tmp_path / "add_ten.py"
    script.write_text(COPY_PROGRAM)
    job = DynamicExecutableJob(
        None,
        f"{sys.executable} {script}",
        inputs=[RecordPipe(1)],
        outputs=[RecordPipe(2)],
    )
    with emulate(job, path=tmp_path / "emulate") as run:
        assert run({"n": 1}, timeout=30) == [{"n": 11}]
        assert run({"n": 5}, timeout=30) == [{"n": 15}]


# ------------------------------------------------------------- 7. CREATES_SUBPROCESS


@pytest.mark.timeout(60)
def test_creates_subprocess_on_every_job_class(tmp_path: Path) -> None:
    for cls in (BaseJob, PythonJob, LocalJob, CSVSinkJob, InteractiveJob):
        assert cls.CREATES_SUBPROCESS is False, cls
    assert ExecutableJob.CREATES_SUBPROCESS is True
    assert PythonJob().CREATES_SUBPROCESS is False

    class Flagged(PythonJob):
        CREATES_SUBPROCESS = True  # accepted; shoal serves the job the same way

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.CREATES_SUBPROCESS = self.CREATES_SUBPROCESS  # FISSION's docs did this

        def run(self, value):
            return value * 2

    with emulate(Flagged(inputs=[PicklePipe(1)], outputs=[PicklePipe(2)]), path=tmp_path) as run:
        assert run(21) == [42]
