"""The code on each docs/ page runs, in order, as one script."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
# Pages whose code needs another environment, and the test that runs it there.
RUN_ELSEWHERE = {
    "netunicorn.md": "test_netunicorn.py::test_docs_page_runs_in_netunicorns_own_environment",
    "testbed.md": "test_deploy.py::test_docs_page_runs_against_the_testbed",
}


def python_blocks(page: Path) -> str:
    return "\n\n".join(re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S))


PAGES = [p for p in sorted(DOCS.glob("*.md")) if p.name not in RUN_ELSEWHERE]


def test_every_page_has_code_that_a_test_runs() -> None:
    for page in sorted(DOCS.glob("*.md")):
        assert page.name in RUN_ELSEWHERE or python_blocks(page), f"{page.name} has no code"


@pytest.mark.timeout(150)
@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_page_code_runs(page: Path, tmp_path: Path) -> None:
    code = python_blocks(page)
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


def test_every_promise_in_the_security_page_names_a_test_that_exists() -> None:
    page = (DOCS / "security.md").read_text()
    table = page[page.index("## What shoal promises") :].split("\n## ")[0]
    named = 0
    for row in table.splitlines()[4:]:
        module = None
        for ref in re.findall(r"`(tests/[\w/]+\.py)?(?:::(\w+))?`", row):
            module = ref[0] or module
            assert module, row
            source = (DOCS.parent / module).read_text()
            if ref[1]:
                assert f"def {ref[1]}(" in source, f"{module} has no {ref[1]}"
            named += 1
    assert named >= 25
