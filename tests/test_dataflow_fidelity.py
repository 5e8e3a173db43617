"""FISSION code, imports changed only: the API its users write, on shoal."""

from __future__ import annotations

import csv
import sys
import textwrap
from pathlib import Path

import pytest

from shoal.dataflow import (
    BaseNode,
    BasePipe,
    BytesPipe,
    CSVSinkJob,
    DynamicExecutableJob,
    Head,
    JSONPipe,
    LocalJob,
    MultiNode,
    PicklePipe,
    PythonJob,
    emulate,
    load_network,
)
from shoal.dataflow.emulation import NetworkEmulator


class LoggingSinkJob(PythonJob, LocalJob):  # the MRO order FISSION's tutorial jobs use
    def __init__(self, path, inputs=None):
        self.path = path
        super().__init__(inputs=inputs)

    def run(self, *rows):
        return None


class ClockJob(LocalJob, PythonJob):
    def run(self, *args):
        yield 1


def test_local_job_is_a_marker_in_either_order() -> None:
    assert LoggingSinkJob("x.csv", inputs=[PicklePipe(1)]).GROUPS == "LOCAL"
    assert ClockJob(outputs=[PicklePipe(1)]).GROUPS == "LOCAL"
    job = LoggingSinkJob("x.csv", inputs=[PicklePipe(1)])
    job.name = "cov2svd"  # FISSION's LoggingJob keeps a name of its own
    assert job.name == "cov2svd" and job.label.endswith("(LoggingSinkJob)")


def test_head_bits_as_fission_documents() -> None:
    head = Head(0, 1)
    head[3] = True
    assert head[3] and not head[0] and int(head) == 0b00010000
    assert (head | 0b1) == 0b00010001 and (~head)[3] is False
    assert head[4:8] == 0 and Head(0b10100000)[0:3] == 0b101
    with pytest.raises(ValueError, match="reserved"):
        head[1] = True
    with pytest.raises(IndexError):
        head[8]


class Scale(PicklePipe):
    def pack(self, data):
        return data * 10

    def unpack(self, data):
        return data + 1


class Int32Pipe(BasePipe):
    BLOCK_SIZE = 4

    def pack(self, data):
        return int(data).to_bytes(4, "big")

    def unpack(self, data):
        return int.from_bytes(data, "big")


class Short(Int32Pipe):
    def pack(self, data):
        return b"ab"


def test_pack_unpack_and_block_size_honoured() -> None:
    assert emulate(Scale(1))(4) == (40, 41)
    assert emulate(Int32Pipe(2))(7) == (b"\x00\x00\x00\x07", 7)
    with pytest.raises(TypeError, match="BLOCK_SIZE=4 bytes, but pack"):
        Short(2).to_wire(1)
    with pytest.raises(TypeError, match="BLOCK_SIZE must be an int"):

        class Bad(BasePipe):
            BLOCK_SIZE = 0


class Add(PythonJob):
    HEAD = True

    def run(self, a, b):
        self.out_heads[1] = self.head | 0b00000001
        return a + b, a - b


def test_emulated_job_passes_heads_downstream(tmp_path: Path) -> None:
    job = Add(inputs=[PicklePipe(1), PicklePipe(2)], outputs=[PicklePipe(3), PicklePipe(4)])
    with emulate(job, path=tmp_path) as run:
        assert run(5, 3, head=0b00010000) == [8, 2]
        assert run.heads == [0b00010000, 0b00010001]


class Fails(PythonJob):
    def run(self, value):
        raise ValueError("boom")


def test_a_raising_run_is_counted_as_an_error(tmp_path: Path) -> None:
    with emulate(Fails(inputs=[PicklePipe(1)]), path=tmp_path) as run:
        for value in range(3):
            run(value)
        assert run.errors == 3


CONFIG = """
from shoal.dataflow import BaseNode, CSVSinkJob, PicklePipe, PythonJob, MultiNode

class Count(PythonJob):
    HEAD = True
    def run(self):
        for i in range(1, 6):
            if i == 5:
                self.finish()
            yield i

class Square(PythonJob):
    def run(self, value):
        if value == 3:
            raise RuntimeError("three")
        return value * value

JOBS = [
    Count(outputs=[PicklePipe(1)]),
    Square(inputs=[PicklePipe(1)], outputs=[PicklePipe(2)]),
    CSVSinkJob("squares.csv", inputs=[PicklePipe(2)], col_pattern="square_{pipe.id}"),
]
NODES = [MultiNode("fnet-*"), BaseNode("fnet-extra")]
"""


@pytest.mark.timeout(120)
def test_finish_multinode_csv_and_errors_on_a_local_cluster(tmp_path: Path) -> None:
    from shoal.dataflow import simulate

    folder = tmp_path / "fnet"
    folder.mkdir()
    (folder / "config.py").write_text(CONFIG)
    # No round limit: Count's finish() ends the whole network.
    output = simulate(folder, echo=False)
    rows = list(csv.reader((output / "3" / "squares.csv").read_text().splitlines()))
    assert rows == [["square_2"], ["1"], ["4"], ["16"], ["25"]]
    state = (output / "state.json").read_text()
    assert '"done"' in state
    placed = {n for n in load_network(folder).nodes for n in n.sample_names()}
    assert placed == {"fnet-1", "fnet-2", "fnet-extra"}


