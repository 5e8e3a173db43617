"""distexprunner's whole public API on shoal, used as distexprunner's users use it.

Commands run on a real local cluster (controller + agents) through
runner_helpers.run_inline; the names and the classes that need no cluster are
in test_runner_classes.py.
"""

from __future__ import annotations

import os
import pty
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner_helpers import env_for, run_inline, shoal_exp
from shoal import LocalCluster
from shoal.agent import command
from shoal.runner import (
    GDB,
    Action,
    EnvParser,
    File,
    ProcessGroup,
    ReturnCode,
    Server,
    ServerList,
    StdinController,
    SubstrMatcher,
    any_failed,
    forward_stdin_to,
    run_on_all,
)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(["node01", "node02"]) as c:
        yield c


@pytest.fixture
def servers(tmp_path: Path) -> ServerList:
    # Commands run in tmp_path: nothing they write lands in the repository.
    return ServerList(
        [Server("node01", "127.0.0.1", 20000), Server("node02", "127.0.0.1", 20001)],
        working_directory=str(tmp_path),
    )


def finished(outcomes: list) -> None:
    for outcome in outcomes:
        assert outcome.status == "finished", outcome.error


def compile_c(tmp_path: Path, name: str, code: str) -> Path:
    exe = tmp_path / name
    subprocess.run(
        ["gcc", "-g", "-xc", "-", "-o", str(exe)], input=code, text=True, check=True, timeout=60
    )
    return exe


# --- on a cluster ---------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_timed_out_command_returns_return_code_timeout(cluster, servers) -> None:
    seen: dict[str, object] = {}

    def exp(servers):
        slow = servers[0].run_cmd("sleep 30", timeout=0.3)
        quick = servers[1].run_cmd("true", timeout=10)
        seen["slow"], seen["quick"] = slow.wait(), quick.wait()
        procs = ProcessGroup()
        procs.add(servers[0].run_cmd("sleep 30", timeout=0.3))
        procs.add(servers[1].run_cmd("true"))
        seen["has_timeout"] = procs.has_timeout()
        seen["codes"] = procs.wait(verify_rc=False)
        if seen["slow"] == ReturnCode.TIMEOUT and "restarted" not in seen:
            seen["restarted"] = True
            return Action.RESTART

    finished(run_inline(cluster, servers, exp, raise_on_rc=False, max_restarts=2))
    assert seen["slow"] is ReturnCode.TIMEOUT and seen["quick"] == 0
    assert seen["has_timeout"] is True and seen["codes"] == [ReturnCode.TIMEOUT, 0]


@pytest.mark.timeout(60)
def test_process_group_and_run_on_all(cluster, servers) -> None:
    seen: dict[str, object] = {}

    def exp(servers):
        seen["all"] = run_on_all(servers, "test $OMP_NUM_THREADS = 8", env={"OMP_NUM_THREADS": 8})
        seen["mixed"] = run_on_all(servers, "test $(hostname) = never", verify_rc=False)
        procs = ProcessGroup()
        for s in servers:
            procs.add(s.run_cmd("echo up; sleep 30", stdout=lambda line: None))
        assert len(procs) == 2 and procs[0].pid and [p.server.id for p in procs] == servers.ids
        procs.signal(signal.SIGTERM)
        seen["signalled"] = procs.wait(verify_rc=False)
        try:
            run_on_all(servers, "exit 4")
        except AssertionError as exc:
            seen["failed"] = str(exc)

    finished(run_inline(cluster, servers, exp, raise_on_rc=False))
    assert seen["all"] == [0, 0] and seen["mixed"] == [1, 1]
    assert seen["signalled"] == [-signal.SIGTERM, -signal.SIGTERM]
    assert "node01: 'exit 4' returned 4" in seen["failed"]


