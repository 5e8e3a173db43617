"""Scenarios for netUnicorn's own client against shoal: ``python netunicorn_scenarios.py NAME``.

Run by tests/test_netunicorn.py with the netUnicorn-only venv, NETUNICORN_ENDPOINT
set to shoal, and NETUNICORN_LOGIN/NETUNICORN_PASSWORD (OTHER_LOGIN/OTHER_PASSWORD
for a second user). Each scenario records what it saw and prints it as one
``RESULT {json}`` line; the test makes the assertions. netUnicorn's client has
no wait call, so waiting is a poll of its status call, bounded in time.
"""

import json
import os
import sys
import time
from pathlib import Path

from netunicorn.base import DockerImage, Experiment, Pipeline, ShellExecution, Task
from netunicorn.base.environment_definitions import RuntimeContext
from netunicorn.base.experiment import ExperimentStatus
from netunicorn.base.types import FlagValues
from netunicorn.client import RemoteClient
from netunicorn.client.remote import RemoteClientException

WAIT_S = 60.0
ENDPOINT = os.environ["NETUNICORN_ENDPOINT"]


class Sleep(Task):
    """Sleeps, then returns how long (pickled by value: it lives in __main__)."""

    def __init__(self, seconds):
        self.seconds = seconds
        super().__init__()

    def run(self):
        import time

        time.sleep(self.seconds)
        return self.seconds


class Environment(Task):
    """Returns the executor's view of its environment."""

    def run(self):
        import os

        return {
            key: os.environ.get(key)
            for key in (
                "GREETING",
                "NETUNICORN_GATEWAY_ENDPOINT",
                "NETUNICORN_EXPERIMENT_ID",
                "NETUNICORN_EXECUTOR_ID",
            )
        }


def client(login_var="NETUNICORN_LOGIN", password_var="NETUNICORN_PASSWORD"):
    return RemoteClient(ENDPOINT, os.environ[login_var], os.environ[password_var])


def wait_for(c, name, *statuses):
    deadline = time.monotonic() + WAIT_S
    while True:
        info = c.get_experiment_status(name)
        if info.status in statuses:
            return info
        if time.monotonic() > deadline:
            raise SystemExit(f"{name} did not reach {statuses} in {WAIT_S} s:\n{info}")
        time.sleep(0.05)


def refused(call):
    """The client's exception text if ``call`` is refused, else None."""
    try:
        call()
    except RemoteClientException as exc:
        return str(exc)
    return None


def fresh(c, name):
    if name in c.get_experiments():
        c.delete_experiment(name)


def first_raspi(c):
    return c.get_nodes().filter(lambda node: node.name.startswith("raspi")).take(1)


def lifecycle():
    """Idempotent prepare/start, no start before READY, cancel, delete, prepare again."""
    c = client()
    name = "lifecycle"
    fresh(c, name)
    gate = Path(os.environ["GATE_FILE"])
    # The preparation waits for the gate file: the experiment is PREPARING
    # until this script creates it (bounded: it gives up after 30 s).
    hold = f"for i in $(seq 600); do [ -e {gate} ] && exit 0; sleep 0.05; done; exit 1"
    pipeline = Pipeline(environment_definition=ShellExecution(commands=[hold])).then(Sleep(120))
    raspis = c.get_nodes().filter(lambda node: node.name.startswith("raspi")).take(2)
    experiment = Experiment().map(pipeline, raspis)
    seen = {"prepare": c.prepare_experiment(experiment, name)}
    seen["prepare_again"] = c.prepare_experiment(experiment, name)
    seen["status_while_preparing"] = c.get_experiment_status(name).status.name
    seen["start_while_preparing"] = refused(lambda: c.start_execution(name))
    gate.touch()
    ready = wait_for(c, name, ExperimentStatus.READY, ExperimentStatus.FINISHED)
    seen["ready"] = ready.status.name
    first_ids = [d.executor_id for d in ready.experiment]
    seen["start"] = c.start_execution(name)
    seen["start_again"] = c.start_execution(name)
    seen["running"] = wait_for(c, name, ExperimentStatus.RUNNING).status.name
    seen["delete_while_running"] = refused(lambda: c.delete_experiment(name))
    c.cancel_executors([first_ids[0]])
    one_left = c.get_experiment_status(name)
    seen["after_cancel_executor"] = one_left.status.name
    seen["cancelled_executor_error"] = one_left.execution_result[0].error
    seen["cancel"] = c.cancel_experiment(name)
    done = wait_for(c, name, ExperimentStatus.FINISHED)
    seen["after_cancel"] = done.status.name
    seen["cancel_errors"] = [r.error for r in done.execution_result]
    seen["start_after_cancel"] = refused(lambda: c.start_execution(name))
    c.delete_experiment(name)
    seen["listed_after_delete"] = name in c.get_experiments()
    seen["status_after_delete"] = refused(lambda: c.get_experiment_status(name))
    quick = Pipeline().then(Sleep(0))
    c.prepare_experiment(Experiment().map(quick, first_raspi(c)), name)
    again = wait_for(c, name, ExperimentStatus.READY, ExperimentStatus.FINISHED)
    seen["prepared_again"] = again.status.name
    seen["new_executor_ids"] = not set(first_ids) & {d.executor_id for d in again.experiment}
    c.start_execution(name)
    finished = wait_for(c, name, ExperimentStatus.FINISHED)
    outcome, _log = finished.execution_result[0].result
    seen["rerun_result"] = repr(outcome)
    c.delete_experiment(name)
    return seen


