"""distexprunner code that reached past the star import or leaned on its exact
behaviour: `cd`, the root logger, submodule imports, signal names, keyword
names, ``ParameterGrid.get``, ``File.file`` and handler iterables."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner_helpers import env_for, run_inline, shoal_exp
from shoal import LocalCluster
from shoal.runner import File, ParameterGrid, Server, ServerList, log, sleep
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