@pytest.mark.timeout(60)
def test_any_failed(cluster, servers) -> None:
    seen: dict[str, object] = {}

    def exp(servers):
        t0 = time.monotonic()
        cmds = [servers[0].run_cmd("sleep 0.2; exit 3"), servers[1].run_cmd("sleep 30")]
        seen["failed"] = any_failed(cmds, poll_interval=0.1)
        seen["seconds"] = time.monotonic() - t0
        seen["ok"] = any_failed([s.run_cmd("sleep 0.1") for s in servers], poll_interval=5)

    finished(run_inline(cluster, servers, exp, raise_on_rc=False))
    assert seen["failed"] == 3 and seen["seconds"] < 10
    assert seen["ok"] is False


@pytest.mark.timeout(60)
def test_async_stdin_and_async_signal(cluster, servers) -> None:
    got: list[str] = []
    seen: dict[str, object] = {}

    def exp(servers):
        cat = servers[0].run_cmd("cat", stdout=got.append)
        t0 = time.monotonic()
        cat.async_stdin("first\n")
        cat.async_stdin("later\n", delay=0.3)
        cat.async_stdin("", close=True, delay=0.6)
        seen["returned_after"] = time.monotonic() - t0
        seen["cat"] = cat.wait()
        cat.stdin("ignored after the end\n")  # no error, as distexprunner
        sleeper = servers[1].run_cmd("sleep 30")
        sleeper.async_signal(signal.SIGINT, delay=0.2)
        seen["sleeper"] = sleeper.wait()
        piped = servers[0].run_cmd("cat", stdout=got.append)
        piped.stdin("delayed\n", close=True, delay=0.1)
        piped.wait()

    finished(run_inline(cluster, servers, exp, raise_on_rc=False))
    assert seen["returned_after"] < 0.25
    assert seen["cat"] == 0 and got == ["first\n", "later\n", "delayed\n"]
    assert seen["sleeper"] == -signal.SIGINT  # the signal asked for (see docs/runner.md)


@pytest.mark.timeout(60)
def test_delayed_actions_do_not_outlive_the_experiment(cluster, servers) -> None:
    def exp(servers):
        servers[0].run_cmd("sleep 30").async_signal(signal.SIGINT, delay=5)

    t0 = time.monotonic()
    finished(run_inline(cluster, servers, exp, raise_on_rc=False))
    assert time.monotonic() - t0 < 5  # the command was killed, the timer cancelled


@pytest.mark.timeout(60)
def test_handlers_get_lines_with_their_newline(cluster, servers, tmp_path) -> None:
    got: list[str] = []
    env = EnvParser()

    def exp(servers):
        s = servers[0]
        s.run_cmd("printf 'one\\ntwo\\n'; printf 'err\\n' >&2", stdout=got.append).wait()
        s.run_cmd("printf 'x\\n' >&2", stdout=None, stderr=[got.append]).wait()
        s.run_cmd("env", stdout=env, env={"OMP_NUM_THREADS": 8}).wait()
        out = File("out.log")  # relative to the client's working directory, as distexprunner
        s.run_cmd("echo a; echo b", stdout=out).wait()

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        finished(run_inline(cluster, servers, exp))
    finally:
        os.chdir(cwd)
    assert got == ["one\n", "two\n", "x\n"]
    assert env["OMP_NUM_THREADS"] == "8"
    assert (tmp_path / "out.log").read_text() == "a\nb\n"


@pytest.mark.timeout(60)
def test_file_flush_writes_each_line_at_once(cluster, servers, tmp_path) -> None:
    path = tmp_path / "live.log"
    seen: dict[str, object] = {}

    def exp(servers):
        ready = SubstrMatcher("first")
        cmd = servers[0].run_cmd("echo first; sleep 30", stdout=[File(path, flush=True), ready])
        assert ready.wait(20)
        seen["while_running"] = path.read_text()
        seen["still_running"] = cmd.wait(block=False)
        cmd.kill()

    finished(run_inline(cluster, servers, exp))
    assert seen["while_running"] == "first\n" and seen["still_running"] is None


