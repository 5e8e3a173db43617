"""The dashboard's pages of a graph session and of a dataflow network, in a real
browser against a real controller and agents: each changes state live (tasks and
jobs coloured as they go from running to finished) without a reload, and the
experiments list shows their truthful states and failed counts.

Browser helpers come from test_dashboard; see there for SHOAL_SCREENSHOTS.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from shoal import LocalCluster
from shoal.dataflow import Coordinator, load_network
from shoal.graph import Client, TaskException, blob, tasks
from test_dashboard import (
    badge,
    log_in,
    not_reloaded,
    open_experiment,
    screenshot,
)

NODES = ["node-a", "node-b"]

# A network whose source counts until a file exists, then ends (and so does
# the network): the test decides when it finishes.
NETWORK = """\
import os
import time

from shoal.dataflow import BaseNode, PicklePipe, PythonJob

GATE = {gate!r}


class Ticker(PythonJob):
    def run(self):
        n = 0
        while not os.path.exists(GATE):
            n += 1
            yield n
            time.sleep(0.05)


class Square(PythonJob):
    def run(self, n):
        return n * n


class Drain(PythonJob):
    def run(self, n):
        return None


JOBS = [
    Ticker(outputs=[PicklePipe(101)]),
    Square(inputs=[PicklePipe(101)], outputs=[PicklePipe(102)]),
    Drain(inputs=[PicklePipe(102)]),
]
NODES = [BaseNode("node-a"), BaseNode("node-b")]
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(NODES, workdir=tmp_path_factory.mktemp("kinds")) as c:
        yield c


def graph_client(cluster: LocalCluster) -> Client:
    return Client(endpoint=cluster.endpoint, login=cluster.login, password=cluster.password)


@pytest.mark.timeout(120)
def test_a_graph_session_changes_live(page: Page, cluster: LocalCluster, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    log_in(page, cluster)
    page.click("header nav >> text=Experiments")
    with graph_client(cluster) as g, g.new_session("dash-graph") as session:
        name = g.transport.records[session.session_id]
        waits = tasks.Execute(
            f"while [ ! -e {gate} ]; do sleep 0.05; done; echo opened",
            shell=True,
            stdout=True,
            name="gate",
        )
        parts = [tasks.Concat([blob(b"%d" % i), waits.output], name=f"part-{i}") for i in range(3)]
        joined = tasks.Concat([p.output for p in parts], name="join")
        joined.output.keep()
        session.submit()
        open_experiment(page, name)
        dag = page.get_by_test_id("dag")
        gated, join = dag.locator("g[data-name=gate]"), dag.locator("g[data-name=join]")
        expect(gated).to_have_attribute("data-state", "running")
        expect(join).to_have_attribute("data-state", "waiting")
        expect(badge(page)).to_have_text("RUNNING")
        # Coloured by state: the running task's box is not the waiting one's.
        colour = "el => getComputedStyle(el.querySelector('rect')).fill"
        assert gated.evaluate(colour) != join.evaluate(colour)
        expect(page.locator("table.tasks tr[data-task]")).to_have_count(5)
        screenshot(page, "experiment-graph")

        gate.touch()
        assert joined.output.fetch().get_bytes() == b"0opened\n1opened\n2opened\n"
        expect(gated).to_have_attribute("data-state", "finished")
        expect(join).to_have_attribute("data-state", "finished")
        expect(page.locator("table.tasks tr[data-task]").first).to_contain_text("node-")
    expect(badge(page)).to_have_text("FINISHED")
    expect(page.get_by_test_id("task-states")).to_contain_text("5 finished")
    not_reloaded(page)


@pytest.mark.timeout(120)
def test_a_failed_task_shows_as_failed_with_counts(page: Page, cluster: LocalCluster) -> None:
    log_in(page, cluster)
    page.click("header nav >> text=Experiments")
    with graph_client(cluster) as g:
        with pytest.raises(TaskException), g.new_session("dash-graph-fails") as bad:
            tasks.Execute("echo broken >&2; exit 3", shell=True, name="breaks")
            bad.submit()
            bad.wait_all()
        name = g.transport.records[bad.session_id]
    row = page.locator(f"tr[data-experiment='{name}']")
    expect(row.get_by_test_id("state")).to_have_text("FAILED")
    expect(row.get_by_test_id("failed-counts")).to_have_text("1 of 1 task failed")
    open_experiment(page, name)
    expect(page.get_by_test_id("counts")).to_have_text("1 of 1 task failed")
    failed = page.locator("table.tasks tr[data-task]")
    expect(failed.get_by_test_id("state")).to_have_text("failed")
    expect(page.get_by_test_id("dag").locator("g[data-name=breaks]")).to_have_attribute(
        "data-state", "failed"
    )


@pytest.mark.timeout(180)
def test_a_dataflow_network_changes_live(page: Page, cluster: LocalCluster, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    folder = tmp_path / "ticker"
    folder.mkdir()
    (folder / "config.py").write_text(NETWORK.format(gate=str(gate)))
    network = load_network(folder)
    log_in(page, cluster)
    page.click("header nav >> text=Experiments")
    with Coordinator(
        network, cluster.client(), tmp_path / "out", loopback=True, echo=False
    ) as coordinator:
        name = coordinator.record.name
        assert name is not None
        open_experiment(page, name)
        expect(badge(page)).to_have_text("RUNNING")
        jobs = page.locator("table.jobs tr[data-job]")
        expect(jobs).to_have_count(3)
        for job in range(1, 4):
            row = page.locator(f"table.jobs tr[data-job='{job}']")
            expect(row.get_by_test_id("state")).to_have_text("running")
            expect(row.get_by_test_id("placement")).to_contain_text("node-")
        expect(page.locator("table.pipes tr[data-pipe]")).to_have_count(2)
        expect(page.get_by_test_id("network").locator("g[data-job]")).to_have_count(3)
        # Rounds (and so rates) show while the jobs run, not only when they end.
        running_source = page.locator("table.jobs tr[data-job='1']").get_by_test_id("rounds")
        expect(running_source).not_to_have_text("0", timeout=20_000)
        screenshot(page, "experiment-dataflow")

        gate.touch()
        assert coordinator.wait(60), "the network did not end"
    expect(badge(page)).to_have_text("FINISHED")
    source = page.locator("table.jobs tr[data-job='1']")
    expect(source.get_by_test_id("state")).to_have_text("finished")
    expect(source.get_by_test_id("rounds")).not_to_have_text("0")
    expect(page.get_by_test_id("network").locator("g[data-job='1']")).to_have_attribute(
        "data-state", "finished"
    )
    not_reloaded(page)
