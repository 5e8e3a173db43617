"""FISSION's testing support and pipe identity on shoal.dataflow, imports swapped only.

``fission.core.base`` (its caches and ``reset``), the ``fission.test`` pytest
plugin with ``manage.py NET test``, pipes cached by id with their end jobs,
a custom pipe stream protocol (``read``/``write``), and emulators that leave
the emulated job as it was.
"""

from __future__ import annotations

import io
import pickle
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from shoal.dataflow import (
    BaseNode,
    BasePipe,
    DynamicExecutableJob,
    JSONPipe,
    PicklePipe,
    PythonJob,
    emulate,
    load_network,
)
from shoal.dataflow.base import JOBS, NODES, PIPES, reset

# ------------------------------------------------------------- fission.core.base


@pytest.mark.timeout(30)
def test_pipes_are_cached_by_id_until_reset() -> None:
    reset()
    first = PicklePipe(5)
    assert PicklePipe(5) is first and PIPES[5] is first
    assert JSONPipe(5) is not first  # another class for the id: a new pipe
    assert PIPES[5] is not first
    reset()
    assert PIPES == {} and PicklePipe(5) is not first
    # The imported dict is still the live cache after reset (FISSION's was replaced).
    assert PIPES[5] is PicklePipe(5)


@pytest.mark.timeout(30)
def test_pipe_ends_and_job_ids_from_the_constructor() -> None:
    reset()
    seen = {}

    class Named(PythonJob):
        def __init__(self, tag, **kwargs):
            super().__init__(**kwargs)
            seen[tag] = self.id  # FISSION numbered jobs as they were made

        def run(self, value=None):
            return value

    one = Named("one", outputs=[PicklePipe(1)])
    two = Named("two", inputs=[PicklePipe(1)], outputs=[PicklePipe(2)])
    assert seen == {"one": 1, "two": 2} and dict(JOBS) == {1: one, 2: two}
    pipe = PicklePipe(1)
    assert (pipe.source, pipe.destination, pipe.complete()) == (one, two, True)
    assert PicklePipe(2).source is two and not PicklePipe(2).complete()
    # A pipe travels inside its job: the jobs at its ends stay behind.
    copy = pickle.loads(pickle.dumps(pipe))
    assert copy == pipe and copy.source is None and copy is not pipe
    node = BaseNode("10.0.0.7")
    assert NODES["10.0.0.7"] is node
    reset()
    assert JOBS == {} and NODES == {}


@pytest.mark.timeout(30)
def test_loading_renumbers_jobs_by_their_place_in_jobs(tmp_path: Path) -> None:
    reset()
    folder = tmp_path / "ordered"
    folder.mkdir()
    (folder / "config.py").write_text(
        textwrap.dedent(
            """
            from shoal.dataflow.jobs import PythonJob
            from shoal.dataflow.pipes import PicklePipe

            class Pass(PythonJob):
                def run(self, value=None):
                    return value

            sink = Pass(inputs=[PicklePipe(2)])
            source = Pass(outputs=[PicklePipe(2)])
            JOBS = [source, sink]
            """
        )
    )
    network = load_network(folder)
    source, sink = network.jobs
    assert (source.id, sink.id) == (1, 2)
    assert JOBS[1] is source and JOBS[2] is sink
    assert PIPES[2].source is source and PIPES[2].destination is sink
    reset()


# ------------------------------------------------------------- custom stream protocol


class LengthPipe(BasePipe):
    """An upstream-style custom protocol: each value a 2-byte length, then UTF-8 text."""

    BLOCK_SIZE = "LEN"

    def pack(self, data):
        return str(data).encode()

    def unpack(self, data):
        return data.decode()

    def write(self, file_obj, data):
        file_obj.write(struct.pack(">H", len(data)) + data)

    def read(self, file_obj):
        size = file_obj.read(2)
        if len(size) < 2:
            exit(0)  # FISSION's way to end at the stream's end
        return file_obj.read(struct.unpack(">H", size)[0])


@pytest.mark.timeout(30)
def test_pipe_emulator_uses_a_custom_read_and_write() -> None:
    pipes = emulate(LengthPipe(40))
    assert pipes("hello") == (b"hello", "hello")
    pipes.put_head(3)
    pipes.put("a b")
    pipes.put("c")
    assert pipes.get_head() == 3 and pipes.get() == "a b"
    assert pipes.get_head() == 0 and pipes.get() == "c"
    stream = io.BytesIO()
    LengthPipe(40).write_stream(stream, b"xy")
    stream.seek(0)
    assert LengthPipe(40).read_stream(stream) == b"xy"
    with pytest.raises(EOFError):
        LengthPipe(40).read_stream(stream)  # exit(0) at the end is the end of the stream
    with pytest.raises(TypeError, match="override read\\(\\) and write\\(\\)"):
        BasePipe(41).read(io.BytesIO(b"x"))


COPY_BYTES = """
import argparse, os
parser = argparse.ArgumentParser()
parser.add_argument("-i", action="append")
parser.add_argument("-o", action="append")
args = parser.parse_args()
source, sink = os.open(args.i[0], os.O_RDONLY), os.open(args.o[0], os.O_WRONLY)
while chunk := os.read(source, 4096):
    os.write(sink, chunk)
"""


