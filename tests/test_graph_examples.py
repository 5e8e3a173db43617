"""The Rain user guide's examples (examples/graph/) and docs/graph.md, run against
one local cluster of two agents, as their users run them: as scripts, with the
cluster given by SHOAL_ENDPOINT, SHOAL_LOGIN and SHOAL_PASSWORD."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from shoal import LocalCluster

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "graph"
PAGE = ROOT / "docs" / "graph.md"

# What each script must print: the results the guide states (and a few more).
EXPECTED: dict[str, list[str]] = {
    "01_submit.py": ["in session 'My session'", "all tasks finished"],
    "02_default_session.py": ["b'Hello world!'"],
    "03_fetch.py": ["b'Hello world!'", "kept after unkeep: False"],
    "04_dependencies.py": ["b'Hello world!'\nwaited for the Sleep: True\nb'Hello world!'"],
    "05_more_outputs.py": [
        "labels: ['output1', 'output2']",
        "by label is by position: True",
        "output1: b'one line of data\\n'",
        "output2: b'one line of data\\n'",
        "t.output refused:",
    ],
    "06_content_types.py": [
        "raw bytes: label='const' data_type='blob' content_type=None bytes=b'Raw data'",
        "labelled: label='input data' data_type='blob' content_type=None",
        "str: label='const' data_type='blob' content_type='text' bytes=b'String data'",
        "json text: label='const' data_type='blob' content_type='json' bytes=b'[1, 2, 3, 4]'",
        "encode json: label='const' data_type='blob' content_type='json' bytes=b'[1,2,3,4]'",
        "encode pickle: label='const' data_type='blob' content_type='pickle'",
        "pickled: label='const' data_type='blob' content_type='pickle'",
        "load() -> [1, 2, 3, 4]",
        "latin-2 text: label='const' data_type='blob' content_type='text-latin2'",
        "load() -> 'Dobrý den'",
        "user type: label='const' data_type='blob' content_type='user/my-format'",
    ],
    "07_task_names.py": [
        "my-plain-name  groups=[]",
        "main_tasks/training/train1  groups=['main_tasks', 'training']\n"
        "main_tasks/training/train1  groups=['main_tasks', 'training']",
        "preprocess  groups=[]",
    ],
    "08_builtin_tasks.py": ["b'file data, constant data'"],
    "09_execute.py": [
        "three sleeping programs finished",
        "t1: {'index': b'<html>a page</html>\\n'}",
        "t2: {'index.html': b'<html>a page</html>\\n'}",
        "t3: {'index.html': b'<html>a page</html>\\n', 'log': b'saved index.html\\n'}",
        "t4: {'log': b'saved index.html\\n', 'index.html': b'<html>a page</html>\\n'}",
        "t5: {'stdout': b'standard output\\n'}",
        "t6: {'my_label': b'standard output\\n'}",
        "t7: {'my_label': b'standard output\\n'}",
    ],
    "10_execute_inputs.py": [
        "b'rainy day\\n'",
        "argument Input: b'2 myfile\\n'",
        "input_paths:    b'2 myfile\\n'",
        "stdin:          b'2\\n'",
    ],
    "11_program.py": ["b'rainy day\\n'", "b'rain again\\n'", "lines: b'2\\n'"],
    "12_remote.py": ["b'Hello world!'", "content type: text"],
    "13_remote_inputs.py": [
        "b'Hello Rain!'",
        "inputs of my_call: 3",
        "b'data1,data2,data3'",
        "fn1: b'10'",
        "fn2: b'10'",
        "fn3: b'100'",
    ],
    "14_remote_content_type.py": ["b'json: 6'", "b'json: 15'", "refused:"],
    "15_remote_outputs.py": [
        "fn1: 1 output(s)\n    label='output' content_type=None value=b'Returning bytes'",
        "fn2: 1 output(s)\n    label='output' content_type='text' value='Returning string'",
        "fn3: 3 output(s)\n    label=None content_type=None value=b'data1'\n"
        "    label=None content_type=None value=b'data2'\n"
        "    label=None content_type=None value=b'data3'",
        "fn4: 0 output(s)",
        "fn5: 2 output(s)\n    label='label1' content_type=None value=b'data1'\n"
        "    label='label2' content_type=None value=b'data2'",
        "fn6: 2 output(s)\n    label=None content_type='json' value=[1, 2, 3]\n"
        "    label=None content_type='json' value={'x': 123}",
        "fn7: 2 output(s)\n    label=None content_type='pickle' value=[1, 2, 3]\n"
        "    label=None content_type='json' value={'x': 123}",
        "fn8: 1 output(s)\n    label=None content_type='text-latin2' value='Dobrý den'",
    ],
    "16_debug.py": [
        "remote_fn",
        "16_debug.py",
        "Exception: Error occured!",
        "Variable a = 11",
        "Variable b = 21",
        "the session has failed: True",
        "b'ok'",
        "starting\ndone after 3 steps",
    ],
    "17_type_hints.py": ["output labels: ['test_pickle']", "pickle {'sum': 6}"],
    "18_resources.py": ["reserved: {'cpus': ", "both tasks finished"],
    "19_attributes.py": [
        "ran on node-",
        "duration >= 1 s: True error: ''",
        "[1, 2, 42]",
        "Running at governor node-",
        "output size: 6",
    ],
    "20_wait.py": ["both finished; took at least 2 s: True", "first finished: ['fast']"],
    "21_directories.py": [
        "d2: ['a', 'a/deep', 'a/deep/path', 'a/deep/path/x', 'adir', 'adir/sub', "
        "'adir/sub/inner.txt', 'adir/top.txt', 'myfile.txt']",
        "d3: b'67890'",
        "d4: ['path', 'path/x']",
        "rain/README: readme",
        "listing: ['a', 'a/deep', 'a/deep/path', 'a/deep/path/x', 'adir', 'adir/sub', "
        "'adir/sub/inner.txt', 'adir/top.txt', 'myfile.txt']",
    ],
    "22_fs_mappings.py": [
        "b'first line\\nNew line\\n'",
        "b'first line\\nedited\\n|first line\\n'",
        "the object itself: b'first line\\n'",
    ],
    "23_sessions.py": [
        "active: none\nactive: a\nactive: b\nactive: a b closed: True\n"
        "active: none a closed: True\nactive: long-lived\nactive: none closed: False\n"
        "b'bound only'\nb'from first' b'from second'\nclosed for good:",
    ],
    "24_multiple_submits.py": [
        "after 2 submits: b'Hello world'",
        "after 3 submits: b'Hello world!'",
        "submits: 3",
    ],
    "25_rain_api.py": [
        "governors: ['node-0', 'node-1']",
        "to submit: 3 tasks",
        "state after submit: notAssigned",
        "b'apple\\nfig\\npear\\napple\\nfig\\npear\\n'",
        "total: 12 name: stats/summary",
        "finished: True",
        "ran on node-",
    ],
}


@pytest.fixture(scope="module")
def graph_cluster() -> Iterator[LocalCluster]:
    """Two agents, named as the graph front-end's default local cluster names them."""
    with LocalCluster(["node-0", "node-1"]) as cluster:
        yield cluster


