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


def say(text: str) -> None:
    """What the next lines show, in words (the lines after it are the seed's reprs)."""
    print(f"\n== {text}")


def main() -> None:
    with contextlib.ExitStack() as stack:
        client = connect(stack)
        say("Is the controller up? (True: it answers)")
        print(client.healthcheck())

        nodes = client.get_nodes()
        client_nodes = nodes.filter(lambda node: node.name.startswith("raspi")).take(clients_count)
        server_node = nodes.filter(lambda node: node.name.startswith("snl-server")).take(1)
        say(f"The {len(client_nodes)} client nodes and the 1 server node the pipelines go to:")
        print(client_nodes)
        print(server_node)

        experiment = (
            Experiment().map(server_pipeline, server_node).map(clients_pipeline, client_nodes)
        )
        say(
            "The experiment: the server pipeline on the server, the clients' pipeline on each "
            "client (an executor id is given once it is prepared):"
        )
        print(experiment)

        experiment_name = "flags-experiment-1"
        if experiment_name in client.get_experiments():
            client.delete_experiment(experiment_name)

        say(f"Shipping the pipelines to the nodes as experiment {experiment_name!r}...")
        print(client.prepare_experiment(experiment, experiment_name))
        # The notebook's reader waited by hand until READY; wait() blocks until then.
        say("Every node has loaded its pipeline: the experiment is READY")
        print(client.wait(experiment_name, until="ready"))

        say("Starting it: the server opens stage 1, each client counts itself in, ...")
        print(client.start_execution(experiment_name))
        result = client.wait(experiment_name, timeout=120)
        say(
            f"It ended {result.status.name}. Per node, each step's result: the server saw all "
            f"{clients_count} clients arrive (stage 1), opened stage 2, and saw every client "
            "leave (int_value back to 0):"
        )
        print(result)

        say(
            "The flag 'clients_control' at the end: stage 2, no client left inside. "
            f"`shoal show {experiment_name}` prints the whole record."
        )
        # a notebook shows the repr of the last expression
        print(repr(client.get_flag_values(experiment_name, "clients_control")))


if __name__ == "__main__":
    main()
