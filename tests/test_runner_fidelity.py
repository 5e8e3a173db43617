"""distexprunner's whole public API on shoal, used as distexprunner's users use it.

Commands run on a real local cluster (controller + agents) through
runner_helpers.run_inline; pure classes get unit tests.
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
    SOCKET_BIND,
    Action,
    Console,
    CSVGenerator,
    EnvParser,
    File,
    IterClassGen,
    ProcessGroup,
    ReturnCode,
    Server,
    ServerList,
    StdinController,
    SubstrMatcher,
    any_failed,
    counter,
    forward_stdin_to,
    run_on_all,
)

ROOT = Path(__file__).resolve().parent.parent

# What `from distexprunner import *` gives (its __init__, utils.__all__, enums, outputs).
DISTEXPRUNNER_NAMES = {
    "ServerList", "Server", "reg_exp", "ParameterGrid", "Console", "File", "SubstrMatcher",
    "EnvParser", "CSVGenerator", "Action", "ReturnCode", "StdinController", "notification",
    "GDB", "SOCKET_BIND", "sleep", "forward_stdin_to", "counter", "log", "IterClassGen",
    "any_failed", "ProcessGroup", "run_on_all",
}  # fmt: skip


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


# --- the names ----------------------------------------------------------------------


def test_star_import_gives_every_distexprunner_name() -> None:
    namespace: dict[str, object] = {}
    exec("from shoal.runner import *", namespace)
    missing = DISTEXPRUNNER_NAMES - set(namespace)
    assert not missing, f"missing from shoal.runner: {sorted(missing)}"
    for method in ("wait", "kill", "stdin", "async_stdin", "signal", "async_signal", "pid"):
        assert hasattr(namespace["Command"], method), method


# --- pure classes ---------------------------------------------------------------------


def test_iter_class_gen_makes_and_keeps_instances() -> None:
    made = IterClassGen(dict, kind="x")
    first, second = next(made), next(made)
    first["n"] = 1
    assert len(made) == 2 and made[0] is first and made[1] is second
    assert list(made) == [{"kind": "x", "n": 1}, {"kind": "x"}]


def test_counter() -> None:
    c = counter()
    assert [next(c), next(c), next(c)] == [0, 1, 2]
    assert [next(counter(10, 5)) for _ in range(2)] == [10, 10]
    c = counter(10, 5)
    assert [next(c), next(c)] == [10, 15]


def test_gdb_and_socket_bind_are_the_prefixes_distexprunner_gave() -> None:
    assert GDB == "gdb -quiet --ex run --args"
    assert SOCKET_BIND(0) == "numactl --cpunodebind=0 --membind=0"
    assert f"{SOCKET_BIND(1)} ./bench" == "numactl --cpunodebind=1 --membind=1 ./bench"


def test_csv_generator_columns() -> None:
    csvs = IterClassGen(
        CSVGenerator,
        [r"value=(?P<value>\d+)", CSVGenerator.Array(r"other=(?P<other>\d+)")],
        CSVGenerator.Sum(r"other=(?P<total>\d+)"),
        CSVGenerator.Mean(r"other=(?P<mean>\d+)"),
        CSVGenerator.Min(r"other=(?P<low>\d+)"),
        CSVGenerator.Max(r"other=(?P<high>\d+)"),
        CSVGenerator.Percentile(r"other=(?P<p100>\d+)", 1),
        CSVGenerator.Optional(r"never=(?P<never>\d+)"),
        CSVGenerator.SortedArray(r"t(?P<i>\d+)=(?P<by_thread>\w+)"),
        CSVGenerator.GroupedArray(r"(?P<key>[ab]):(?P<grouped>\d+)"),
        run="r1",
    )
    csv = next(csvs)
    for i in range(1, 4):
        csv(f"value={i},other={i * 2}\n")
    for line in ["t2=b\n", "t0=z\n", "t1=a\n", "a:1\n", "b:2\n", "nothing here\n"]:
        csv(line)
    assert csv.header == ("run,value,other,total,mean,low,high,p100,never,by_thread,grouped")
    assert csv.row == "r1,3,2|4|6,12,4.0,2,6,6,,z|a|b,a~1|b~2"
    # IterClassGen's generators share one list of columns: each still counts for itself.
    fresh = next(csvs)
    fresh("value=9,other=1\n")
    assert fresh.as_dict["other"] == "1" and fresh.as_dict["total"] == "1"


def test_csv_generator_write_and_errors(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    for n in (1, 2):
        csv = CSVGenerator(r"n=(?P<n>\d+)", threads=n * 4)
        csv(f"n={n}\n")
        csv.write(str(tmp_path), "out.csv")
    assert target.read_text() == "threads,n\n4,1\n8,2\n"
    empty = CSVGenerator(r"n=(?P<n>\d+)")
    with pytest.raises(ValueError, match="no value for column"):
        empty.write(tmp_path / "never.csv")
    assert not (tmp_path / "never.csv").exists()
    with pytest.raises(ValueError, match="already in the header"):
        CSVGenerator(r"(?P<x>\d)", CSVGenerator.Array(r"(?P<x>\d)"))
    with pytest.raises(ValueError, match=r"\(\?P<i>"):
        CSVGenerator.SortedArray(r"(?P<v>\d)")
    with pytest.raises(ValueError, match="between 0 and 1"):
        CSVGenerator.Percentile(r"(?P<v>\d)", 50)
    bad = CSVGenerator(CSVGenerator.Sum(r"v=(?P<v>\S+)"))
    bad("v=abc\n")
    with pytest.raises(ValueError, match="'abc' is not a number"):
        _ = bad.row


def test_handlers_called_directly_write_what_distexprunner_wrote(tmp_path, capsys) -> None:
    out = File(tmp_path, "sub", "log.txt")  # File(fileBase, *fileParts)
    out("a line\n")
    out("no newline")
    out.flush()
    assert (tmp_path / "sub" / "log.txt").read_text() == "a line\nno newline"
    again = File(tmp_path / "sub" / "log.txt", append=True)
    again("\nmore\n")
    again.flush()
    assert (tmp_path / "sub" / "log.txt").read_text() == "a line\nno newline\nmore\n"
    Console(fmt="[%s]")("trailing spaces  \n")
    assert capsys.readouterr().out == "[trailing spaces]\n"
    matcher = SubstrMatcher("ready")
    matcher("ready\n")
    assert matcher.matched() and matcher.wait() is True and matcher.line == "ready\n"
    matcher.reset()
    assert not matcher.matched() and matcher.wait(0) is False


def test_env_parser() -> None:
    env = EnvParser()
    for line in ["HOME=/root\n", "OPTS=a=b  \n", "() {  echo continued\n", "}\n"]:
        env(line)
    assert env["HOME"] == "/root" and env.HOME == "/root"
    assert env["OPTS"] == "a=b"  # split at the first '=', trailing space dropped
    assert "HOME" in env and "}" not in env
    with pytest.raises(KeyError):
        env["MISSING"]


def test_server_list_from_iterables() -> None:
    a, b, c = (Server(n, ip) for n, ip in [("a", "10.0.0.1"), ("b", "10.0.0.1"), ("c", "10.0.0.2")])
    assert ServerList([a, b, c]).ids == ["a", "b", "c"]
    assert ServerList(s for s in (a, b)).ids == ["a", "b"]
    assert ServerList(a, [b, (c,)]).ids == ["a", "b", "c"]
    both = ServerList(ServerList(a, b), c)
    assert both.ids == ["a", "b", "c"] and isinstance(both[0:2], ServerList)
    assert both.unique_by_ip.ids == ["a", "c"]
    assert both[lambda s: s.ip == "10.0.0.2"].ids == ["c"]
    with pytest.raises(TypeError, match="Servers or iterables of them"):
        ServerList([a, "b"])
    with pytest.raises(ValueError, match="unique"):
        ServerList([a], a)


def test_server_attributes_cannot_replace_its_own() -> None:
    assert Server("n", "1.2.3.4", rack=3).rack == 3
    with pytest.raises(ValueError, match=r"would replace Server\.run_cmd"):
        Server("n", "1.2.3.4", run_cmd=None)
    with pytest.raises(ValueError, match="reserved"):
        Server("n", "1.2.3.4", _secret=1)


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