def test_multinode_matches_names_and_addresses() -> None:
    node = MultiNode("192.168.4.*", groups=["MIC"])
    assert node.matches("pi-7", ["192.168.4.7"]) and not node.matches("pi-7", ["10.0.0.7"])
    assert BaseNode("pi-1", cpus=2).max_jobs == 2


GAIN = """#!/usr/bin/env python3
import argparse, os
parser = argparse.ArgumentParser()
parser.add_argument("-i", action="append")
parser.add_argument("-o", action="append")
parser.add_argument("--gain", type=int)
parser.add_argument("--head", action="store_true")
args = parser.parse_args()
print("gain started", flush=True)


def opened(where, mode):
    # MARVELO jobs get descriptor numbers, FISSION's ExecutableJob paths.
    return os.fdopen(int(where), mode, 0) if where.isdigit() else open(where, mode, 0)


with opened(args.i[0], "rb") as source, opened(args.o[0], "wb") as sink:
    while True:
        head = source.read(1) if args.head else b""
        data = source.read(4)
        if len(data) < 4:
            break
        value = int.from_bytes(data, "big") * args.gain
        sink.write(head + value.to_bytes(4, "big"))
"""


def _gain_network(tmp_path: Path, xml: bool) -> Path:
    folder = tmp_path / ("xmlnet" if xml else "exenet")
    (folder / "gain").mkdir(parents=True)
    (folder / "gain" / "gain.py").write_text(GAIN)
    if xml:
        (folder / "net.xml").write_text(
            textwrap.dedent(
                """\
                <network>
                  <node ip="xml-node">
                    <algorithm path="gain" executable="./gain.py">
                      <input pipe_id="1" block_size="4"/>
                      <output pipe_id="2" block_size="4"/>
                      <parameter param="--gain 3"/>
                    </algorithm>
                  </node>
                </network>
                """
            )
        )
        (folder / "config.py").write_text(
            'XML_FILE = "net.xml"\nXML_ARGS = {"ip": "ip"}\nHEAD_SIZE = 1\n'
        )
    else:
        (folder / "config.py").write_text(
            textwrap.dedent(
                """\
                from shoal.dataflow import BytesPipe, DynamicExecutableJob, BaseNode
                JOBS = [DynamicExecutableJob("gain", "./gain.py", "--gain 3 --head", head=True,
                        inputs=[BytesPipe(1, 4)], outputs=[BytesPipe(2, 4)])]
                NODES = [BaseNode("exe-node")]
                """
            )
        )
    return folder


@pytest.mark.timeout(60)
def test_dynamic_executable_job_gets_pipe_paths_in_one_process(tmp_path: Path) -> None:
    folder = _gain_network(tmp_path, xml=False)
    with NetworkEmulator(folder, path=tmp_path / "run") as net:
        assert net.inputs == [1] and net.outputs == [2]
        for value in (1, 2, 7):
            net.put(1, value.to_bytes(4, "big"), head=0b00010000)
        got = [net.get(2, with_head=True) for _ in range(3)]
        assert [int.from_bytes(v, "big") for v, _ in got] == [3, 6, 21]
        assert all(head == 0b00010000 for _, head in got)
        net.end(1)
        net.wait(20)
        assert net.errors == 0


@pytest.mark.timeout(120)
def test_xml_file_topology_on_a_local_cluster(tmp_path: Path) -> None:
    folder = _gain_network(tmp_path, xml=True)
    network = load_network(folder, open_ends=True)
    job = network.jobs[0]
    assert type(job).__name__ == "DynamicMARVELOJob" and job.DEFAULT_NODE == "xml-node"
    with NetworkEmulator(folder, cluster=True, path=tmp_path / "run") as net:
        for value in (2, 5):
            net.put(1, value.to_bytes(4, "big"))
        assert [int.from_bytes(net.get(2, timeout=30), "big") for _ in range(2)] == [6, 15]


def test_network_emulation_in_one_process(tmp_path: Path) -> None:
    module = tmp_path / "calc"
    module.mkdir()
    (module / "config.py").write_text(
        textwrap.dedent(
            """\
            from shoal.dataflow import JSONPipe, PicklePipe, PythonJob
            class Mul(PythonJob):
                def run(self, a, b):
                    return a * b
            JOBS = [Mul(inputs=[PicklePipe(1), JSONPipe(2)], outputs=[PicklePipe(3)])]
            """
        )
    )
    with emulate(module, path=tmp_path / "run") as net:
        net.put_many(1, [2, 3])
        net.put_many(2, [10, 100])
        assert [net.get(3), net.get(3)] == [20, 300]


def test_csv_sink_header_as_fission_writes_it() -> None:
    sink = CSVSinkJob("out.csv", inputs=[PicklePipe(7), JSONPipe(8)])
    assert [sink.col_pattern.format(pipe=p, job=sink) for p in sink.inputs] == [
        "pipe_7",
        "pipe_8",
    ]
    assert sys.version_info >= (3, 11)
    assert BytesPipe(3, 4, 2).BLOCK_COUNT == 2
    assert DynamicExecutableJob("d", "./x", groups="MIC").GROUPS == "MIC"
