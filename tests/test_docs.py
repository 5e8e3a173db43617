"""The code on each docs/ page runs, in order, as one script."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"


def python_blocks(page: Path) -> str:
    return "\n\n".join(re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S))


@pytest.mark.timeout(150)
@pytest.mark.parametrize("page", sorted(DOCS.glob("*.md")), ids=lambda p: p.name)
def test_page_code_runs(page: Path, tmp_path: Path) -> None:
    code = python_blocks(page)
    if not code:
        pytest.skip(f"{page.name} has no python code")
    script = tmp_path / f"{page.stem}.py"
    script.write_text(code)
    # A runner page is a file of experiments: it runs the way its users run it.
    command = ["-m", "shoal", "exp", "--no-progress"] if "@reg_exp" in code else []
    done = subprocess.run(
        [sys.executable, *command, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=140,
    )
    assert done.returncode == 0, f"{page.name}:\n{done.stdout}\n{done.stderr}"
    if command:
        assert " 0 failed" in done.stdout, done.stdout
