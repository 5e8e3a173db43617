"""Flags: synchronising pipelines on different nodes (netUnicorn's flags tutorial on shoal).

Run it with ``python examples/pipelines/flags.py``: with no ``SHOAL_ENDPOINT``
it starts a local cluster with the seed's four nodes; with ``SHOAL_ENDPOINT``
(and ``SHOAL_LOGIN``/``SHOAL_PASSWORD``) it runs on that controller's nodes.
"""

import contextlib
import os

from shoal import Experiment, Pipeline, RemoteClient, local_cluster
from shoal.library.flags import (
    AtomicDecrementFlagTask,
    AtomicIncrementFlagTask,
    FlagValues,
    GetFlagTask,
    SetFlagTask,
    WaitForExactFlagResultTask,
)

# how many clients we will have
clients_count = int(os.environ.get("CLIENTS_COUNT", "3"))

server_pipeline = (
    Pipeline()
    .then(SetFlagTask("clients_control", flag_values=FlagValues(text_value="stage 1", int_value=0)))
    .then(
        WaitForExactFlagResultTask(
            flag_name="clients_control",
            values=FlagValues(text_value="stage 1", int_value=clients_count),
        )
    )
    .then(
        SetFlagTask(
            "clients_control", flag_values=FlagValues(text_value="stage 2", int_value=clients_count)
        )
    )
    .then(
        WaitForExactFlagResultTask(
            flag_name="clients_control", values=FlagValues(text_value="stage 2", int_value=0)
        )
    )
    .then(GetFlagTask("clients_control"))
)

clients_pipeline = (
    Pipeline()
    .then(
        WaitForExactFlagResultTask(
            flag_name="clients_control", values=FlagValues(text_value="stage 1", int_value=0)
        )
    )
    .then(AtomicIncrementFlagTask("clients_control"))
    .then(
        WaitForExactFlagResultTask(
            flag_name="clients_control",
            values=FlagValues(text_value="stage 2", int_value=clients_count),
        )
    )
    .then(AtomicDecrementFlagTask("clients_control"))
    .then(GetFlagTask("clients_control"))
)

SEED_NODES = [
    "snl-server-5",
    "raspi-e4:5f:01:56:d8:cd",
    "raspi-e4:5f:01:9b:85:9c",
    "raspi-e4:5f:01:75:6b:2c",
]


def connect(stack: contextlib.ExitStack) -> RemoteClient:
    """The configured controller if there is one, else a local cluster of the seed's nodes."""
    if os.environ.get("SHOAL_ENDPOINT"):
        return stack.enter_context(RemoteClient())
    nodes = [SEED_NODES[0], *(f"raspi-{i}" for i in range(clients_count))]
    if clients_count == 3:
        nodes = SEED_NODES
    return stack.enter_context(local_cluster(nodes=nodes))


def main() -> None:
    with contextlib.ExitStack() as stack:
        client = connect(stack)
        print(client.healthcheck())

        nodes = client.get_nodes()
        client_nodes = nodes.filter(lambda node: node.name.startswith("raspi")).take(clients_count)
        server_node = nodes.filter(lambda node: node.name.startswith("snl-server")).take(1)
        print(client_nodes)
        print(server_node)

        experiment = (
            Experiment().map(server_pipeline, server_node).map(clients_pipeline, client_nodes)
        )
        print(experiment)

        experiment_name = "flags-experiment-1"
        if experiment_name in client.get_experiments():
            client.delete_experiment(experiment_name)

        print(client.prepare_experiment(experiment, experiment_name))
        # The notebook's reader waited by hand until READY; wait() blocks until then.
        print(client.wait(experiment_name, until="ready"))

        print(client.start_execution(experiment_name))
        result = client.wait(experiment_name, timeout=120)
        print(result)

        # a notebook shows the repr of the last expression
        print(repr(client.get_flag_values(experiment_name, "clients_control")))


if __name__ == "__main__":
    main()
