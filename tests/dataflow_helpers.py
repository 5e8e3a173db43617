"""Shared by the dataflow tests: example copies, the CLI in a subprocess, waiting on files."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "dataflow"
SHOAL = [sys.executable, "-m", "shoal"]


def copy_network(tmp_path: Path, name: str) -> Path:
    """A private copy of an example network (and ``shared/``), so runs do not touch the repo."""
    for folder in ("shared", name):
        shutil.copytree(
            EXAMPLES / folder,
            tmp_path / folder,
            ignore=shutil.ignore_patterns("simulation", "local", "__pycache__"),
            dirs_exist_ok=True,
        )
    return tmp_path / name


def env(period: float = 0.02, **extra: str) -> dict[str, str]:
    src = str(ROOT / "src")
    path = os.environ.get("PYTHONPATH", "")
    return {
        **os.environ,
        "SHOAL_DEMO_PERIOD": str(period),
        "PYTHONPATH": f"{src}{os.pathsep}{path}" if path else src,
        **extra,
    }


def dataflow(*args: str, timeout: float = 90, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SHOAL, "dataflow", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=kwargs.pop("env", None) or env(),
        **kwargs,
    )


def rows(path: Path) -> list[list[str]]:
    """The rows of a CSV file written so far (a partly written last line is left out)."""
    if not path.exists():
        return []
    text = path.read_text()
    complete = text[: text.rfind("\n") + 1]
    return list(csv.reader(complete.splitlines()))


def cubes_in_blocks(count: int, block: int = 5) -> list[int]:
    """The tutorial's reduce sums: n**3 (three equal sources joined), summed per block."""
    values = [n**3 for n in range(1, count + 1)]
    return [sum(values[i : i + block]) for i in range(0, count - block + 1, block)]


def blocks_network(size: int, count: int) -> str:
    """A network's config.py: agent-a sends ``count`` blocks of ``size`` bytes to
    agent-b, which checks each and passes its number (-1 if damaged) to a CSV."""
    return f'''
from shoal.dataflow import BaseNode, BytesPipe, CSVSinkJob, PicklePipe, PythonJob

SIZE = {size}
COUNT = {count}


def block(number):
    """Value ``number``: its number, then a body that depends on it."""
    return number.to_bytes(4, "big") + bytes((number % 251,)) * (SIZE - 4)


class Blocks(PythonJob):
    DEFAULT_NODE = "agent-a"
    GROUPS = []

    def run(self):
        for number in range(COUNT):
            yield block(number)


class Check(PythonJob):
    """Passes on each block's number, or -1 if the block came damaged."""

    DEFAULT_NODE = "agent-b"
    GROUPS = []

    def run(self, data):
        number = int.from_bytes(data[:4], "big")
        return number if data == block(number) else -1


JOBS = [
    Blocks(outputs=[BytesPipe(1, SIZE)]),
    Check(inputs=[BytesPipe(1, SIZE)], outputs=[PicklePipe(2)]),
    CSVSinkJob(path="received.csv", inputs=[PicklePipe(2)]),
]
NODES = [BaseNode("agent-a"), BaseNode("agent-b")]
'''