def isolation():
    """A second user neither sees nor touches the first user's experiment."""
    owner, other = client(), client("OTHER_LOGIN", "OTHER_PASSWORD")
    name = "private"
    fresh(owner, name)
    fresh(other, name)
    pipeline = Pipeline().then(Sleep(0))
    owner.prepare_experiment(Experiment().map(pipeline, first_raspi(owner)), name)
    info = wait_for(owner, name, ExperimentStatus.READY)
    owner.set_flag_values(name, "secret", FlagValues(text_value="owner", int_value=7))
    executor_id = info.experiment[0].executor_id
    seen = {
        "owner_lists": name in owner.get_experiments(),
        "other_lists": name in other.get_experiments(),
        "other_status": refused(lambda: other.get_experiment_status(name)),
        "other_get_flag": refused(lambda: other.get_flag_values(name, "secret")),
        "other_set_flag": refused(
            lambda: other.set_flag_values(name, "secret", FlagValues(text_value="x"))
        ),
        "other_start": refused(lambda: other.start_execution(name)),
        "other_cancel": refused(lambda: other.cancel_experiment(name)),
        "other_delete": refused(lambda: other.delete_experiment(name)),
        "other_cancel_executor": refused(lambda: other.cancel_executors([executor_id])),
    }
    # the same name is free in the other user's namespace
    seen["other_prepare"] = other.prepare_experiment(
        Experiment().map(pipeline, first_raspi(other)), name
    )
    seen["other_sees_own"] = wait_for(other, name, ExperimentStatus.READY).status.name
    seen["owner_flag"] = repr(owner.get_flag_values(name, "secret"))
    seen["owner_status"] = owner.get_experiment_status(name).status.name
    owner.delete_experiment(name)
    other.delete_experiment(name)
    return seen


def keep_alive():
    """An executor silent for longer than its keep-alive fails; one that beats does not."""
    c = client()
    name = "silent"
    fresh(c, name)
    raspis = c.get_nodes().filter(lambda node: node.name.startswith("raspi")).take(2)
    # Told not to beat at all (netUnicorn's executor would beat every 30 s)...
    quiet = RuntimeContext(environment_variables={"NETUNICORN_EXECUTOR_HEARTBEAT_SECONDS": "3600"})
    silent = Pipeline(environment_definition=ShellExecution(runtime_context=quiet))
    # ...and left to the period shoal sets for a 3 s keep-alive (1 s).
    beating = Pipeline(environment_definition=ShellExecution())
    experiment = (
        Experiment()
        .map(silent.then(Sleep(120)), raspis[:1])
        .map(beating.then(Sleep(6)), raspis[1:])
    )
    for deployment in experiment:
        deployment.keep_alive_timeout_minutes = 0.05  # 3 s
    c.prepare_experiment(experiment, name)
    wait_for(c, name, ExperimentStatus.READY)
    started = time.monotonic()
    c.start_execution(name)
    done = wait_for(c, name, ExperimentStatus.FINISHED)
    outcome, _log = done.execution_result[1].result
    seen = {
        "seconds": time.monotonic() - started,
        "silent_error": done.execution_result[0].error,
        "beating_error": done.execution_result[1].error,
        "beating_result": repr(outcome),
        "keep_alive": [d.keep_alive_timeout_minutes for d in done.experiment],
    }
    c.delete_experiment(name)
    return seen


def docker():
    """A DockerImage naming an image is refused at prepare on nodes without Docker."""
    c = client()
    name = "docker-image"
    fresh(c, name)
    pipeline = Pipeline(environment_definition=DockerImage(image="alpine:3")).then(Sleep(0))
    return {
        "refused": refused(
            lambda: c.prepare_experiment(Experiment().map(pipeline, first_raspi(c)), name)
        ),
        "created": name in c.get_experiments(),
    }


def environment():
    """ShellExecution: commands run before, runtime-context variables reach the executor."""
    c = client()
    name = "environment"
    fresh(c, name)
    context = RuntimeContext(environment_variables={"GREETING": "hello from netUnicorn"})
    env_def = ShellExecution(commands=["true"], runtime_context=context)
    pipeline = Pipeline(environment_definition=env_def).then(Environment())
    c.prepare_experiment(Experiment().map(pipeline, first_raspi(c)), name)
    ready = wait_for(c, name, ExperimentStatus.READY)
    c.start_execution(name)
    done = wait_for(c, name, ExperimentStatus.FINISHED)
    outcome, log = done.execution_result[0].result
    return {
        "task_env": next(iter(outcome.unwrap().values()))[0].unwrap(),
        "executor_id": ready.experiment[0].executor_id,
        "commands": ready.experiment[0].environment_definition.commands,
        "log": log,
    }


if __name__ == "__main__":
    scenario = {f.__name__: f for f in (lifecycle, isolation, keep_alive, docker, environment)}[
        sys.argv[1]
    ]
    print("RESULT " + json.dumps(scenario()))
