"""distexprunner's classes used without a cluster, as distexprunner's users use them.

What ``from shoal.runner import *`` gives, and the classes that need no command
to run: IterClassGen, counter, the GDB and SOCKET_BIND prefixes, CSVGenerator,
the output handlers, EnvParser, Server and ServerList. Commands on a real local
cluster are in test_runner_fidelity.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from shoal.runner import (
    GDB,
    SOCKET_BIND,
    Console,
    CSVGenerator,
    EnvParser,
    File,
    IterClassGen,
    Server,
    ServerList,
    SubstrMatcher,
    counter,
)

# What `from distexprunner import *` gives (its __init__, utils.__all__, enums, outputs).
DISTEXPRUNNER_NAMES = {
    "ServerList", "Server", "reg_exp", "ParameterGrid", "Console", "File", "SubstrMatcher",
    "EnvParser", "CSVGenerator", "Action", "ReturnCode", "StdinController", "notification",
    "GDB", "SOCKET_BIND", "sleep", "forward_stdin_to", "counter", "log", "IterClassGen",
    "any_failed", "ProcessGroup", "run_on_all",
}  # fmt: skip


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
