"""Rounds and pipes: alignment by sequence number, blocks, optional inputs, encodings."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from shoal.dataflow import BytesPipe, JSONPipe, OptionalPicklePipe, PicklePipe
from shoal.dataflow.rounds import InputAligner


class Operator(OptionalPicklePipe):
    OPTIONAL_DEFAULT = "+"
    OPTIONAL_STORE = True


class Block(PicklePipe):
    BLOCK_COUNT = 3


def test_inputs_line_up_by_sequence_number() -> None:
    aligner = InputAligner([PicklePipe(1), PicklePipe(2)])
    aligner.put_many(1, [((0, 0), "a0"), ((0, 1), "a1"), ((0, 2), "a2")])
    aligner.put_many(2, [((0, 1), "b1"), ((0, 2), "b2")])  # b0 was lost
    # Round 0 is skipped (a0 is dropped), not shifted: a1 meets b1, a2 meets b2.
    assert aligner.next_round() == ((0, 1), ("a1", "b1"))
    assert aligner.next_round() == ((0, 2), ("a2", "b2"))
    assert aligner.dropped == 1


def test_a_new_epoch_realigns_after_a_failover() -> None:
    aligner = InputAligner([PicklePipe(1), PicklePipe(2)])
    aligner.put_many(1, [((0, 7), "old"), ((1, 0), "a0")])  # this source reset to epoch 1
    aligner.put_many(2, [((1, 0), "b0")])  # a restarted source starts at epoch 1
    assert aligner.next_round() == ((1, 0), ("a0", "b0"))


def test_block_count_hands_lists_and_drops_incomplete_blocks() -> None:
    aligner = InputAligner([Block(1)])
    aligner.put_many(1, [((0, s), s) for s in (0, 1, 2, 3, 5, 6, 7, 8)])  # 4 was lost
    assert aligner.next_round() == ((0, 2), ([0, 1, 2],))
    assert aligner.next_round() == ((0, 8), ([6, 7, 8],))


def test_optional_input_never_blocks_and_repeats_when_stored() -> None:
    aligner = InputAligner([Operator(1), PicklePipe(2)])
    aligner.put(2, (0, 0), 10)
    assert aligner.next_round() == ((0, 0), ("+", 10))  # nothing typed yet: the default
    aligner.put(1, (0, 0), "*")
    aligner.put_many(2, [((0, 1), 11), ((0, 2), 12)])
    assert aligner.next_round()[1] == ("*", 11)
    assert aligner.next_round()[1] == ("*", 12)  # OPTIONAL_STORE repeats the last value


def test_optional_buffer_size_and_delete_mode() -> None:
    class Oldest(OptionalPicklePipe):
        OPTIONAL_BUFFER_SIZE = 2
        OPTIONAL_DEFAULT = None
        OPTIONAL_STORE = False  # FISSION's default is True

    class Newest(Oldest):
        OPTIONAL_DELETE_MODE = "newest"

    for pipe, kept in ((Oldest(1), [2, 3]), (Newest(1), [1, 2])):
        aligner = InputAligner([pipe, PicklePipe(2)])
        aligner.put_many(1, [((0, i), i) for i in (1, 2, 3)])
        aligner.put_many(2, [((0, i), i) for i in range(3)])
        taken = [aligner.next_round()[1][0] for _ in range(3)]
        assert taken == [*kept, None]  # not stored: the default once the buffer is empty


def test_ended_input_finishes_the_job_and_stop_wakes_it() -> None:
    aligner = InputAligner([PicklePipe(1)])
    aligner.put(1, (0, 0), "x")
    aligner.end(1)
    assert aligner.next_round() == ((0, 0), ("x",))
    assert aligner.next_round() is None
    waiting = InputAligner([PicklePipe(1)])
    threading.Timer(0.1, waiting.stop).start()
    assert waiting.next_round() is None


def test_a_full_input_blocks_its_reader_until_the_job_catches_up() -> None:
    aligner = InputAligner([PicklePipe(1)], capacity=2)
    aligner.put_many(1, [((0, 0), 0), ((0, 1), 1)])
    done = threading.Event()

    def reader() -> None:
        aligner.put(1, (0, 2), 2)
        done.set()

    threading.Thread(target=reader, daemon=True).start()
    assert not done.wait(0.2), "the reader must wait while the input is full"
    aligner.next_round()
    assert done.wait(5)


def test_pipe_encodings() -> None:
    assert JSONPipe(1).from_wire(JSONPipe(1).to_wire({"a": [1, 2]})) == {"a": [1, 2]}
    with pytest.raises(TypeError, match="JSONPipe and cannot carry"):
        JSONPipe(1).to_wire({1, 2})
    assert BytesPipe(1, 3).to_wire(b"abc") == b"abc"
    with pytest.raises(TypeError, match="BLOCK_SIZE=3 bytes, but pack\\(\\) gave 2 bytes"):
        BytesPipe(1, 3).to_wire(b"ab")


EXECUTABLE_NETWORK = """
import sys

from shoal.dataflow import CSVSinkJob, ExecutableJob, JSONPipe, PicklePipe, PythonJob


class Numbers(PythonJob):
    def run(self):
        yield from range(1, 6)


JOBS = [
    Numbers(outputs=[JSONPipe(1)]),
    ExecutableJob(
        sys.executable,
        ["-u", "-c", "import sys\\nfor line in sys.stdin: print(int(line) * 10, flush=True)"],
        inputs=[JSONPipe(1)],
        outputs=[PicklePipe(2)],
    ),
    CSVSinkJob(path="out.csv", inputs=[PicklePipe(2)]),
]
"""


@pytest.mark.timeout(60)
def test_executable_job_reads_stdin_and_writes_stdout(tmp_path: Path) -> None:
    from shoal.dataflow import simulate

    folder = tmp_path / "exe_net"
    folder.mkdir()
    (folder / "config.py").write_text(EXECUTABLE_NETWORK)
    output = simulate(folder, rounds=5, echo=False)
    assert (output / "3" / "out.csv").read_text().split() == [
        "pipe_2",
        "10",
        "20",
        "30",
        "40",
        "50",
    ]
