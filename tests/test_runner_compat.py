"""distexprunner code that reached past the star import or leaned on its exact
behaviour: `cd`, the root logger, submodule imports, signal names, keyword
names, ``ParameterGrid.get``, ``File.file``, handler iterables, raise_on_rc
for commands nobody waits for, user-written CSV columns, the star import's
extra names and older upstream's ``Console``/``ServerList`` names."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner_helpers import env_for, run_inline, shoal_exp
from shoal import LocalCluster
from shoal.runner import (
    Action,
    BadReturnCode,
    Console,
    CSVGenerator,
    File,
    IterClassGen,
    ParameterGrid,
    ProcessGroup,
    Server,
    ServerList,
    SubstrMatcher,
    log,
    reg_exp,
    sleep,
)
from shoal.runner.command import signal_number
from shoal.runner.handlers import combine


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(["node01"]) as c:
        yield c


def pwd(server: Server) -> str:
    lines: list[str] = []
    assert server.run_cmd("pwd", stdout=lines.append).wait() == 0
    return os.path.realpath(lines[0].strip())


@pytest.mark.timeout(90)
def test_cd_replaces_expands_home_and_each_experiment_starts_in_its_lists_directory(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    sub = tmp_path / "sub"
    sub.mkdir()
    node = Server("node01", "127.0.0.1")
    seen: dict[str, str] = {}

    def first(servers: ServerList) -> None:
        s = servers[0]
        seen["start"] = pwd(s)
        s.cd(str(tmp_path))
        seen["cd"] = pwd(s)
        servers.cd()  # upstream's default: the home directory, `~` expanded on the node
        seen["home"] = pwd(s)

    def second(servers: ServerList) -> None:
        seen["second"] = pwd(servers[0])  # not where the first experiment left it

    assert run_inline(cluster, ServerList(node, working_directory=str(sub)), first)[0].error is None
    assert (
        run_inline(cluster, ServerList(node, working_directory=str(tmp_path)), second)[0].error
        is None
    )
    real = os.path.realpath
    assert seen == {
        "start": real(sub),
        "cd": real(tmp_path),
        "home": real(os.path.expanduser("~")),
        "second": real(tmp_path),
    }


@pytest.mark.timeout(90)
def test_an_experiments_own_logging_shows_at_vv_and_in_the_log_file_once(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    (tmp_path / "logs.py").write_text(
        "import logging\n"
        "from shoal.runner import *\n"
        "servers = ServerList([Server('node01', '127.0.0.1')])\n"
        "@reg_exp(servers=servers)\n"
        "def logs(servers):\n"
        "    logging.info('a line of the experiment itself')\n"
        "    log('a tagged line')\n"
    )
    done = shoal_exp(
        tmp_path, "-vv", "--log", "run.log", "logs.py", env={**env_for(cluster), "COLUMNS": "200"}
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("a line of the experiment itself") == 1, done.stderr
    assert done.stderr.count("a tagged line") == 1, done.stderr
    logged = (tmp_path / "run.log").read_text()
    assert "a line of the experiment itself" in logged and logged.count("a tagged line") == 1


def test_upstream_submodules_import_under_shoal_runner() -> None:
    from shoal.runner._exceptions import BadReturnCode
    from shoal.runner.enums import Action, ReturnCode
    from shoal.runner.outputs import LOG_LEVEL_CMD, CSVGenerator, File, SubstrMatcher
    from shoal.runner.parameter_grid import ComputedParam
    from shoal.runner.server_list import ServerList as Listed
    from shoal.runner.utils import ProcessGroup, any_failed, counter, run_on_all

    assert Listed is ServerList and LOG_LEVEL_CMD == 99 and ReturnCode.TIMEOUT and Action.RESTART
    for name in (BadReturnCode, CSVGenerator, File, SubstrMatcher, ComputedParam, ProcessGroup):
        assert isinstance(name, type)
    assert callable(any_failed) and callable(run_on_all) and next(counter(5)) == 5


def test_signals_by_name_as_kill_takes_them() -> None:
    assert signal_number("INT") == signal_number("SIGINT") == signal.SIGINT
    assert signal_number("sigusr1") == signal.SIGUSR1
    assert signal_number("9") == signal_number(9) == signal_number(signal.SIGKILL) == 9
    with pytest.raises(ValueError, match="no signal named 'SIGNOPE'"):
        signal_number("SIGNOPE")


def test_upstreams_keyword_names_grid_get_file_and_handler_iterables(tmp_path: Path) -> None:
    sleep(delay=0)
    log(message="keyword message")
    grid = ParameterGrid(a=[1, 2], b="x")
    assert list(grid.get()) == [({"a": 1, "b": "x"}, "a=1_b=x"), ({"a": 2, "b": "x"}, "a=2_b=x")]
    out = File(tmp_path, "out.txt")
    out.file.write("header\n")
    out("line\n")
    out.close()
    assert (tmp_path / "out.txt").read_text() == "header\nline\n"
    got: list[str] = []
    combine({got.append}, print)("from a set\n")
    combine((h for h in [got.append, got.append]), print)("twice\n")
    assert got == ["from a set\n", "twice\n", "twice\n"]
    with pytest.raises(TypeError, match="must be callable"):
        combine(["not callable"], print)  # type: ignore[list-item]


def test_a_server_lists_directory_waits_for_its_experiment() -> None:
    shared = Server("a", "1.1.1.1")
    ServerList(shared, working_directory="/data")
    assert shared.working_directory is None  # not moved at import time, for every file
    listed = ServerList(shared)
    listed.cd()
    assert shared.working_directory == "~/"
    shared.cd("/x")
    shared.cd("y")
    assert shared.working_directory == "y"  # replaces, as upstream's server did


@pytest.mark.timeout(90)
def test_experiments_of_one_name_in_two_files_keep_a_record_each(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    for stem in ("first", "second"):
        (tmp_path / f"{stem}.py").write_text(
            "from shoal.runner import *\n"
            "servers = ServerList([Server('node01', '127.0.0.1')])\n"
            "@reg_exp(servers=servers)\n"
            "def same_name(servers):\n"
            f"    servers[0].run_cmd('echo {stem}').wait()\n"
        )
    done = shoal_exp(tmp_path, "first.py", "second.py", env=env_for(cluster))
    assert done.returncode == 0, done.stderr
    with cluster.client() as client:
        for stem in ("first", "second"):
            [command] = client.raw_status(f"{stem}.same_name")["commands"]
            assert command["stdout"] == f"{stem}\n"


@pytest.mark.timeout(90)
def test_raise_on_rc_stops_at_a_failed_command_nobody_waited_for(cluster: LocalCluster) -> None:
    """distexprunner stopped the run on any non-zero code, at the experiment's next
    blocking call (here a sleep, a SubstrMatcher, another command's wait) or at
    its end at the latest."""
    servers = ServerList(Server("node01", "127.0.0.1"))
    reached: list[str] = []

    def during_sleep(servers: ServerList) -> None:
        servers[0].run_cmd("exit 3")
        sleep(60)  # cut short by the failure
        reached.append("sleep")

    def during_matcher_wait(servers: ServerList) -> None:
        ready = SubstrMatcher("listening")
        servers[0].run_cmd("echo starting; exit 5", stdout=ready)
        ready.wait()  # the line never comes: the failure ends the wait
        reached.append("matcher")

    def during_another_wait(servers: ServerList) -> None:
        servers[0].run_cmd("exit 6")
        servers[0].run_cmd("sleep 60").wait()  # cut short: the other command failed
        reached.append("wait")

    def at_the_end(servers: ServerList) -> None:
        # ended() waits without looking at failures: only the end of the experiment does.
        assert servers[0].run_cmd("exit 4").ended(timeout=30)

    started = time.monotonic()
    for func, cmd, code in (
        (during_sleep, "exit 3", 3),
        (during_matcher_wait, "echo starting; exit 5", 5),
        (during_another_wait, "exit 6", 6),
        (at_the_end, "exit 4", 4),
    ):
        [outcome] = run_inline(cluster, servers, func)
        assert outcome.status == "failed", func.__name__
        assert f"BadReturnCode: node01: {cmd!r} returned {code}" in (outcome.error or "")
        assert "busy elsewhere: raise_on_rc=True stops it" in (outcome.error or "")
    assert reached == []
    assert time.monotonic() - started < 50  # no sleep 60 ran out


@pytest.mark.timeout(90)
def test_killed_signalled_and_already_reported_commands_do_not_stop_it(
    cluster: LocalCluster,
) -> None:
    servers = ServerList(Server("node01", "127.0.0.1"))
    reached: list[str] = []

    def ended_on_purpose(servers: ServerList) -> None:
        s = servers[0]
        assert s.run_cmd("sleep 30").kill() not in (0, None)
        signalled = s.run_cmd("sleep 30")
        signalled.signal("TERM")
        assert signalled.ended(timeout=30)
        with contextlib.suppress(BadReturnCode):
            s.run_cmd("exit 2").wait()  # seen once by the user: not raised again later
        sleep(0.3)
        assert s.run_cmd("true").wait() == 0
        reached.append("end")

    def lenient(servers: ServerList) -> None:
        assert servers[0].run_cmd("exit 3").ended(timeout=30)
        sleep(0.3)
        reached.append("lenient")

    [outcome] = run_inline(cluster, servers, ended_on_purpose)
    assert outcome.status == "finished", outcome.error
    [outcome] = run_inline(cluster, servers, lenient, raise_on_rc=False)
    assert outcome.status == "finished", outcome.error
    assert reached == ["end", "lenient"]


class _Histogram:
    """A user-written column, as distexprunner allowed: keys(), search(line), cols()."""

    def __init__(self, regex: str) -> None:
        self.regex = re.compile(regex)
        self.counts: dict[str, int] = {}

    def keys(self) -> list[str]:
        return ["histogram"]

    def search(self, line: str) -> None:
        match = self.regex.search(line)
        if match:
            self.counts[match["v"]] = self.counts.get(match["v"], 0) + 1

    def cols(self) -> Iterator[tuple[str, object]]:
        yield "histogram", "|".join(f"{k}:{n}" for k, n in sorted(self.counts.items()))


def test_csv_generator_takes_any_column_with_upstreams_three_methods(tmp_path: Path) -> None:
    csvs = IterClassGen(CSVGenerator, [_Histogram(r"v=(?P<v>\w+)"), r"n=(?P<n>\d+)"], run=1)
    first, second = next(csvs), next(csvs)  # each with its own copy of the column
    for line in ("v=a\n", "v=b\n", "v=a n=7\n"):
        first(line)
    second("v=c n=2\n")
    assert first.header == "run,histogram,n"
    assert [csv.row for csv in csvs] == ["1,a:2|b:1,7", "1,c:1,2"]
    first.write(tmp_path, "out.csv")
    assert (tmp_path / "out.csv").read_text() == "run,histogram,n\n1,a:2|b:1,7\n"
    with pytest.raises(TypeError, match=r"object at .* has no keys\(\), search\(\), cols\(\)"):
        CSVGenerator(object())


def test_star_import_binds_enum_and_upstreams_submodules() -> None:
    scope: dict[str, object] = {}
    exec(
        "from shoal.runner import *\n"
        "class Mode(Enum):\n"
        "    FAST = 1\n"
        "level = outputs.LOG_LEVEL_CMD\n",
        scope,
    )
    assert scope["level"] == 99 and scope["Mode"].FAST.value == 1  # type: ignore[attr-defined]
    assert scope["utils"].ProcessGroup is ProcessGroup  # type: ignore[attr-defined]
    assert scope["enums"].Action is Action and scope["server_list"].ServerList is ServerList  # type: ignore[attr-defined]
    assert scope["parameter_grid"].ParameterGrid is ParameterGrid  # type: ignore[attr-defined]
    assert scope["server"].Server is Server and scope["registry"].reg_exp is reg_exp  # type: ignore[attr-defined]
    # No submodule took the place of an API name.
    assert scope["sleep"] is sleep and scope["Server"] is Server and scope["reg_exp"] is reg_exp


def test_older_upstream_console_and_server_list_names(capsys: pytest.CaptureFixture[str]) -> None:
    Console(fmt="a: %s", rstrip=False, end="")("kept  \n")
    Console("b: %s", rstrip=True, end="\n")("stripped  \n")
    Console("c: %s", end=" <")("ended\n")
    assert capsys.readouterr().out == "a: kept  \nb: stripped\nc: ended <\n"
    listed = ServerList(Server("node01", "127.0.0.1"))
    listed.connect_to_all()  # shoal connects by itself: nothing to do, nothing fails
    listed.disconnect_from_all()
