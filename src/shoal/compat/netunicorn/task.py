"""The shoal task that runs one netUnicorn executor on a node.

A netUnicorn deployment becomes a normal shoal deployment whose pipeline has
one step: this task. Its ``run()`` starts ``python -m netunicorn.executor``
(the real package, from ``pip install 'shoal[netunicorn]'`` on the node) with
the gateway endpoint, executor id and experiment id netUnicorn's executor
reads from its environment. The executor then talks to the controller's
netUnicorn gateway exactly as it would to a netUnicorn installation: it
fetches its execution graph, reports heartbeats and results, and its flag
tasks use the experiment's flags.

This module runs inside shoal's executor processes, so it imports nothing but
the standard library and ``shoal.model``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from shoal.model.pipeline import Task

LOG_TAIL = 30  # lines of the executor's own log quoted when it fails


class Stopped(Exception):
    """The agent is stopping this deployment (cancelled, forgotten, or timed out)."""


def _stop(signum: int, _frame: FrameType | None) -> None:
    raise Stopped(f"stopped by signal {signum}")


class NetunicornExecutor(Task):
    """Run the netUnicorn executor of one deployment and wait for it.

    ``gateway_path`` is the path of the controller's netUnicorn gateway (the
    executor's token is appended to it, so the endpoint reaches only this
    experiment). ``environment`` is the deployment's runtime-context
    environment. With ``image`` the executor runs in that Docker image
    (``docker run``); without, directly in this node's Python.
    """

    def __init__(
        self,
        gateway_path: str,
        environment: dict[str, str] | None = None,
        heartbeat_seconds: int = 30,
        image: str | None = None,
        ports: dict[int, int] | None = None,
        network: str | None = None,
        cleanup: bool = True,
        name: str | None = None,
    ) -> None:
        super().__init__(name)
        self.gateway_path = gateway_path
        self.environment = dict(environment or {})
        self.heartbeat_seconds = heartbeat_seconds
        self.image = image
        self.ports = dict(ports or {})
        self.network = network
        self.cleanup = cleanup

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Unpickling happens when the agent prepares the deployment: failing
        # here turns a node that cannot run executors into a preparation error
        # naming the fix, instead of a failure only after start.
        self.__dict__.update(state)
        self.check_node()

    def check_node(self) -> None:
        """Raise if this node cannot start the executor."""
        if self.image is not None:
            if shutil.which("docker") is None:
                raise RuntimeError(
                    f"DockerImage({self.image!r}) needs the docker command on this node, "
                    "and it is not on the PATH"
                )
        elif not _importable("netunicorn.executor"):
            raise RuntimeError(
                f"netunicorn-executor is not installed in this node's Python ({sys.executable});"
                " install it with: pip install 'shoal[netunicorn]'"
            )

    def netunicorn_env(self) -> dict[str, str]:
        """The variables netUnicorn's executor reads, from the shoal executor's own."""
        endpoint = os.environ["SHOAL_ENDPOINT"].rstrip("/")
        token = os.environ["SHOAL_EXECUTOR_TOKEN"]
        return {
            "NETUNICORN_GATEWAY_ENDPOINT": f"{endpoint}{self.gateway_path}/{token}",
            "NETUNICORN_EXECUTOR_ID": os.environ["SHOAL_EXECUTOR_ID"],
            "NETUNICORN_EXPERIMENT_ID": os.environ["SHOAL_EXPERIMENT_ID"],
        }

    def command(self, netunicorn: dict[str, str]) -> tuple[list[str], dict[str, str]]:
        """The argv and environment that start the executor."""
        variables = {
            "NETUNICORN_EXECUTOR_HEARTBEAT_SECONDS": str(self.heartbeat_seconds),
            **self.environment,
            **netunicorn,  # last: the deployment's own ids cannot be overridden
        }
        if self.image is None:
            return [sys.executable, "-m", "netunicorn.executor"], {**os.environ, **variables}
        argv = ["docker", "run", "--name", f"netunicorn-{netunicorn['NETUNICORN_EXECUTOR_ID']}"]
        if self.cleanup:
            argv.append("--rm")
        # The gateway endpoint is the one the agent uses; on the host network a
        # container reaches it as the agent does.
        network = self.network or "host"
        argv += ["--network", network]
        if network != "host":
            for host_port, container_port in sorted(self.ports.items()):
                argv += ["-p", f"{host_port}:{container_port}"]
        for key, value in variables.items():
            argv += ["-e", f"{key}={value}"]
        argv.append(self.image)
        return argv, dict(os.environ)

    def run(self) -> int:
        netunicorn = self.netunicorn_env()
        executor_id = netunicorn["NETUNICORN_EXECUTOR_ID"]
        argv, env = self.command(netunicorn)
        # The executor writes its log and looks for a local graph file in its
        # working directory: each deployment gets a fresh one.
        workdir = Path(tempfile.mkdtemp(prefix=f"netunicorn-{executor_id[:8]}-"))
        # The agent stops a deployment with SIGTERM to the executor's whole
        # process group (this process and the netUnicorn executor), then
        # SIGKILL: turning the TERM into an exception lets the working
        # directory go in between.
        previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, _stop)
        try:
            # Output goes to this process's stdout/stderr, which the agent
            # streams as the deployment's log lines.
            code = subprocess.run(argv, cwd=workdir, env=env, stdin=subprocess.DEVNULL).returncode
            if code != 0:
                raise RuntimeError(
                    f"the netUnicorn executor exited with code {code}"
                    + _log_tail(workdir / f"executor_{executor_id}.log")
                )
            return code
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
            if self.cleanup:
                shutil.rmtree(workdir, ignore_errors=True)
            else:
                print(f"netUnicorn executor files kept in {workdir}", flush=True)


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # a parent that is not a package, or fails to import
        return False


def _log_tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()[-LOG_TAIL:]
    except OSError:
        return ""
    return "; the end of its log:\n" + "\n".join(lines) if lines else ""
