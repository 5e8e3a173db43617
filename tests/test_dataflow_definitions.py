"""Bad network definitions: each names the job and the pipe, and starts nothing."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from dataflow_helpers import dataflow
from shoal.dataflow import DefinitionError, load_network

HEADER = """
from shoal.dataflow import BaseNode, JSONPipe, PicklePipe, PythonJob


class Source(PythonJob):
    def run(self):
        yield 1


class One(PythonJob):
    def run(self, value):
        return value


class Two(PythonJob):
    def run(self, a, b):
        return a + b

"""

BAD = {
    "two_pipe_classes": (
        "JOBS = [Source(outputs=[PicklePipe(5)]), One(inputs=[JSONPipe(5)])]",
        r"pipe 5 is a PicklePipe in the outputs of job 1 \(Source\) "
        r"but a JSONPipe in the inputs of job 2 \(One\)",
    ),
    "no_source": (
        "JOBS = [Source(outputs=[PicklePipe(1)]), Two(inputs=[PicklePipe(1), PicklePipe(7)])]",
        r"pipe 7 has no source: job 2 \(Two\) reads it",
    ),
    "no_destination": (
        "JOBS = [Source(outputs=[PicklePipe(1), PicklePipe(2)]), One(inputs=[PicklePipe(1)])]",
        r"pipe 2 has no destination: job 1 \(Source\) writes it",
    ),
    "two_destinations": (
        "JOBS = [Source(outputs=[PicklePipe(1)]), One(inputs=[PicklePipe(1)]),"
        " One(inputs=[PicklePipe(1)])]",
        r"pipe 1 has 2 destinations: job 2 \(One\) and job 3 \(One\)",
    ),
    "two_sources": (
        "JOBS = [Source(outputs=[PicklePipe(1)]), Source(outputs=[PicklePipe(1)]),"
        " One(inputs=[PicklePipe(1)])]",
        r"pipe 1 has 2 sources: job 1 \(Source\) and job 2 \(Source\)",
    ),
    "run_cannot_take_inputs": (
        "JOBS = [Source(outputs=[PicklePipe(1)]), Source(outputs=[PicklePipe(2)]),"
        " One(inputs=[PicklePipe(1), PicklePipe(2)])]",
        r"job 3 \(One\) with inputs \[PicklePipe\(1\), PicklePipe\(2\)\]: "
        r"run\(\) cannot take its 2 input",
    ),
    "not_a_job": ("JOBS = [Source]", r"JOBS\[0\] is .*not a job \(a class: instantiate it\)"),
}


def write(tmp_path: Path, name: str, body: str) -> Path:
    folder = tmp_path / f"bad_{name}"
    folder.mkdir()
    (folder / "config.py").write_text(HEADER + textwrap.dedent(body) + "\n")
    return folder


@pytest.mark.timeout(30)
@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_definition_is_refused_at_load_time(tmp_path: Path, name: str) -> None:
    body, message = BAD[name]
    with pytest.raises(DefinitionError, match=message):
        load_network(write(tmp_path, name, body))


@pytest.mark.timeout(60)
def test_cli_reports_the_error_and_starts_nothing(tmp_path: Path) -> None:
    body, _ = BAD["two_destinations"]
    folder = write(tmp_path, "cli", body)
    done = dataflow(str(folder), "simulate")
    assert done.returncode == 1
    assert "Error: pipe 1 has 2 destinations" in done.stderr
    assert not (folder / "simulation").exists()
    assert "controller" not in done.stderr.lower()


@pytest.mark.timeout(30)
def test_wrong_pipe_arguments_are_clear() -> None:
    from shoal.dataflow import BytesPipe, PicklePipe

    with pytest.raises(TypeError, match="pipe id must be an int"):
        PicklePipe("101")
    with pytest.raises(ValueError, match="size must be a positive int"):
        BytesPipe(1, 0)
