"""A source job's loop (JobRunner.produce, the path every value of a source
takes): keys, a failover's new epoch, tuples, the end, errors. The pipe here
only records what it is given; the whole path between agents is in the
other dataflow tests."""

from __future__ import annotations

import types
from collections.abc import Iterator
from typing import Any

from shoal.dataflow.job_runner import JobRunner
from shoal.dataflow.pipes import PicklePipe


class Recorded:
    """An output pipe that keeps what it is given."""

    def __init__(self) -> None:
        self.got: list[tuple[tuple[int, int], Any]] = []

    def put(self, key: tuple[int, int], value: Any, head: int = 0) -> None:
        if value == "refused":
            raise ValueError("this pipe refuses 'refused'")
        self.got.append((key, value))


def runner(outputs: int = 1) -> tuple[JobRunner, list[Recorded], Any]:
    job = types.SimpleNamespace(
        finished=False,
        directory=None,
        outputs=[PicklePipe(i + 1) for i in range(outputs)],
        inputs=[],
        name="source",
    )
    pipes = [Recorded() for _ in range(outputs)]
    aligner = types.SimpleNamespace(plain=None, stop=lambda: None)
    return JobRunner(job, None, pipes, aligner=aligner), pipes, job  # type: ignore[arg-type]


def test_values_are_numbered_on_and_the_count_is_kept_across_calls() -> None:
    source, [pipe], _ = runner()
    source.produce(iter("abc"))
    source.produce(iter("de"))
    assert pipe.got == [((0, i), v) for i, v in enumerate("abcde")]
    assert source.rounds_done == 5


def test_a_reset_mid_way_starts_the_new_epoch_at_zero() -> None:
    source, [pipe], _ = runner()

    def values() -> Iterator[str]:
        yield "a"
        yield "b"
        source.reset(3)  # a failover, seen by the loop at the next value
        yield "c"
        yield "d"

    source.produce(values())
    assert pipe.got == [((0, 0), "a"), ((0, 1), "b"), ((3, 0), "c"), ((3, 1), "d")]
    source.produce(iter("e"))
    assert pipe.got[-1] == ((3, 2), "e")


def test_none_ends_the_source_and_finished_or_stop_end_it_after_the_value() -> None:
    source, [pipe], job = runner()
    source.produce(iter(["a", None, "never"]))
    assert [v for _, v in pipe.got] == ["a"]

    def finishing() -> Iterator[str]:
        yield "b"
        job.finished = True
        yield "c"
        yield "never"

    source.produce(finishing())
    assert [v for _, v in pipe.got] == ["a", "b", "c"]
    job.finished = False

    def stopping() -> Iterator[str]:
        yield "d"
        source.stop()
        yield "e"
        yield "never"

    source.produce(stopping())
    assert [v for _, v in pipe.got] == ["a", "b", "c", "d", "e"]
    source.produce(iter(["never"]))  # a stopped runner produces nothing more
    assert pipe.got[-1][1] == "e"


def test_a_tuple_goes_one_value_per_output_and_numbering_goes_on() -> None:
    source, pipes, _ = runner(outputs=2)
    source.produce(iter([("x", "y")]))  # two outputs: the general path
    assert [p.got for p in pipes] == [[((0, 0), "x")], [((0, 0), "y")]]
    single, [pipe], _ = runner()
    single.produce(iter(["a", ("t",), "b"]))  # a one-tuple on one output is its value
    assert pipe.got == [((0, 0), "a"), ((0, 1), "t"), ((0, 2), "b")]


def test_a_value_the_pipe_refuses_is_counted_and_the_source_goes_on(capsys: Any) -> None:
    source, [pipe], _ = runner()
    source.produce(iter(["a", "refused", "b"]))
    assert [v for _, v in pipe.got] == ["a", "b"]
    assert source.errors == 1
    assert "job source: this pipe refuses 'refused'" in capsys.readouterr().err


def test_a_source_that_raises_ends_counted_and_logged(caplog: Any) -> None:
    source, [pipe], _ = runner()

    def broken() -> Iterator[str]:
        yield "a"
        raise OSError("the sensor is gone")

    source.produce(broken())
    assert [v for _, v in pipe.got] == ["a"]
    assert source.errors == 1
    assert "the sensor is gone" in caplog.text
