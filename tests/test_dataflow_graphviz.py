"""``shoal dataflow NET graphviz`` (FISSION's manage.py graphviz) on a network
that has not run: the DOT file, what Graphviz renders of it, and the errors.
(Grouped by node once the network runs: tests/test_dataflow_failover.py.)"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from dataflow_helpers import copy_network, dataflow, env
from shoal.dataflow.network import load_network
from shoal.dataflow.network_dot import network_dot


@pytest.mark.timeout(60)
def test_the_dot_file_has_every_job_and_pipe_and_is_rendered(tmp_path: Path) -> None:
    network = copy_network(tmp_path, "demo_network_v3")
    done = dataflow(str(network), "graphviz", "--format", "svg")
    assert done.returncode == 0, done.stderr
    dot = (network / "network.dot").read_text()
    loaded = load_network(network)
    for job in loaded.jobs:
        assert f'"{job.label}"' in dot
    assert dot.count(" -> ") == len(loaded.pipes)
    # Not run yet: only the jobs that run in the client are grouped (as client).
    assert dot.count("subgraph cluster_") == 1 and 'label="client"' in dot
    assert f"wrote {network / 'network.svg'}" in done.stdout
    assert "<svg" in (network / "network.svg").read_text()


@pytest.mark.timeout(60)
def test_without_graphviz_it_says_what_to_install_and_keeps_the_dot_file(tmp_path: Path) -> None:
    network = copy_network(tmp_path, "demo_network_v3")
    bare = tmp_path / "bin"  # a PATH with python and no dot
    bare.mkdir()
    os.symlink(sys.executable, bare / "python")
    assert shutil.which("dot", path=str(bare)) is None
    done = dataflow(str(network), "graphviz", env=env(PATH=str(bare)))
    assert done.returncode == 1
    assert "Graphviz's dot is not installed" in done.stderr
    assert "apt-get install graphviz; or --format dot" in done.stderr
    assert "Traceback" not in done.stderr
    assert (network / "network.dot").exists()
    # --format dot needs no Graphviz at all, and --output puts the file elsewhere.
    elsewhere = tmp_path / "drawings" / "v3.dot"
    elsewhere.parent.mkdir()
    done = dataflow(
        str(network),
        "graphviz",
        "--format",
        "dot",
        "--output",
        str(elsewhere),
        env=env(PATH=str(bare)),
    )
    assert done.returncode == 0, done.stderr
    assert elsewhere.read_text() == (network / "network.dot").read_text()


def test_names_with_quotes_are_escaped(tmp_path: Path) -> None:
    network = load_network(copy_network(tmp_path, "demo_network_v3"))
    network.name = 'demo "v3" \\ quoted'
    assert network_dot(network).startswith('digraph "demo \\"v3\\" \\\\ quoted" {')
