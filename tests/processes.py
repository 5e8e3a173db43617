"""Starting `shoal controller` and `shoal agent` exactly as an operator would."""

from __future__ import annotations

import hashlib
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

from shoal.private import write_private

SHOAL = [sys.executable, "-m", "shoal"]


def read_until(stream: IO[Any], marker: str, timeout: float) -> str:
    """Read a child's pipe until ``marker`` appears; what was read so far.

    Reads the raw descriptor: select() on a pipe while a buffered reader holds
    data it already pulled in would wait for bytes that have long arrived.
    """
    fd = stream.fileno()
    seen = b""
    deadline = time.monotonic() + timeout
    while marker.encode() not in seen:
        left = deadline - time.monotonic()
        ready, _, _ = select.select([fd], [], [], max(left, 0))
        if not ready:
            raise TimeoutError(f"{marker!r} not printed in {timeout:g} s; got:\n{seen.decode()}")
        chunk = os.read(fd, 65536)
        if not chunk:
            raise RuntimeError(f"exited before printing {marker!r}:\n{seen.decode()}")
        seen += chunk
    return seen.decode(errors="replace")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def shoal(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60, input: str | None = None
) -> str:
    done = subprocess.run(
        [*SHOAL, *args],
        capture_output=True,
        text=True,
        input=input,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    assert done.returncode == 0, f"shoal {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


class Controller:
    """`shoal controller ...` in a subprocess; waits for its "listening" line."""

    def __init__(self, db_url: str, port: int, token: str, log: Path, *extra: str) -> None:
        self.db_url, self.port, self.token, self.log, self.extra = db_url, port, token, log, extra
        self.proc: subprocess.Popen[str] | None = None
        self.endpoint = f"http://127.0.0.1:{port}"

    def start(self, timeout: float = 60) -> Controller:
        args = [
            *SHOAL,
            "controller",
            "--port",
            str(self.port),
            "--db",
            self.db_url,
            *self.extra,
        ]
        # Through the environment: argv is visible to every user of the machine.
        env = {**os.environ, "COLUMNS": "200", "SHOAL_AGENT_TOKEN": self.token}
        self.proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
        )
        assert self.proc.stderr is not None
        try:
            read_until(self.proc.stderr, "shoal controller on http", timeout)
        except (TimeoutError, RuntimeError):
            self.stop()
            raise
        # Keep draining stderr into the log so the pipe never fills up.
        self._drain = subprocess.Popen(
            ["cat"],
            stdin=self.proc.stderr,
            stdout=open(self.log, "a"),  # noqa: SIM115
        )
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def token_file(directory: Path, token: str) -> Path:
    """A join token file (mode 0600) in ``directory``, as an operator would make it."""
    path = directory / f"join-token-{hashlib.sha256(token.encode()).hexdigest()[:12]}"
    if not path.exists():
        write_private(path, token + "\n")
    return path


def start_agent(
    endpoint: str, token: str, name: str, log: Path, *extra: str, python: str = sys.executable
) -> subprocess.Popen:
    """`shoal agent` with the join token in a file and its own workdir next to ``log``
    (where it keeps its node credential); ``python`` picks the install it runs from."""
    workdir = log.parent / f"agent-{name}"
    args = ["--token-file", str(token_file(log.parent, token)), "--workdir", str(workdir)]
    return subprocess.Popen(
        [python, "-m", "shoal", "agent", "--controller", endpoint, "--name", name, *args, *extra],
        stdout=open(log, "a"),
        stderr=subprocess.STDOUT,
    )


def stop_all(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def add_user(db_url: str, login: str, password: str) -> None:
    """`shoal user add` with the password piped in, as a script would do it."""
    shoal("user", "add", login, "--password-stdin", "--db", db_url, input=password + "\n")
