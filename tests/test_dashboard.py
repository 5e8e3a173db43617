"""The dashboard in a real browser (Debian's Chromium, driven by Playwright) against a
real controller and agents: login, nodes, experiments changing live, cancel,
refusals, and /docs with every request to another host blocked.

Every page the tests open is offline-checked: a request to any host but the
controller is blocked and fails the test. With ``SHOAL_SCREENSHOTS=docs/images``
set, the tests save a screenshot of each page there (the README shows them);
without it they write nothing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from browser import offline
from processes import add_user
from runner_helpers import env_for
from shoal import Experiment, FlagValues, LocalCluster, Pipeline, RemoteClient
from shoal.controller.live import STORED_TICK
from shoal.library.basic import ShellCommand, SleepTask
from shoal.model.pipeline import Task

# Read at import: the suite's autouse fixture clears SHOAL_* before each test.
_shots = os.environ.get("SHOAL_SCREENSHOTS")
SCREENSHOTS = Path(_shots).resolve() if _shots else None
NODES = ["node-a", "node-b", "node-c"]  # node-c is stopped and killed by a test


class Gate(Task):
    """Says it waits, waits until a file exists, says it got through."""

    def __init__(self, path: str, name: str | None = None) -> None:
        super().__init__(name)
        self.path = path

    def run(self) -> str:
        print("waiting for the gate", flush=True)
        while not os.path.exists(self.path):
            time.sleep(0.05)
        print("through the gate", flush=True)
        return "opened"


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    properties = {"node-a": {"room": "lab2", "gpu": "none"}, "node-b": {"room": "lab3"}}
    with LocalCluster(NODES, properties=properties) as c:
        add_user(c.db_url, "bob", "bob-pw")
        yield c


def screenshot(page: Page, name: str, full_page: bool = True) -> None:
    if SCREENSHOTS is not None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page)


def log_in(page: Page, cluster: LocalCluster, login: str | None = None, pw: str = "") -> None:
    page.goto(cluster.endpoint + "/")
    page.fill("input[name=login]", login or cluster.login)
    page.fill("input[name=password]", pw or cluster.password)
    page.click("button[type=submit]")
    expect(page.get_by_test_id("user")).to_have_text(login or cluster.login)
    # Set once: still there at the end means the page was never reloaded.
    page.evaluate("window.stillTheSamePage = true")


def not_reloaded(page: Page) -> None:
    assert page.evaluate("window.stillTheSamePage") is True


def open_experiment(page: Page, name: str) -> None:
    """From the Experiments page, by clicking its row (a fragment change, no reload)."""
    page.click("header nav >> text=Experiments")
    page.locator(f"tr[data-experiment='{name}'] a").first.click()
    expect(page.locator("section.experiment h1")).to_have_text(name)


def badge(page: Page):  # type: ignore[no-untyped-def]
    return page.locator("section.experiment .title [data-testid=state]")


@pytest.mark.timeout(90)
def test_log_in_and_see_the_nodes_live(page: Page, cluster: LocalCluster) -> None:
    page.goto(cluster.endpoint + "/")
    page.fill("input[name=login]", cluster.login)
    page.fill("input[name=password]", "not the password")
    page.click("button[type=submit]")
    expect(page.get_by_role("alert")).to_have_text("Wrong login or password.")
    screenshot(page, "login")
    assert page.evaluate("sessionStorage.length") == 0

    log_in(page, cluster)
    for name in NODES:
        row = page.locator(f"tr[data-node='{name}']")
        expect(row.get_by_test_id("state")).to_have_text("online")
    expect(page.locator("tr[data-node='node-a']")).to_contain_text("room=lab2")
    expect(page.get_by_test_id("node-counts")).to_contain_text("3 online")
    expect(page.get_by_test_id("live-status")).to_have_text("live")
    # Live cpu: a sparkline grows from heartbeats as they arrive.
    expect(page.locator("tr[data-node='node-a'] .spark polyline")).to_have_count(1)
    not_reloaded(page)


@pytest.mark.timeout(90)
def test_a_node_goes_suspect_offline_and_back_live(page: Page, cluster: LocalCluster) -> None:
    log_in(page, cluster)
    state = page.locator("tr[data-node='node-c']").get_by_test_id("state")
    expect(state).to_have_text("online")
    agent = cluster.agents["node-c"]
    agent.send_signal(signal.SIGSTOP)  # silent but connected: suspect
    try:
        expect(state).to_have_text("suspect")
    finally:
        agent.send_signal(signal.SIGCONT)
    expect(state).to_have_text("online")
    cluster.kill_agent("node-c")  # gone for good: offline once the lost timeout passes
    expect(state).to_have_text("offline", timeout=(cluster.lost_timeout + 20) * 1000)
    cluster.start_agent("node-c")
    expect(state).to_have_text("online")
    not_reloaded(page)


@pytest.mark.timeout(120)
def test_a_pipelines_experiment_changes_live(
    page: Page, cluster: LocalCluster, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    name = "dash-pipeline"
    log_in(page, cluster)
    with cluster.client() as client:
        nodes = client.get_nodes().filter(lambda n: n.name == "node-a")
        pipeline = (
            Pipeline()
            .then(ShellCommand("echo first step", name="first"))
            .then(Gate(str(gate), name="gate"))
        )
        page.click("header nav >> text=Experiments")
        client.prepare_experiment(Experiment().map(pipeline, nodes), name)
        row = page.locator(f"tr[data-experiment='{name}']")
        expect(row.get_by_test_id("state")).to_have_text("READY")  # it appeared, live
        client.set_flag_values(name, "phase", FlagValues("prepared", 1))
        open_experiment(page, name)
        expect(badge(page)).to_have_text("READY")
        expect(page.locator("tr[data-flag=phase]")).to_contain_text("prepared")

        client.start_execution(name)
        expect(badge(page)).to_have_text("RUNNING")
        card = page.locator("[data-deployment='node-a']")
        expect(card.locator("tr[data-step='0']")).to_contain_text("first step")
        expect(card.get_by_test_id("log-node-a")).to_contain_text("waiting for the gate")
        client.set_flag_values(name, "phase", FlagValues("running", 2))
        expect(page.locator("tr[data-flag=phase]")).to_contain_text("running")
        screenshot(page, "experiment-pipelines")
        page.click("header nav >> text=Nodes")  # what runs where: it, on node-a
        expect(page.locator("tr[data-node='node-a'] ul.running")).to_contain_text(name)
        screenshot(page, "nodes")
        open_experiment(page, name)

        gate.touch()
        expect(badge(page)).to_have_text("FINISHED")
        expect(card.locator("tr[data-step='1']")).to_contain_text("opened")
        expect(card.get_by_test_id("log-node-a")).to_contain_text("through the gate")
        not_reloaded(page)
        page.click("header nav >> text=Experiments")
        expect(row.get_by_test_id("state")).to_have_text("FINISHED")


RUN = """\
from shoal.runner import *

