"""The FISSION tutorial's demo network, versions 1 to 4, simulated on 3 local agents."""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path

import psutil
import pytest

from dataflow_helpers import SHOAL, copy_network, cubes_in_blocks, env, rows
from waiting import wait_until

ROUNDS = 15
# A Ctrl-C'd simulation stops its agents (5 s grace each) and its controller.
STOPS_WITHIN = 45


def simulate(network: Path, rounds: int = ROUNDS) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [*SHOAL, "dataflow", str(network), "simulate", "--rounds", str(rounds)],
        capture_output=True,
        text=True,
        timeout=100,
        env=env(),
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert "network finished" in done.stderr
    return done


def reduce_sums(log: Path) -> list[int]:
    return [int(m) for m in re.findall(r"Sum over \[[^\]]*\] is (\d+)", log.read_text())]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("version", ["demo_network_v1", "demo_network_v2"])
def test_versions_1_and_2_join_and_reduce(tmp_path: Path, version: str) -> None:
    network = copy_network(tmp_path, version)
    stale = network / "simulation" / "old.txt"
    stale.parent.mkdir()
    stale.write_text("from an earlier run")
    done = simulate(network)
    assert not stale.exists(), "simulation/ is cleared before each simulation"
    output = network / "simulation"
    joins = re.findall(r"^4 -> (\d+)$", (output / "4" / "output.log").read_text(), re.M)
    assert [int(j) for j in joins] == [n**3 for n in range(1, ROUNDS + 1)]
    assert reduce_sums(output / "5" / "output.log") == cubes_in_blocks(ROUNDS)
    # The prints reach the user's console, labelled with the job.
    assert "[5 ReduceJob@" in done.stdout
    assert (output / "1" / "info.txt").exists()


@pytest.mark.timeout(120)
def test_version_3_writes_join_and_reduce_csv_on_the_client(tmp_path: Path) -> None:
    network = copy_network(tmp_path, "demo_network_v3")
    simulate(network)
    join = rows(network / "simulation" / "6" / "join.csv")
    assert join[0] == ["pipe_201", "pipe_202", "pipe_203", "pipe_205"]
    assert join[1:] == [[str(n)] * 3 + [str(n**3)] for n in range(1, ROUNDS + 1)]
    reduce = rows(network / "simulation" / "7" / "reduce.csv")
    assert reduce == [["pipe_301"], *([str(s)] for s in cubes_in_blocks(ROUNDS))]


def expected(operator: str, a: int, b: int, c: int) -> str:
    if operator == "+":
        return str(a + b + c)
    if operator == "*":
        return str(a * b * c)
    return "error"


@pytest.mark.timeout(120)
def test_version_4_operator_typed_in_changes_the_join(tmp_path: Path) -> None:
    network = copy_network(tmp_path, "demo_network_v4")
    join_csv = network / "simulation" / "7" / "join.csv"
    proc = subprocess.Popen(
        [*SHOAL, "dataflow", str(network), "simulate"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env(period=0.05),
    )
    assert proc.stdin is not None
    try:
        wait_until(lambda: len(rows(join_csv)) > 4, 60, "rows with the default operator")
        proc.stdin.write("*\n")
        proc.stdin.flush()
        wait_until(lambda: any(r[4] == "*" for r in rows(join_csv)[1:]), 30, "a '*' row")
        proc.stdin.write("x\n")  # not an operator: the join answers "error" and goes on
        proc.stdin.flush()
        wait_until(lambda: any(r[4] == "x" for r in rows(join_csv)[1:]), 30, "an 'x' row")
        seen = len(rows(join_csv))
        wait_until(lambda: len(rows(join_csv)) > seen + 5, 30, "rows after the mistake")
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert "stopping (Ctrl-C)" in stderr
    table = rows(join_csv)
    assert table[0] == ["pipe_201", "pipe_202", "pipe_203", "pipe_204", "pipe_205"]
    operators = [r[4] for r in table[1:]]
    # The operator changes from one round on and stays: + ... + * ... * x ... x
    assert operators == sorted(operators, key="+*x".index)
    assert {"+", "*", "x"} <= set(operators)
    for n, (a, b, c, result, operator) in enumerate(table[1:]):
        assert (int(a), int(b), int(c)) == (1 + n, 20 + 2 * n, 1 - n)
        assert result == expected(operator, int(a), int(b), int(c)), table[n + 1]
    # The reduce sums blocks of 5 join results, leaving out the "error" strings.
    results = [r[3] for r in table[1:]]
    sums = [int(r[0]) for r in rows(network / "simulation" / "8" / "reduce.csv")[1:]]
    assert sums, "reduce.csv has rows"
    for k, total in enumerate(sums):
        block = results[5 * k : 5 * k + 5]
        if len(block) == 5:
            assert total == sum(int(v) for v in block if v != "error")


@pytest.mark.timeout(120)
def test_sensor_alarms_heads_travel_and_finish_ends_the_network(tmp_path: Path) -> None:
    network = copy_network(tmp_path, "sensor_alarms")
    done = subprocess.run(  # no --rounds: the sensor's finish() ends the run
        [*SHOAL, "dataflow", str(network), "simulate"],
        capture_output=True,
        text=True,
        timeout=100,
        env=env(),
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    readings = [3, 8, 1, 12, 7, 15, 2, 9, 11, 4, 13, 6]
    table = rows(network / "simulation" / "5" / "alarms.csv")
    assert table[0] == ["pipe_4", "pipe_5"]
    assert table[1:] == [[str(v * 10), str(int(v > 10))] for v in readings]
    assert "alarm 4: 130" in done.stdout


@pytest.mark.timeout(240)
def test_ctrl_c_ends_a_simulate_whose_pipe_holds_for_a_stopped_controller(
    tmp_path: Path,
) -> None:
    """The controller dies mid-run; the interactive job's pipe, opened only at its
    first line, cannot get a grant and holds its value (the controller might come
    back); its job then ends (stdin closed) and waits for that grant. Ctrl-C must
    still end the simulation promptly: a stopping run holds nothing."""
    network = copy_network(tmp_path, "demo_network_v4")
    join_csv = network / "simulation" / "7" / "join.csv"
    log = tmp_path / "stderr.txt"  # a file: the retries while the controller is away fill a pipe
    with log.open("w") as stderr_file:
        proc = subprocess.Popen(
            [*SHOAL, "dataflow", str(network), "simulate"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=stderr_file,
            text=True,
            env=env(period=0.05),
        )
    assert proc.stdin is not None
    try:
        wait_until(lambda: len(rows(join_csv)) > 2, 90, "rows before the controller dies")
        controllers = [
            child
            for child in psutil.Process(proc.pid).children()
            if "controller" in child.cmdline()
        ]
        assert len(controllers) == 1, controllers
        controllers[0].kill()  # simulate reaps it only when it stops
        proc.stdin.write("*\n")  # no grant for the operator's pipe now: it holds
        proc.stdin.close()  # the interactive job ends, its pipe still holding
        seen = len(rows(join_csv))
        # The rest of the network goes on: its channels do not need the controller.
        wait_until(lambda: len(rows(join_csv)) > seen + 3, 30, "rows after the controller died")
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            proc.wait(timeout=STOPS_WITHIN)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            stderr = log.read_text()
            pytest.fail(
                f"simulate did not end within {STOPS_WITHIN} s of Ctrl-C:\n{stderr[-4000:]}"
            )
    stderr = log.read_text()
    assert proc.returncode == 0, stderr
    assert "stopping (Ctrl-C)" in stderr
    assert not any(r[4] == "*" for r in rows(join_csv)[1:]), "the held value got through"