C_TICKS = r"""
#include <stdio.h>
#include <unistd.h>
int main(void) {
    for (int i = 0; i < 3; i++) {
        printf("line %d\n", i);   /* into a pipe: block-buffered unless stdbuf */
        sleep(1);
    }
    return 0;
}
"""


@pytest.mark.timeout(60)
def test_buffered_c_program_output_arrives_line_by_line(cluster, servers, tmp_path) -> None:
    if command.line_buffered({}) == {}:
        pytest.skip("coreutils' libstdbuf.so is not installed")
    exe = compile_c(tmp_path, "ticks", C_TICKS)
    arrived = [threading.Event() for _ in range(3)]
    lines: list[str] = []
    checks: list[tuple[int, bool, bool]] = []

    def on_line(line: str) -> None:
        lines.append(line)
        arrived[len(lines) - 1].set()

    def exp(servers):
        cmd = servers[0].run_cmd(str(exe), stdout=on_line)
        for i in range(3):
            assert arrived[i].wait(5), f"line {i} did not arrive in time"
            # Each line shows while the program still sleeps before writing the next.
            nxt = i + 1 < 3 and arrived[i + 1].is_set()
            checks.append((i, nxt, cmd.wait(block=False) is None))
        assert cmd.wait() == 0

    finished(run_inline(cluster, servers, exp))
    assert lines == ["line 0\n", "line 1\n", "line 2\n"]
    assert checks[0] == (0, False, True) and checks[1] == (1, False, True)


CRASH = r"""
#include <stddef.h>
int main(void) {
    int *p = NULL;
    *p = 42;
    return 0;
}
"""


@pytest.mark.timeout(90)
def test_gdb_with_a_stdin_controller(cluster, servers, tmp_path) -> None:
    if shutil.which("gdb") is None:
        pytest.skip("gdb is not installed")
    exe = compile_c(tmp_path, "crash", CRASH)
    log = tmp_path / "gdb.log"
    read_end, write_end = os.pipe()
    seen: dict[str, object] = {}

    def exp(servers):
        with os.fdopen(read_end) as keys, open(os.devnull, "w") as screen:
            controller = StdinController(input=keys, output=screen)
            output = File(log, flush=True)
            cmd = servers[0].run_cmd(f"{GDB} {exe}", stdout=output, stderr=output, stdin=controller)
            # What a user types: pick command 0, ask for a backtrace, then end input.
            os.write(write_end, b"0\nbt\n")
            os.close(write_end)
            controller.wait()
            seen["rc"] = cmd.wait()

    finished(run_inline(cluster, servers, exp))
    text = log.read_text()
    assert "SIGSEGV" in text and "in main ()" in text, text
    assert seen["rc"] == 0


class Screen:
    """A terminal's screen for the controller: says when the menu asks for a choice."""

    def __init__(self) -> None:
        self.text = ""
        self.asking = threading.Event()

    def write(self, text: str) -> None:
        self.text += text
        if "Enter selection" in text:
            self.asking.set()

    def flush(self) -> None:
        pass


@pytest.mark.timeout(60)
def test_stdin_controller_on_a_terminal(cluster, servers) -> None:
    got: list[str] = []
    master, slave = pty.openpty()
    screen = Screen()

    def type_keys() -> None:
        # Once the menu is up (the terminal is raw by then): a bad choice, command 0,
        # a typo fixed with backspace, Enter, Ctrl-D.
        if screen.asking.wait(20):
            os.write(master, b"7\r0\rhelo\x7f\x7fllo\r\x04")

    def exp(servers):
        with os.fdopen(slave, "r") as terminal:
            controller = StdinController(input=terminal, output=screen)
            cmd = servers[0].run_cmd("cat", stdout=got.append, stdin=controller)
            other = servers[1].run_cmd("sleep 30", stdin=controller)
            typist = threading.Thread(target=type_keys)
            typist.start()
            controller.wait()
            typist.join(20)
            assert cmd.wait() == 0  # Ctrl-D closed cat's stdin
            other.kill()

    try:
        finished(run_inline(cluster, servers, exp))
    finally:
        os.close(master)
    assert got == ["hello\n"]
    assert "[1] node02: 'sleep 30'" in screen.text and "no command [7]" in screen.text
    assert "\r\n" in screen.text  # raw mode: the controller ends its own lines


