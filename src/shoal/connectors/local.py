"""Start a controller and agents as processes on this machine."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shoal.extras import require_controller

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # Linux only: processes of a local cluster must not outlive whoever started it.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class ControllerProcess:
    proc: subprocess.Popen[bytes]
    endpoint: str
    token_file: str  # where the controller wrote the join token ("" if nowhere)
    log_path: Path


def start_controller(
    *,
    db_url: str,
    log_path: Path,
    host: str = "127.0.0.1",
    port: int = 0,
    agent_token: str | None = None,
    token_file: Path | None = None,
    users: list[tuple[str, str]] = (),  # type: ignore[assignment]
    heartbeat_interval: float | None = None,
    heartbeat_timeout: float | None = None,
    lost_timeout: float | None = None,
    timeout: float = 60.0,
) -> ControllerProcess:
    """Start ``shoal controller`` and return once it listens.

    ``agent_token`` (given through the environment, never argv) is written to
    ``token_file`` for the agents. Raises :class:`shoal.extras.MissingExtra` at once
    when this install lacks the controller's dependencies."""
    require_controller("a local shoal controller (the embedded default)")
    read_fd, write_fd = os.pipe()
    args = [
        sys.executable,
        "-m",
        "shoal",
        "controller",
        "--host",
        host,
        "--port",
        str(port),
        "--db",
        db_url,
        "--ready-fd",
        str(write_fd),
    ]
    if token_file is not None:
        args += ["--token-file", str(token_file)]
    if heartbeat_interval is not None:
        args += ["--heartbeat-interval", str(heartbeat_interval)]
    if heartbeat_timeout is not None:
        args += ["--heartbeat-timeout", str(heartbeat_timeout)]
    if lost_timeout is not None:
        args += ["--lost-timeout", str(lost_timeout)]
    env = dict(os.environ)
    if agent_token:
        env["SHOAL_AGENT_TOKEN"] = agent_token
    if users:
        env["SHOAL_BOOTSTRAP_USERS"] = json.dumps([list(u) for u in users])
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=(write_fd,),
            env=env,
            preexec_fn=_die_with_parent,
        )
    os.close(write_fd)
    try:
        info = _read_ready(read_fd, proc, timeout, log_path)
    except BaseException:
        stop_process(proc)
        raise
    finally:
        os.close(read_fd)
    return ControllerProcess(proc, info["endpoint"], info.get("token_file", ""), log_path)


def _read_ready(fd: int, proc: subprocess.Popen[bytes], timeout: float, log: Path) -> dict:
    deadline = time.monotonic() + timeout
    data = b""
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"the controller did not start in {timeout:g} s; see {log}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                tail = _tail(log)
                raise RuntimeError(f"the controller exited at start (code {proc.poll()}):\n{tail}")
            data += chunk
    return json.loads(data.split(b"\n", 1)[0])


def start_agent(
    *,
    endpoint: str,
    token_file: Path,
    name: str,
    log_path: Path,
    properties: dict[str, Any] | None = None,
    cpus: int | None = None,
    workdir: Path | None = None,
) -> subprocess.Popen[bytes]:
    args = [
        sys.executable,
        "-m",
        "shoal",
        "agent",
        "--controller",
        endpoint,
        "--name",
        name,
        "--token-file",
        str(token_file),
    ]
    for key, value in (properties or {}).items():
        args += ["--property", f"{key}={value}"]
    if cpus is not None:
        args += ["--cpus", str(cpus)]
    if workdir is not None:
        args += ["--workdir", str(workdir)]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={k: v for k, v in os.environ.items() if k != "SHOAL_AGENT_TOKEN"},
            preexec_fn=_die_with_parent,
        )


def stop_process(proc: subprocess.Popen[Any], grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