@pytest.mark.timeout(90)
def test_a_program_between_custom_protocol_pipes(tmp_path: Path) -> None:
    # The program copies bytes; only the pipes' write() and read() frame the values.
    script = tmp_path / "copy.py"
    script.write_text(COPY_BYTES)
    job = DynamicExecutableJob(
        None, f"{sys.executable} {script}", inputs=[LengthPipe(1)], outputs=[LengthPipe(2)]
    )
    with emulate(job, path=tmp_path / "emulate") as run:
        assert run("first value", timeout=30) == ["first value"]
        assert run("x" * 300, timeout=30) == ["x" * 300]


# ------------------------------------------------------------- emulators


class Counter(PythonJob):
    def __init__(self, start=0, step=1, **kwargs):
        super().__init__(**kwargs)
        self.value = start
        self.step = step

    def run(self):
        while True:
            yield self.value
            self.value += self.step


@pytest.mark.timeout(30)
def test_job_emulator_leaves_the_job_as_it_was_made(tmp_path: Path) -> None:
    job = Counter(start=20, step=2, outputs=[PicklePipe(3)])
    with emulate(job, path=tmp_path) as run:
        assert [run(), run(), run()] == [[20], [22], [24]]
        assert run.job is job and job.value == 20  # FISSION ran a copy in a subprocess
        assert run.cwd == tmp_path.resolve() / str(job.id) and run.cwd.is_dir()
        assert [e.pipe for e in run.out_emulators] == [PicklePipe(3)]


# ------------------------------------------------------------- fission.test and `NET test`

NETWORK_FILES = {
    "net/__init__.py": "",
    "net/jobs.py": """
        from shoal.dataflow.jobs import PythonJob


        class Source(PythonJob):
            def __init__(self, start=0, **kwargs):
                super().__init__(**kwargs)
                self.value = start

            def run(self):
                while True:
                    yield self.value
                    self.value += 1


        class Reduce(PythonJob):
            def run(self, values):
                return sum(values)
        """,
    "net/config.py": """
        from shoal.dataflow.jobs import CSVSinkJob
        from shoal.dataflow.nodes import BaseNode
        from shoal.dataflow.pipes import PicklePipe

        from net.jobs import Reduce, Source


        class ReducePipe(PicklePipe):
            BLOCK_COUNT = 5


        JOBS = [
            Source(start=7, outputs=[ReducePipe(101)]),
            Reduce(inputs=[ReducePipe(101)], outputs=[PicklePipe(102)]),
            CSVSinkJob(path="sum.csv", inputs=[PicklePipe(102)]),
        ]
        NODES = [BaseNode("10.0.0.2")]
        """,
    "net/tests/test_net.py": """
        import pytest

        from shoal.dataflow.base import PIPES, reset
        from shoal.dataflow.pipes import PicklePipe

        from net.config import ReducePipe
        from net.jobs import Reduce


        def test_config_job(fission_cfg, fission_cfg_jobs):
            job = fission_cfg_jobs(1)
            assert job((1, 2, 3, 4, 5)) == [15]
            assert fission_cfg.JOBS[0].value == 7


        def test_config_source(fission_cfg_jobs):
            assert fission_cfg_jobs(0)() == [7]


        @pytest.fixture(scope="module")
        def fission_test_job():
            job = Reduce(inputs=[ReducePipe(9001)], outputs=[PicklePipe(9002)])
            assert PIPES[9001] is job.inputs[0]
            yield job
            reset()


        @pytest.mark.parametrize("values", [(1, 1, 1, 1, 1), (6, 7, 8, 9, 10)])
        def test_own_job(fission_test_emulator, values):
            assert fission_test_emulator(values) == [sum(values)]
            assert 9001 not in PIPES  # fission_reset ran


        @pytest.mark.slow
        def test_slow():
            raise AssertionError("runs only with --runslow")
        """,
}


def _project(root: Path) -> Path:
    for name, text in NETWORK_FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def _run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args, "-p", "no:cacheprovider", "-o", "timeout=60"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=100,
    )


@pytest.mark.timeout(120)
def test_shoal_dataflow_net_test_runs_the_network_tests(tmp_path: Path) -> None:
    project = _project(tmp_path)
    done = _run(project, "-m", "shoal", "dataflow", "net", "test", "-q")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed, 1 skipped" in done.stdout
    assert (project / ".emulate").is_dir()  # FISSION's place, under the project
    done = _run(project, "-m", "shoal", "dataflow", "net", "test", "-q", "--runslow")
    assert done.returncode == 1 and "runs only with --runslow" in done.stdout


@pytest.mark.timeout(120)
def test_the_plugin_from_a_conftest(tmp_path: Path) -> None:
    project = _project(tmp_path)
    (project / "conftest.py").write_text('pytest_plugins = ["shoal.dataflow.test"]\n')
    done = _run(project, "-m", "pytest", "-q", "net/tests")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed, 1 skipped" in done.stdout
    # A test folder with no config.py above it gets a message saying what to do.
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / "conftest.py").write_text('pytest_plugins = ["shoal.dataflow.test"]\n')
    (lone / "test_cfg.py").write_text("def test_cfg(fission_cfg):\n    pass\n")
    done = _run(lone, "-m", "pytest", "-q")
    assert done.returncode != 0 and "--dataflow-config" in done.stdout + done.stderr
