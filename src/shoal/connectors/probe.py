"""What a deploy learns about a host in one round trip.

This file is sent to the host and run there by the inventory's python, before
shoal is installed: it must need nothing but the standard library and run on
any Python 3. ``probe`` prints one JSON object: the host's python and platform,
the agent's folder, what shoal deployed there last, and whether its supervisor
and agent run now. ``stop`` stops a detached supervisor and its agent and waits
until both are gone.

    python3 - probe WORKDIR NODE UNIT < probe.py
    python3 - stop WORKDIR < probe.py
"""

import contextlib
import fcntl
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as file:
            return json.load(file)
    except (OSError, ValueError):
        return None


def _locked(path):
    """Whether a live process holds the lock on ``path`` (the supervisor holds its pid file)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def _systemd_user():
    """Whether this login has a systemd user manager to run the agent under."""
    if not shutil.which("systemctl") or not os.path.isdir("/run/systemd/system"):
        return False
    try:
        done = subprocess.run(
            ["systemctl", "--user", "show-environment"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def _unit_active(unit):
    try:
        done = subprocess.run(
            ["systemctl", "--user", "is-active", "--quiet", unit], timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def _pid_alive(path):
    try:
        with open(path, encoding="ascii") as file:
            pid = int(file.read().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def _signal(pid, sig):
    with contextlib.suppress(OSError):
        os.kill(pid, sig)


def stop(workdir, timeout=20.0):
    """Stop the detached supervisor of ``workdir`` and its agent; report what was stopped."""
    lock = os.path.join(workdir, "supervisor.pid")
    supervisor = _pid_alive(lock) if _locked(lock) else None
    agent = _pid_alive(os.path.join(workdir, "agent.pid"))
    if supervisor:
        _signal(supervisor, signal.SIGTERM)  # it stops the agent, then itself
    elif agent:
        _signal(agent, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _locked(lock) and not _pid_alive(os.path.join(workdir, "agent.pid")):
            break
        time.sleep(0.1)
    else:
        for pid in (supervisor, agent):
            if pid:
                _signal(pid, signal.SIGKILL)
    json.dump({"stopped": bool(supervisor or agent)}, sys.stdout)


def main():
    command = sys.argv[1]
    workdir = os.path.abspath(os.path.expanduser(sys.argv[2]))
    if command == "stop":
        stop(workdir)
        return
    node = sys.argv[3]
    unit = sys.argv[4] if len(sys.argv) > 4 else ""
    libc = platform.libc_ver()
    deployed = _read_json(os.path.join(workdir, "deploy.json"))
    systemd = _systemd_user()
    kind = (deployed or {}).get("supervisor")
    if kind == "systemd":
        supervised = systemd and bool(unit) and _unit_active(unit)
    else:
        supervised = _locked(os.path.join(workdir, "supervisor.pid"))
    report = {
        "python": list(sys.version_info[:3]),
        "implementation": sys.implementation.name,
        "machine": platform.machine(),
        "libc": [libc[0], libc[1]],
        "user": os.environ.get("USER") or os.environ.get("LOGNAME") or "",
        "workdir": workdir,
        "node": node,
        "deployed": deployed,
        "venv": os.path.exists(os.path.join(workdir, "venv", "bin", "python")),
        "credential": os.path.exists(os.path.join(workdir, "node-credential")),
        "systemd": systemd,
        "supervised": supervised,
        "agent_pid": _pid_alive(os.path.join(workdir, "agent.pid")),
        "status": _read_json(os.path.join(workdir, "agent-status.json")),
        "wheels": sorted(os.listdir(os.path.join(workdir, "wheels")))
        if os.path.isdir(os.path.join(workdir, "wheels"))
        else [],
    }
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
