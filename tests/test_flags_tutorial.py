"""The seed's flags tutorial, ported, gives the seed's results."""

from __future__ import annotations

import subprocess
import sys

import pytest

from flags_experiment import EXAMPLE, SERVER_VALUES, run_flags_experiment
from shoal import ExperimentStatus, FlagValues, LocalCluster, RemoteClient


@pytest.mark.timeout(120)
def test_example_script_runs_on_the_embedded_default(tmp_path) -> None:
    """What the README's first command runs: the example, with its own local cluster."""
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "[snl-server-5]" in out
    assert "ExperimentStatus.READY" in out and "ExperimentStatus.FINISHED" in out
    assert "[<Success: {'text_value': 'stage 1', 'int_value': 3}>]" in out
    assert "[<Success: text_value='stage 2' int_value=0>]" in out
    assert out.rstrip().endswith("FlagValues(text_value='stage 2', int_value=0)")


@pytest.mark.timeout(90)
def test_server_steps_and_final_flag(client: RemoteClient) -> None:
    values = run_flags_experiment(client, "flags-experiment-1")
    assert values == SERVER_VALUES
    assert client.get_flag_values("flags-experiment-1", "clients_control") == FlagValues(
        text_value="stage 2", int_value=0
    )
    # every client's pipeline went through both barriers too
    info = client.get_experiment_status("flags-experiment-1")
    for result in info.execution_result:
        assert result.result.is_success, result


@pytest.mark.timeout(120)
def test_repeated_runs_are_deterministic(client: RemoteClient) -> None:
    """Fast nodes must not miss a barrier value another node already moved on from."""
    for i in range(5):
        assert run_flags_experiment(client, f"repeat-{i}") == SERVER_VALUES


@pytest.mark.timeout(60)
def test_experiment_repr_matches_the_seed(client: RemoteClient) -> None:
    from flags_experiment import load_example
    from shoal import Experiment

    example = load_example()
    nodes = client.get_nodes()
    experiment = (
        Experiment()
        .map(example.server_pipeline, nodes.filter(lambda n: n.name.startswith("snl")).take(1))
        .map(example.clients_pipeline, nodes.filter(lambda n: n.name.startswith("raspi")))
    )
    lines = repr(experiment).splitlines()
    assert lines[0] == " - Deployment: Node=snl-server-5, executor_id=, prepared=False"
    assert len(lines) == 4
    client.prepare_experiment(experiment, "repr-check")
    info = client.wait("repr-check", until="ready")
    assert info.status is ExperimentStatus.READY
    text = repr(info)
    assert text.startswith("ExperimentExecutionInformation:\nstatus: ExperimentStatus.READY\n")
    assert "prepared=True" in text and text.endswith("execution_result:\nNone")
    client.cancel_experiment("repr-check")


def test_cluster_client_helper_reads_dotenv(tmp_path, monkeypatch, seed_cluster: LocalCluster):
    """RemoteClient() with no arguments finds the controller through a .env file."""
    (tmp_path / ".env").write_text(
        f"SHOAL_ENDPOINT={seed_cluster.endpoint}\nSHOAL_LOGIN={seed_cluster.login}\n"
        f"SHOAL_PASSWORD={seed_cluster.password}\n"
    )
    monkeypatch.chdir(tmp_path)
    with RemoteClient() as c:
        assert c.healthcheck()
        assert len(c.get_nodes()) == 4
