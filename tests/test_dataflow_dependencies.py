"""DEPENDENCIES reach a job's folder before its setup(); with PRE_COPY they are on
every node before any job starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CONFIG = """
from pathlib import Path

from shoal.dataflow import BaseNode, CSVSinkJob, PicklePipe, PythonJob


class Greeter(PythonJob):
    DEPENDENCIES = ["data/greeting.txt"]

    def setup(self):
        # Relative paths are the job's own folder, where its dependencies are.
        self.text = Path("data/greeting.txt").read_text().strip()

    def run(self):
        yield self.text


JOBS = [
    Greeter(outputs=[PicklePipe(1)]),
    CSVSinkJob(path="greetings.csv", inputs=[PicklePipe(1)]),
]
NODES = [BaseNode("dep-a"), BaseNode("dep-b")]
PRE_COPY = {pre_copy}
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("pre_copy", [False, True])
def test_dependencies_reach_the_job(tmp_path: Path, pre_copy: bool) -> None:
    network = tmp_path / "greetings"
    (network / "data").mkdir(parents=True)
    (network / "data" / "greeting.txt").write_text("hello from the client\n")
    (network / "config.py").write_text(CONFIG.format(pre_copy=pre_copy))
    done = subprocess.run(
        [sys.executable, "-m", "shoal", "dataflow", str(network), "simulate"],
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert done.returncode == 0, done.stderr
    rows = (network / "simulation" / "2" / "greetings.csv").read_text().splitlines()
    assert rows[-1].endswith("hello from the client"), rows
    assert ("PRE_COPY: dependencies copied to dep-a, dep-b" in done.stderr) is pre_copy
