"""The README's pipelines example runs as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.mark.timeout(120)
def test_readme_python_examples_run(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks
    for i, code in enumerate(blocks):
        if "@reg_exp" in code:
            (tmp_path / "hello_exp.py").write_text(code)
            args = ["-m", "shoal", "exp", "--no-progress", "hello_exp.py"]
            expected = "node01: hello 2"
        elif "shoal.dataflow" in code:
            (tmp_path / "mynet").mkdir()
            (tmp_path / "mynet" / "config.py").write_text(code)
            args = ["-m", "shoal", "dataflow", "mynet", "simulate", "--rounds", "10"]
            expected = ""
        elif "shoal.graph" in code:
            args, expected = ["-c", code], "b'Hello world!'\nHELLO WORLD!"
        else:
            args, expected = ["-c", code], "ExperimentStatus.FINISHED"
        done = subprocess.run(
            [sys.executable, *args], cwd=tmp_path, capture_output=True, text=True, timeout=110
        )
        assert done.returncode == 0, f"block {i}:\n{done.stderr}"
        assert expected in done.stdout
        if "shoal.dataflow" in code:
            rows = (tmp_path / "mynet" / "simulation" / "3" / "squares.csv").read_text()
            assert rows.split()[-1].endswith("81"), rows


def test_ci_runs_the_readme_test_command() -> None:
    ci = (README.parent / ".ci" / "run").read_text()
    commands = re.findall(
        r"```sh\n((?:sh scripts/\S+ && )?python3 -m venv.*?)\n```", README.read_text()
    )
    assert len(commands) == 2
    assert commands[1] in ci
