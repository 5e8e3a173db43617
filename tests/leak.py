"""An experiment whose task hands its own executor token over, as code next to it could.

Used to test what a stolen executor token can still do, and to fuzz the executor
routes with a live token.
"""

from __future__ import annotations

import sys

from shoal import Experiment, FlagValues, Pipeline, RemoteClient, RemoteClientException
from shoal.library.basic import ShellCommand
from shoal.library.flags import WaitForExactFlagResultTask
from waiting import wait_until

STOLEN = "stolen"  # the flag the task writes its token to
RELEASE = "go"  # the flag that lets the task end: set it to FlagValues("go", 1)

LEAK = (
    f'{sys.executable} -c "import os; from shoal.client.executor_flags import ExecutorFlags;'
    " from shoal.model.flags import FlagValues;"
    f" ExecutorFlags.from_environment().set('{STOLEN}',"
    " FlagValues(os.environ['SHOAL_EXECUTOR_TOKEN'], 0))\""
)


def steal_executor_token(client: RemoteClient, name: str, timeout: float = 30) -> str:
    """Run experiment ``name`` on one node; its task leaks its token, then waits for
    flag RELEASE (so the deployment, and the token, stay alive until then)."""
    pipeline = (
        Pipeline()
        .then(ShellCommand(LEAK, name="leak"))
        .then(WaitForExactFlagResultTask(RELEASE, FlagValues("go", 1), name="hold"))
    )
    client.prepare_experiment(Experiment().map(pipeline, client.get_nodes().take(1)), name)
    info = client.wait(name, until="ready", timeout=timeout)
    assert info.status.name == "READY", info
    client.start_execution(name)

    def leaked() -> str | None:
        try:
            return client.get_flag_values(name, STOLEN).text_value
        except RemoteClientException:  # not set yet
            return None

    return wait_until(leaked, timeout, f"the task of {name} to leak its token")
