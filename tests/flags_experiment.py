"""Helpers to run the seed's flags experiment and read its results back."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from shoal import Experiment, ExperimentStatus, FlagValues, RemoteClient

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "pipelines" / "flags.py"

SERVER_VALUES = [
    None,  # SetFlagTask returns nothing, as netunicorn-library's does
    {"text_value": "stage 1", "int_value": 3},
    None,
    {"text_value": "stage 2", "int_value": 0},
    FlagValues(text_value="stage 2", int_value=0),
]


def load_example(clients_count: int = 3) -> ModuleType:
    """Import examples/pipelines/flags.py (its pipelines depend on CLIENTS_COUNT)."""
    import os

    old = os.environ.get("CLIENTS_COUNT")
    os.environ["CLIENTS_COUNT"] = str(clients_count)
    try:
        spec = importlib.util.spec_from_file_location(f"flags_example_{clients_count}", EXAMPLE)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        if old is None:
            os.environ.pop("CLIENTS_COUNT", None)
        else:
            os.environ["CLIENTS_COUNT"] = old


def run_flags_experiment(
    client: RemoteClient, name: str, clients_count: int = 3, timeout: float = 60
) -> list:
    """Prepare, start and wait for the flags experiment; return the server's step values."""
    example = load_example(clients_count)
    nodes = client.get_nodes()
    client_nodes = nodes.filter(lambda n: n.name.startswith("raspi")).take(clients_count)
    server_node = nodes.filter(lambda n: n.name.startswith("snl-server")).take(1)
    experiment = (
        Experiment()
        .map(example.server_pipeline, server_node)
        .map(example.clients_pipeline, client_nodes)
    )
    if name in client.get_experiments():
        client.delete_experiment(name)
    assert client.prepare_experiment(experiment, name) == name
    ready = client.wait(name, timeout=timeout, until="ready")
    assert ready.status is ExperimentStatus.READY, ready
    assert client.start_execution(name) == name
    info = client.wait(name, timeout=timeout)
    assert info.status is ExperimentStatus.FINISHED, info
    server = next(r for r in info.execution_result if r.node.name.startswith("snl-server"))
    assert server.result is not None and server.result.is_success, server
    return [results[0].unwrap() for results in server.result.unwrap().values()]