def cluster_env(cluster: LocalCluster) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_")}
    env.update(
        SHOAL_ENDPOINT=cluster.endpoint,
        SHOAL_LOGIN=cluster.login,
        SHOAL_PASSWORD=cluster.password,
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")])),
        PYTHONIOENCODING="utf-8",
    )
    return env


def run_script(script: Path, cluster: LocalCluster, cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=cwd,
        env=cluster_env(cluster),
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=100,
    )
    assert done.returncode == 0, f"{script.name}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.timeout(10)
def test_every_example_has_expectations() -> None:
    scripts = sorted(p.name for p in EXAMPLES.glob("*.py"))
    assert scripts == sorted(EXPECTED)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_prints_what_the_guide_says(
    name: str, graph_cluster: LocalCluster, tmp_path: Path
) -> None:
    out = run_script(EXAMPLES / name, graph_cluster, tmp_path)
    for expected in EXPECTED[name]:
        assert expected in out, f"{name}: {expected!r} not in its output:\n{out}"


def python_blocks(page: Path) -> str:
    """The page's python code blocks, in order, as one script (as tests/test_docs.py)."""
    return "\n\n".join(re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S))


@pytest.mark.timeout(10)
def test_page_has_a_block_per_guide_section() -> None:
    text = PAGE.read_text()
    assert python_blocks(PAGE)
    sections = re.findall(r"^## (.+)$", text, flags=re.M)
    assert len(sections) >= 15, sections


@pytest.mark.timeout(150)
def test_graph_page_code_runs(graph_cluster: LocalCluster, tmp_path: Path) -> None:
    script = tmp_path / "graph_page.py"
    script.write_text(python_blocks(PAGE))
    out = run_script(script, graph_cluster, tmp_path)
    assert "b'Hello world!'" in out, out
    assert "b'rainy day\\n'" in out, out
