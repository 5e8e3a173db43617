"""Pieces of `shoal deploy` on their own: the wheel it ships, the platforms it fetches
wheels for, the systemd unit it writes (this machine runs no systemd, so
tests/test_deploy.py exercises the detached supervisor), and the supervisor."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from shoal.connectors.inventory import Host
from shoal.connectors.remote import Probe, RemoteHost, unit_name
from shoal.connectors.wheel import build_wheel, requirements
from shoal.connectors.wheelhouse import platform_tags
from waiting import wait_until


def test_the_shipped_wheel_is_this_install_with_a_content_version(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    assert build_wheel(tmp_path) == wheel  # made once per content
    version = wheel.name.split("-")[1]
    assert "+h" in version
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(f"shoal-{version}.dist-info/METADATA").decode()
    assert "shoal/agent/supervisor.py" in names and "shoal/connectors/probe.py" in names
    assert not any("__pycache__" in n for n in names)
    assert f"Version: {version}" in metadata
    # A node installs the base dependencies only: none of the controller's.
    assert not any(r.startswith(("fastapi", "sqlalchemy", "asyncssh")) for r in requirements())


def test_platform_tags_follow_the_hosts_c_library() -> None:
    glibc = platform_tags("aarch64", ("glibc", "2.36"))
    assert glibc[0] == "manylinux_2_36_aarch64" and "manylinux2014_aarch64" in glibc
    assert glibc[-1] == "linux_aarch64"
    assert platform_tags("amd64", ("", ""))[0] == "musllinux_1_2_x86_64"


def test_the_systemd_unit_restarts_the_agent_and_quotes_paths() -> None:
    host = Host(address="10.0.0.5", node="raspi 1/a", workdir="/srv/shoal agent")
    remote = RemoteHost(host, conn=None)  # type: ignore[arg-type]
    remote.probe = Probe({"workdir": "/srv/shoal agent"})
    unit = remote.unit_text()
    assert unit_name(host.node) == "shoal-agent-raspi_1_a.service"
    assert 'ExecStart="/srv/shoal agent/venv/bin/python" -m shoal.agent.supervisor' in unit
    assert '--workdir "/srv/shoal agent" --exec' in unit
    assert "Restart=always" in unit and "WantedBy=default.target" in unit


@pytest.mark.timeout(60)
def test_supervisor_restarts_its_agent_and_stops_with_it(tmp_path: Path) -> None:
    """The detached supervisor with a stand-in agent (`shoal agent --help` exits at
    once, so the supervisor starts it again and again)."""
    (tmp_path / "agent.json").write_text('{"argv": ["--help"]}')
    started = subprocess.run(
        [sys.executable, "-m", "shoal.agent.supervisor", "--workdir", str(tmp_path), "--detach"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert started.returncode == 0, started.stderr
    pid = int((tmp_path / "supervisor.pid").read_text())
    log = tmp_path / "agent.log"
    try:
        wait_until(
            lambda: log.read_text().count("agent started") >= 2, timeout=20, what="a restart"
        )
        # A second supervisor in the same folder refuses to start.
        second = subprocess.run(
            [sys.executable, "-m", "shoal.agent.supervisor", "--workdir", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert second.returncode != 0 and "another supervisor" in second.stderr
    finally:
        os.kill(pid, signal.SIGTERM)  # as undeploy stops it
    wait_until(lambda: "supervisor: stopped" in log.read_text(), timeout=20, what="stopped")
