"""The runner front-end: distexprunner's experiments on shoal."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from runner_helpers import env_for, run_inline, shoal_exp
from shoal import LocalCluster
from shoal.runner import (
    Action,
    BadReturnCode,
    CommandError,
    Console,
    File,
    ParameterGrid,
    Server,
    ServerList,
    SubstrMatcher,
)

ROOT = Path(__file__).resolve().parent.parent
SEED_GRID_NAMES = [
    f"grid__a={a}_b={b}_to_file={t}" for a in range(1, 5) for b in (2, 4) for t in (True, False)
]


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(["node01", "node02"]) as c:
        yield c


@pytest.fixture
def servers() -> ServerList:
    return ServerList(
        Server("node01", "127.0.0.1", 20000, role="a"),
        Server("node02", "127.0.0.1", 20001, role="b"),
    )


class Hook:
    """A local webhook that records what --notify posts."""

    def __init__(self) -> None:
        self.posts: list[dict] = []
        self.received = threading.Event()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.posts.append(json.loads(body))
                self.send_response(200)
                self.end_headers()
                hook.received.set()

            def log_message(self, *args: object) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.mark.timeout(120)
def test_seed_examples_on_a_local_cluster(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "examples" / "runner", tmp_path / "runner")
    hook = Hook()
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "shoal",
                "exp",
                "--no-progress",
                "--notify",
                hook.url,
                "runner/",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=110,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert hook.received.wait(10)
    finally:
        hook.close()
    out = done.stdout
    assert "node01: runner" in out  # `ls` printed the node's directory listing
    summary = hook.posts[0]
    names = [e["name"] for e in summary["experiments"]]
    csv_results = ["csv_results__scale=10", "csv_results__scale=100"]
    ported = ["line_by_line", "restart_on_timeout", "environment"]  # test_runner_fidelity.py
    assert names == ["ls", "kill_yes", *csv_results, *SEED_GRID_NAMES, *ported]
    assert summary["finished"] == 23 and summary["failed"] == 0
    kill_yes = next(e for e in summary["experiments"] if e["name"] == "kill_yes")
    assert 3 <= kill_yes["seconds"] < 6, kill_yes  # killed after 3 s, back promptly
    # grid.log: every combination once, in the grid's order (File(..., append=True))
    lines = (tmp_path / "grid.log").read_text().splitlines()
    assert lines == [f"{a} {b}" for a in range(1, 5) for b in (2, 4) for _ in (True, False)]
    # to_file=False also went to the console, with the seed's format
    assert out.count("node01: 1 2") == 1 and out.count("node01: 4 4") == 1


@pytest.mark.timeout(60)
def test_stdin_comes_back_and_bad_utf8_does_not_crash(cluster, servers) -> None:
    got: list[str] = []

    def exp(servers):
        cat = servers[0].run_cmd("cat", stdout=got.append)
        cat.stdin("hello\n")
        cat.stdin("world\n", close=True)
        assert cat.wait() == 0
        servers[1].run_cmd(r"printf 'caf\351 \377\n'", stdout=got.append).wait()

    [outcome] = run_inline(cluster, servers, exp)
    assert outcome.status == "finished", outcome.error
    assert got[:2] == ["hello\n", "world\n"]  # with their newline, as distexprunner
    assert got[2].startswith("caf\ufffd")


@pytest.mark.timeout(60)
def test_kill_reaches_children_that_ignore_sigterm(cluster, servers) -> None:
    marker = f"sleep {int(time.time()) % 1000 + 3000}"
    seen: dict[str, object] = {}

    def exp(servers):
        s = servers[0]
        ready = SubstrMatcher("ready")
        stubborn = s.run_cmd(
            f"trap '' TERM; (trap '' TERM; {marker}) & echo ready; {marker}", stdout=ready
        )
        assert ready.wait(20)
        assert stubborn.wait(block=False) is None
        seen["rc"] = stubborn.kill()
        # "[s]leep" matches "sleep" but not this pgrep's own shell
        check = s.run_cmd(f"pgrep -f '[s]{marker[1:]}'", stdout=lambda line: None)
        seen["pgrep"] = check.wait()

    [outcome] = run_inline(cluster, servers, exp, raise_on_rc=False)
    assert outcome.status == "finished", outcome.error
    assert seen["rc"] == -signal.SIGKILL
    assert seen["pgrep"] == 1  # nothing left running


@pytest.mark.timeout(60)
def test_timeout_kills_and_reports(cluster, servers) -> None:
    codes: list[int | None] = []

    def lenient(servers):
        codes.append(servers[0].run_cmd("sleep 30", timeout=0.5).wait())

    def strict(servers):
        servers[0].run_cmd("sleep 30", timeout=0.5).wait()

    [ok] = run_inline(cluster, servers, lenient, raise_on_rc=False)
    assert ok.status == "finished" and codes[0] not in (0, None)
    [failed] = run_inline(cluster, servers, strict)
    assert failed.status == "failed" and "timed out after 0.5 s" in failed.error


@pytest.mark.timeout(60)
def test_return_codes_with_and_without_raise_on_rc(cluster, servers) -> None:
    codes: list[int | None] = []

    def exp(servers):
        codes.append(servers[0].run_cmd("exit 3").wait())
        codes.append(servers[1].run_cmd("true").wait())

    [reported] = run_inline(cluster, servers, exp, raise_on_rc=False)
    assert reported.status == "finished" and codes == [3, 0]
    [stopped] = run_inline(cluster, servers, exp)
    assert stopped.status == "failed"
    assert "BadReturnCode" in stopped.error and "'exit 3' returned 3" in stopped.error
    assert codes == [3, 0]  # the failing wait() raised: nothing after it ran


@pytest.mark.timeout(60)
def test_restart_runs_max_restarts_times(cluster, servers) -> None:
    runs: list[int] = []

    def exp(servers):
        runs.append(1)
        return Action.RESTART

    [outcome] = run_inline(cluster, servers, exp, max_restarts=3)
    assert outcome.runs == 3 and len(runs) == 3


@pytest.mark.timeout(60)
def test_parameter_grid_passes_parameters(cluster, servers) -> None:
    seen: list[tuple] = []

    def exp(servers, size, mode):
        seen.append((size, mode))

    outcomes = run_inline(cluster, servers, exp, params=ParameterGrid(size=[1, 2], mode="x"))
    assert [o.name for o in outcomes] == ["exp__size=1_mode=x", "exp__size=2_mode=x"]
    assert seen == [(1, "x"), (2, "x")]


@pytest.mark.timeout(60)
def test_send_file_cd_and_env(cluster, servers, tmp_path) -> None:
    source = tmp_path / "payload.txt"
    source.write_text("uploaded\n")
    target = tmp_path / "remote"
    got: list[str] = []

    def exp(servers):
        s = servers["node02"]
        s.cd(str(target))
        s.send_file(source, "in/payload.txt")
        s.run_cmd(
            "cat in/payload.txt; echo $GREETING", stdout=got.append, env={"GREETING": "hi"}
        ).wait()

    [outcome] = run_inline(cluster, servers, exp)
    assert outcome.status == "finished", outcome.error
    assert got == ["uploaded\n", "hi\n"]
    assert (target / "in" / "payload.txt").read_text() == "uploaded\n"


@pytest.mark.timeout(60)
def test_commands_left_running_are_killed_and_runs_are_recorded(cluster, servers) -> None:
    started: dict[str, int | None] = {}

    def exp(servers):
        for s in servers:
            started[s.id] = s.run_cmd("sleep 300").pid
        servers[0].run_cmd("echo recorded").wait()

    [outcome] = run_inline(cluster, servers, exp)
    assert outcome.status == "finished"
    with cluster.client() as client:
        status = client.raw_status("exp")
    assert status["kind"] == "runner" and status["status"] == "FINISHED"
    cmds = {c["cmd"]: c for c in status["commands"] if c["node"] == "node01"}
    assert cmds["echo recorded"]["return_code"] == 0
    assert cmds["echo recorded"]["stdout"] == "recorded\n"
    assert cmds["sleep 300"]["return_code"] is not None  # killed, and recorded
    for pid in started.values():
        assert pid is not None
    shown = subprocess.run(
        [sys.executable, "-m", "shoal", "status", "exp"],
        env={**env_for(cluster), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "echo recorded" in shown.stdout and "sleep 300" in shown.stdout


@pytest.mark.timeout(90)
def test_two_servers_interleave_whole_lines_on_one_console(cluster, tmp_path) -> None:
    (tmp_path / "chatty.py").write_text(
        "from shoal.runner import *\n"
        "servers = ServerList(Server('node01', '127.0.0.1'), Server('node02', '127.0.0.1'))\n"
        "@reg_exp(servers=servers)\n"
        "def chatty(servers):\n"
        "    cmds = [s.run_cmd(\"seq 1 10000 | sed 's/^/line-/'\", "
        "stdout=Console(fmt=f'{s.id}: %s')) for s in servers]\n"
        "    for c in cmds:\n"
        "        c.wait()\n"
    )
    done = shoal_exp(tmp_path, "chatty.py", env=env_for(cluster), timeout=80)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("node0")]
    for node in ("node01", "node02"):
        mine = [line for line in lines if line.startswith(node + ": ")]
        assert mine == [f"{node}: line-{i}" for i in range(1, 10001)]
    assert len(lines) == 20000


@pytest.mark.timeout(90)
def test_resume_runs_only_what_had_not_finished(cluster, tmp_path) -> None:
    fifo = tmp_path / "second-started"
    os.mkfifo(fifo)
    (tmp_path / "steps.py").write_text(
        "import os\n"
        "from pathlib import Path\n"
        "from shoal.runner import *\n"
        "here = Path(__file__).parent\n"
        "servers = ServerList(Server('node01', '127.0.0.1'))\n"
        "def note(name):\n"
        "    with open(here / 'ran.log', 'a') as f:\n"
        "        f.write(name + '\\n')\n"
        "@reg_exp(servers=servers)\n"
        "def first(servers):\n"
        "    note('first')\n"
        "@reg_exp(servers=servers)\n"
        "def second(servers):\n"
        "    note('second')\n"
        "    if not (here / 'unblock').exists():\n"
        "        with open(here / 'second-started', 'w') as f:\n"
        "            f.write('started')\n"
        "        servers[0].run_cmd('sleep 300').wait()\n"
        "@reg_exp(servers=servers)\n"
        "def third(servers):\n"
        "    note('third')\n"
    )
    args = [sys.executable, "-m", "shoal", "exp", "--no-progress", "steps.py"]
    runner = subprocess.Popen(
        args,
        cwd=tmp_path,
        env=env_for(cluster),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with open(fifo) as started:  # blocks until `second` is running
            assert started.read() == "started"
        runner.send_signal(signal.SIGKILL)
        runner.wait(10)
    finally:
        if runner.poll() is None:
            runner.kill()
    (tmp_path / "unblock").write_text("")
    resumed = subprocess.run(
        [*args[:4], "--resume", *args[4:]],
        cwd=tmp_path,
        env=env_for(cluster),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert (tmp_path / "ran.log").read_text().split() == ["first", "second", "second", "third"]
    assert "1 skipped" in resumed.stdout


@pytest.mark.timeout(60)
def test_unknown_server_is_an_error_before_anything_runs(cluster, tmp_path) -> None:
    (tmp_path / "bad.py").write_text(
        "from pathlib import Path\n"
        "from shoal.runner import *\n"
        "servers = ServerList(Server('node01', '127.0.0.1'), Server('nosuch', '10.9.9.9'))\n"
        "@reg_exp(servers=servers)\n"
        "def bad(servers):\n"
        "    Path('ran').write_text('it ran')\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "shoal", "exp", "bad.py"],
        cwd=tmp_path,
        env=env_for(cluster),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1
    assert "no node for server(s) nosuch (10.9.9.9)" in done.stderr
    assert not (tmp_path / "ran").exists()


@pytest.mark.timeout(60)
def test_broken_experiment_file_names_the_file(tmp_path) -> None:
    (tmp_path / "broken.py").write_text("from shoal.runner import *\nreg_exp(servers=[1])\n")
    done = subprocess.run(
        [sys.executable, "-m", "shoal", "exp", "broken.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1
    assert "broken.py" in done.stderr and "servers=ServerList" in done.stderr


@pytest.mark.timeout(60)
def test_agent_dying_mid_command_ends_wait_with_an_error() -> None:
    with LocalCluster(["victim"], heartbeat_interval=0.2, heartbeat_timeout=1.5) as lone:
        servers = ServerList(Server("victim", "127.0.0.1"))
        errors: list[str] = []

        def exp(servers):
            ready = SubstrMatcher("up")
            cmd = servers[0].run_cmd("echo up; sleep 300", stdout=ready)
            assert ready.wait(20)
            lone.kill_agent("victim", signal.SIGKILL)
            t0 = time.monotonic()
            try:
                cmd.wait()
            except CommandError as exc:
                errors.append(f"{exc} after {time.monotonic() - t0:.1f} s")
                raise

        [outcome] = run_inline(lone, servers, exp)
        assert outcome.status == "failed"
        assert errors and "node 'victim' was lost" in errors[0]


def test_server_list_indexing() -> None:
    a, b, c = (
        Server("a", "1.1.1.1", gpu=True),
        Server("b", "2.2.2.2", gpu=False),
        Server("c", "3.3.3.3", gpu=True),
    )
    servers = ServerList(a, b, c, working_directory="/tmp")
    assert servers[0] is a and servers["b"] is b
    assert servers[1:].ids == ["b", "c"]
    assert servers[lambda s: s.gpu].ids == ["a", "c"]
    assert servers[0, "c"].ids == ["a", "c"]
    assert len(servers) == 3 and [s.id for s in servers] == ["a", "b", "c"]
    assert servers.working_directory == "/tmp" and a.port == 20000
    servers.cd("/srv")
    assert c.working_directory == "/srv"
    with pytest.raises(KeyError, match="no server 'z'"):
        servers["z"]
    with pytest.raises(ValueError, match="unique"):
        ServerList(a, Server("a", "x"))


def test_parameter_grid_names_match_the_seed() -> None:
    from shoal.runner import ComputedParam

    grid = ParameterGrid(a=range(1, 5), b=[2, 4], to_file=[True, False])
    names = [f"grid__{ParameterGrid.suffix(c)}" for c in grid.combinations()]
    assert names == SEED_GRID_NAMES
    computed = ParameterGrid(n=[1, 2], twice=ComputedParam(lambda n: n * 2))
    assert list(computed.combinations()) == [{"n": 1, "twice": 2}, {"n": 2, "twice": 4}]


def test_handlers(tmp_path, capsys) -> None:
    out = File(tmp_path / "out.txt")
    out("one\n")
    out("two\n")
    out.flush()
    assert (tmp_path / "out.txt").read_text() == "one\ntwo\n"
    Console(fmt="> %s")("shown\n")
    assert capsys.readouterr().out == "> shown\n"
    matcher = SubstrMatcher("ready")
    matcher("not yet")
    assert not matcher.wait(0)
    matcher("server ready now")
    assert matcher.wait(1) and matcher.line == "server ready now"
    assert matcher.matched()
    with pytest.raises(BadReturnCode):
        raise BadReturnCode("n", "false", 1)


@pytest.mark.timeout(60)
def test_log_file_gets_output_and_log_records(cluster, tmp_path) -> None:
    (tmp_path / "logged.py").write_text(
        "from shoal.runner import *\n"
        "servers = ServerList(Server('node01', '127.0.0.1'))\n"
        "@reg_exp(servers=servers)\n"
        "def logged(servers):\n"
        "    log('a message from the experiment')\n"
        "    servers[0].run_cmd('echo from the node').wait()\n"
    )
    (tmp_path / "run.log").write_text("earlier line\n")
    done = subprocess.run(
        [sys.executable, "-m", "shoal", "exp", "--log", "run.log", "logged.py"],
        cwd=tmp_path,
        env=env_for(cluster),
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "run.log").read_text()
    assert text.startswith("earlier line\n")  # appended, not replaced
    assert "node01: from the node" in text
    assert "a message from the experiment" in text
    assert "logged: finished" in text


@pytest.mark.timeout(60)
def test_servers_resolve_by_name_then_by_address() -> None:
    from shoal.runner.execution import resolve_nodes
    from shoal.runner.registry import ExperimentSpec

    properties = {"lab-7": {"ip": "10.20.30.40"}}
    with LocalCluster(["lab-7"], properties=properties) as lone, lone.client() as client:
        nodes = {n.name: n for n in client.get_nodes()}
        assert nodes["lab-7"].properties["hostname"]  # reported by the agent itself
        servers = ServerList(Server("lab-7", "127.0.0.1"), Server("by-ip", "10.20.30.40"))
        spec = ExperimentSpec("e", Path("e.py"), lambda s: None, servers)
        assert resolve_nodes(client, [spec]) == {"lab-7": "lab-7", "by-ip": "lab-7"}
