"""Keep a deployed agent running: restart it when it dies, and outlive the login.

``shoal deploy`` leaves in the agent's folder a file ``agent.json`` with the
arguments of ``shoal agent``; this module runs the agent from it, in one of
three ways:

``--detach``
    Where a host has no systemd user manager: become a daemon (its own session,
    no terminal, so the SSH login that started it can end), then run the agent
    and start it again whenever it exits, waiting 1 s, then longer (up to 30 s)
    while it keeps failing at once. The supervisor holds a lock on
    ``supervisor.pid`` while it lives, which is how a deploy tells a live
    supervisor from a stale pid file.
``--exec``
    Under systemd: replace this process by the agent; systemd restarts it.
(neither)
    Supervise in the foreground.

The agent's output goes to ``agent.log`` in the folder (kept under 10 MB: the
old one moves to ``agent.log.1`` when the agent starts again).

    python -m shoal.agent.supervisor --workdir ~/.shoal-agent --detach
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

LOG_LIMIT = 10 * 1024 * 1024
FIRST_DELAY = 1.0
MAX_DELAY = 30.0
HEALTHY_AFTER = 60.0  # an agent that ran this long failed for a new reason: start over at 1 s


def agent_command(workdir: Path) -> tuple[list[str], dict[str, str]]:
    """The ``shoal agent`` command line and extra environment written by the deploy."""
    spec = json.loads((workdir / "agent.json").read_text(encoding="utf-8"))
    argv = [sys.executable, "-m", "shoal", "agent", *spec["argv"]]
    return argv, {str(k): str(v) for k, v in spec.get("env", {}).items()}


def _log(workdir: Path, text: str) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    with open(workdir / "agent.log", "a", encoding="utf-8") as log:
        log.write(f"{stamp} supervisor: {text}\n")


def _rotate(workdir: Path) -> None:
    log = workdir / "agent.log"
    with contextlib.suppress(OSError):
        if log.stat().st_size > LOG_LIMIT:
            log.replace(workdir / "agent.log.1")


class Supervisor:
    """Runs the agent of one folder and starts it again whenever it exits."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.child: subprocess.Popen[bytes] | None = None
        self.stopping = False

    def stop(self, _signum: int, _frame: object) -> None:
        self.stopping = True
        if self.child is not None and self.child.poll() is None:
            self.child.terminate()

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        delay = FIRST_DELAY
        while not self.stopping:
            _rotate(self.workdir)
            argv, extra_env = agent_command(self.workdir)
            started = time.monotonic()
            with open(self.workdir / "agent.log", "ab") as log:
                self.child = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, **extra_env},
                    cwd=self.workdir,
                )
            (self.workdir / "agent.pid").write_text(f"{self.child.pid}\n", encoding="ascii")
            _log(self.workdir, f"agent started (pid {self.child.pid})")
            code = self.child.wait()
            if self.stopping:
                break
            if time.monotonic() - started > HEALTHY_AFTER:
                delay = FIRST_DELAY
            _log(self.workdir, f"agent exited with {code}; starting it again in {delay:.0f} s")
            self._pause(delay)
            delay = min(delay * 2, MAX_DELAY)
        if self.child is not None:
            try:
                self.child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.child.kill()
                self.child.wait()
        with contextlib.suppress(OSError):
            (self.workdir / "agent.pid").unlink()
        _log(self.workdir, "stopped")
        return 0

    def _pause(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stopping and (left := deadline - time.monotonic()) > 0:
            # A signal ends the sleep early; the loop then sees self.stopping.
            time.sleep(min(left, 0.2))


def _lock_pid_file(workdir: Path) -> int | None:
    """Hold the lock on ``supervisor.pid`` and write our pid; None if another supervisor lives."""
    fd = os.open(workdir / "supervisor.pid", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd  # kept open, and so locked, for the supervisor's life


def _detach(workdir: Path) -> None:
    """Become a daemon; the calling process exits once the daemon holds its lock."""
    ready_read, ready_write = os.pipe()
    if os.fork() > 0:
        os.close(ready_write)
        answer = os.read(ready_read, 100).decode()
        if answer != "ok":
            print(answer or "the supervisor did not start", file=sys.stderr)
            os._exit(1)
        os._exit(0)
    os.close(ready_read)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)  # the daemon is no session leader, so it never gets a terminal
    fd = _lock_pid_file(workdir)
    if fd is None:
        os.write(ready_write, b"another supervisor runs in this folder")
        os._exit(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    log = os.open(workdir / "agent.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(devnull, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.write(ready_write, b"ok")
    os.close(ready_write)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shoal.agent.supervisor")
    parser.add_argument("--workdir", required=True, type=Path)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--detach", action="store_true", help="run as a daemon")
    mode.add_argument("--exec", action="store_true", help="become the agent (under systemd)")
    args = parser.parse_args(argv)
    workdir = args.workdir.expanduser().resolve()
    if not (workdir / "agent.json").exists():
        parser.error(f"{workdir / 'agent.json'} is missing: deploy this host with shoal deploy")
    os.chdir(workdir)
    if args.exec:
        command, extra_env = agent_command(workdir)
        (workdir / "agent.pid").write_text(f"{os.getpid()}\n", encoding="ascii")
        os.execve(command[0], command, {**os.environ, **extra_env})
    if args.detach:
        _detach(workdir)
    elif _lock_pid_file(workdir) is None:
        parser.error(f"another supervisor runs in {workdir}")
    return Supervisor(workdir).run()


if __name__ == "__main__":
    sys.exit(main())
