"""The seed notebook (shared/seeds/000_b28f24495c058b24.txt) as a script, for netUnicorn's client.

Run by tests/test_netunicorn.py with a venv that has only the netUnicorn
packages (not shoal) and NETUNICORN_ENDPOINT pointing at a shoal controller.
The notebook's cells are unchanged, in order; where its reader waited by hand
(between In [12] and In [14], and before In [16]) the script polls the
client's status call, bounded in time, because netUnicorn's client has no
wait. Cells that only displayed a value print it. The last line is a JSON
summary the test reads.
"""

import json
import os
import time

from netunicorn.base import Experiment, Pipeline
from netunicorn.base.experiment import ExperimentStatus
from netunicorn.client import RemoteClient
from netunicorn.library.tasks.flags import (
    AtomicDecrementFlagTask,
    AtomicIncrementFlagTask,
    FlagValues,
    GetFlagTask,
    SetFlagTask,
    WaitForExactFlagResultTask,
)

WAIT_S = float(os.environ.get("SEED_WAIT_S", "90"))


def wait_for_status(client, name, status):
    """Poll the status (netUnicorn's client has no wait call) until ``status``, bounded."""
    deadline = time.monotonic() + WAIT_S
    while True:
        info = client.get_experiment_status(name)
        if info.status == status:
            return info
        if info.status == ExperimentStatus.FINISHED or time.monotonic() > deadline:
            raise SystemExit(f"{name} did not reach {status} in {WAIT_S} s:\n{info}")
        time.sleep(0.05)


# In [2]: how many clients we will have
clients_count = 3
if os.environ.get("NETUNICORN_ENDPOINT", "http://localhost:26611") == "http://localhost:26611":
    clients_count = 1

# In [3]
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
            "clients_control",
            flag_values=FlagValues(text_value="stage 2", int_value=clients_count),
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

# In [4]: if you have .env file locally for storing credentials
if ".env" in os.listdir():
    from dotenv import load_dotenv

    load_dotenv(".env")

endpoint = os.environ.get("NETUNICORN_ENDPOINT") or "http://localhost:26611"
login = os.environ.get("NETUNICORN_LOGIN") or "test"
password = os.environ.get("NETUNICORN_PASSWORD") or "test"

# In [5]
client = RemoteClient(endpoint=endpoint, login=login, password=password)
print(client.healthcheck())

# In [6]
nodes = client.get_nodes()

# In [7]
client_nodes = nodes.filter(lambda node: node.name.startswith("raspi")).take(clients_count)
server_node = nodes.filter(lambda node: node.name.startswith("snl-server")).take(1)

if os.environ.get("NETUNICORN_ENDPOINT", "http://localhost:26611") == "http://localhost:26611":
    client_nodes = nodes.take(1)
    server_node = nodes.take(1)

# In [8]
print(client_nodes)
print(server_node)

# In [9]
experiment = Experiment().map(server_pipeline, server_node).map(clients_pipeline, client_nodes)
print(experiment)

# In [10]
experiment_name = "flags-experiment-1"

# In [11]
if experiment_name in client.get_experiments():
    client.delete_experiment(experiment_name)

# In [12]
print(client.prepare_experiment(experiment, experiment_name))

# (the reader waited here until the experiment was READY)
wait_for_status(client, experiment_name, ExperimentStatus.READY)

# In [14]
print(client.get_experiment_status(experiment_name))

# In [15]
started = time.perf_counter()
print(client.start_execution(experiment_name))

# (the reader waited here until the experiment was FINISHED)
wait_for_status(client, experiment_name, ExperimentStatus.FINISHED)
wall = time.perf_counter() - started

# In [16]
result = client.get_experiment_status(experiment_name)

# In [17]
print(result)

# In [18]
flag = client.get_flag_values(experiment_name, "clients_control")
print(flag)

# ---- what the test checks
outcomes = {}
for deployment_result in result.execution_result:
    outcome, _log = deployment_result.result
    outcomes[deployment_result.node.name] = {
        "success": type(outcome).__name__ == "Success",
        "steps": [repr(values[0].unwrap()) for values in outcome.unwrap().values()]
        if type(outcome).__name__ == "Success"
        else repr(outcome),
        "error": deployment_result.error,
    }
summary = {
    "status": result.status.name,
    "executors": [d.executor_id for d in result.experiment],
    "prepared": [d.prepared for d in result.experiment],
    "outcomes": outcomes,
    "flag": repr(flag),
    "start_to_finished_s": wall,
}
print("SEED-SUMMARY " + json.dumps(summary))