servers = ServerList(Server("node-b", "127.0.0.1"))


@reg_exp(servers=servers)
def gated(servers):
    servers[0].run_cmd("echo tick; while [ ! -e {gate} ]; do sleep 0.05; done; echo tock").wait()
"""


@pytest.mark.timeout(120)
def test_a_runner_run_shows_its_commands_output_live(
    page: Page, cluster: LocalCluster, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    (tmp_path / "gated.py").write_text(RUN.format(gate=gate))
    log_in(page, cluster)
    page.click("header nav >> text=Experiments")
    run = subprocess.Popen(
        [sys.executable, "-m", "shoal", "exp", "--no-progress", "gated.py"],
        cwd=tmp_path,
        env=env_for(cluster),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        row = page.locator("tr[data-experiment='gated']")
        expect(row.get_by_test_id("state")).to_have_text("RUNNING")
        open_experiment(page, "gated")
        command = page.locator("article.command").first
        expect(command.get_by_test_id("state")).to_have_text("running")
        expect(command.locator("pre.tail")).to_contain_text("tick")
        screenshot(page, "experiment-runner")
        gate.touch()
        expect(badge(page)).to_have_text("FINISHED")
        expect(command).to_contain_text("exit 0")
        expect(command.locator("pre.tail")).to_contain_text("tock")
        not_reloaded(page)
        output, _ = run.communicate(timeout=60)
        assert run.returncode == 0, output
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()


@pytest.mark.timeout(90)
def test_cancel_and_delete_from_the_pages(page: Page, cluster: LocalCluster) -> None:
    name = "dash-cancel"
    log_in(page, cluster)
    with cluster.client() as client:
        nodes = client.get_nodes().filter(lambda n: n.name == "node-b")
        pipeline = Pipeline().then(SleepTask(120, name="long"))
        client.prepare_experiment(Experiment().map(pipeline, nodes), name)
        client.wait(name, until="ready")
        client.start_execution(name)
        open_experiment(page, name)
        expect(badge(page)).to_have_text("RUNNING")
        page.click("section.experiment button.action")
        page.click("section.experiment button.action >> text=Really cancel?")
        expect(badge(page)).to_have_text("CANCELLED")
        assert client.raw_status(name)["status"] == "CANCELLED"
        not_reloaded(page)

        page.click("header nav >> text=Experiments")
        row = page.locator(f"tr[data-experiment='{name}']")
        expect(row.get_by_test_id("state")).to_have_text("CANCELLED")
        screenshot(page, "experiments")
        row.locator("button.action").click()
        row.locator("button.action >> text=Really delete?").click()
        expect(row).to_have_count(0)
        assert name not in client.get_experiments()


@pytest.mark.timeout(60)
def test_another_users_experiment_is_not_found(page: Page, cluster: LocalCluster) -> None:
    with cluster.client() as client:
        nodes = client.get_nodes().filter(lambda n: n.name == "node-a")
        client.prepare_experiment(Experiment().map(Pipeline().then(SleepTask(0)), nodes), "mine")
    log_in(page, cluster, "bob", "bob-pw")
    page.click("header nav >> text=Experiments")
    expect(page.locator("section")).to_contain_text("No experiments yet")
    page.goto(cluster.endpoint + "/#/experiments/mine")
    expect(page.locator("main h1")).to_have_text("Not found")
    expect(page.get_by_role("alert")).to_contain_text("experiment 'mine' not found")


@pytest.mark.timeout(60)
def test_the_event_stream_refuses_what_the_api_refuses(cluster: LocalCluster) -> None:
    with (
        RemoteClient(cluster.endpoint, "bob", "bob-pw") as bob,
        httpx.Client(base_url=cluster.endpoint, timeout=10) as http,
    ):
        token = bob.token()  # valid until the client logs out at the end
        assert http.get("/api/events").status_code == 401
        auth = {"Authorization": f"Bearer {token}"}
        wrong = http.get("/api/events", params={"topic": "secrets"}, headers=auth)
        assert wrong.status_code == 400 and "secrets" in wrong.json()["detail"]
        other = http.get("/api/events", params={"experiment": "dash-pipeline"}, headers=auth)
        assert other.status_code == 404
        with http.stream("GET", "/api/events", params={"topic": "nodes"}, headers=auth) as s:
            assert s.headers["content-type"].startswith("text/event-stream")
            for line in s.iter_lines():
                if line.startswith("data: ") and "node-a" in line:
                    break


@pytest.mark.timeout(90)
def test_a_busy_experiment_is_sent_coalesced_and_up_to_date(cluster: LocalCluster) -> None:
    """300 flag changes as fast as they go: a watcher gets at most one state per
    STORED_TICK, and the last state always."""
    name, last = "dash-busy", 300
    with cluster.client() as client, httpx.Client(base_url=cluster.endpoint, timeout=30) as http:
        nodes = client.get_nodes().filter(lambda n: n.name == "node-a")
        client.prepare_experiment(Experiment().map(Pipeline().then(SleepTask(0)), nodes), name)

        def hammer() -> None:
            for i in range(1, last + 1):
                client.set_flag_values(name, "n", FlagValues(None, i))

        writer = threading.Thread(target=hammer)
        auth = {"Authorization": f"Bearer {client.token()}"}
        states = 0
        started = time.monotonic()
        with http.stream("GET", "/api/events", params={"experiment": name}, headers=auth) as s:
            writer.start()
            try:
                for line in s.iter_lines():
                    states += line == "event: experiment"
                    if line.startswith("data: ") and f'"int_value":{last}}}' in line:
                        break
            finally:
                writer.join()
        took = time.monotonic() - started
        assert 1 <= states <= took / STORED_TICK + 2, (states, took)


@pytest.mark.timeout(60)
def test_docs_render_offline(browser: Browser, cluster: LocalCluster) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        blocked = offline(context, cluster.endpoint)
        page = context.new_page()
        page.goto(cluster.endpoint + "/docs")
        expect(page.locator(".swagger-ui .info .title")).to_contain_text("shoal controller")
        expect(page.locator(".opblock-summary-path[data-path='/api/token']")).to_have_count(1)
        page.wait_for_load_state("networkidle")
        assert blocked == []
        screenshot(page, "docs", full_page=False)
    finally:
        context.close()