@pytest.mark.timeout(60)
def test_stdin_controller_returns_when_its_commands_end(cluster, servers) -> None:
    read_end, write_end = os.pipe()

    def exp(servers):
        with os.fdopen(read_end) as keys, open(os.devnull, "w") as screen:
            controller = StdinController(input=keys, output=screen)
            servers[0].run_cmd("sleep 0.3", stdin=controller)
            controller.wait()  # nobody types: returns once the command is gone

    try:
        finished(run_inline(cluster, servers, exp))
    finally:
        os.close(write_end)


@pytest.mark.timeout(60)
def test_forward_stdin_to(cluster, servers) -> None:
    got: list[str] = []
    read_end, write_end = os.pipe()

    def exp(servers):
        cat = servers[0].run_cmd("cat", stdout=got.append)
        os.write(write_end, b"typed\n\x1bnot sent\n")
        with os.fdopen(read_end) as keys:
            forward_stdin_to(cat, input=keys)
        cat.stdin("", close=True)
        assert cat.wait() == 0

    try:
        finished(run_inline(cluster, servers, exp))
    finally:
        os.close(write_end)
    assert got == ["typed\n"]


@pytest.mark.timeout(60)
def test_log_shows_at_the_default_verbosity(cluster, tmp_path) -> None:
    (tmp_path / "logs.py").write_text(
        "from shoal.runner import *\n"
        "servers = ServerList([Server('node01', '127.0.0.1')])\n"
        "@reg_exp(servers=servers)\n"
        "def logs(servers):\n"
        "    log('visible without -v')\n"
    )
    done = shoal_exp(tmp_path, "logs.py", env={**env_for(cluster), "COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    assert "LOG" in done.stderr and "visible without -v" in done.stderr


@pytest.mark.timeout(90)
def test_run_always_runs_again_on_resume(cluster, tmp_path) -> None:
    (tmp_path / "always.py").write_text(
        "from pathlib import Path\n"
        "from shoal.runner import *\n"
        "servers = ServerList([Server('node01', '127.0.0.1')])\n"
        "def note(name):\n"
        "    with open(Path(__file__).parent / 'ran.log', 'a') as f:\n"
        "        f.write(name + '\\n')\n"
        "@reg_exp(servers=servers)\n"
        "def once(servers):\n"
        "    note('once')\n"
        "@reg_exp(servers=servers, run_always=True)\n"
        "def always(servers):\n"
        "    note('always')\n"
    )
    for extra in ([], ["--resume"]):
        done = shoal_exp(tmp_path, *extra, "always.py", env=env_for(cluster), timeout=40)
        assert done.returncode == 0, done.stderr
    assert (tmp_path / "ran.log").read_text().split() == ["once", "always", "always"]


# --- the ported examples --------------------------------------------------------------


@pytest.mark.timeout(120)
def test_ported_examples_run(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "examples" / "runner", tmp_path / "runner")
    files = ["runner/csv_results.py", "runner/line_by_line.py", "runner/timeouts.py"]
    # cwd: the local cluster's agent runs there too, where ticks is built
    done = shoal_exp(tmp_path, *files, env={**os.environ, "COLUMNS": "200"}, timeout=110)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "5 finished, 0 failed" in done.stdout
    assert (tmp_path / "results.csv").read_text() == (
        "scale,last_latency_us,total_ops,ops_by_thread,latencies_us\n"
        "10,7,60,10|20|30,12|7\n"
        "100,7,600,100|200|300,12|7\n"
    )
    assert "tick 2" in done.stdout
    assert "attempt 3 finished in time" in done.stderr
    assert "node01: OMP_NUM_THREADS=8" in done.stderr
    assert not (tmp_path / "ticks").exists()
