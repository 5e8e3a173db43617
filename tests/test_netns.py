"""The namespace SSH hosts the deploy tests stand on (tests/netns.py): real sshds that
take the test's key, reach the controller's address, lose it on link_down, and leave
nothing behind."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import asyncssh
import pytest

from inventory_file import write_inventory
from netns import PREFIX, NetnsHost, remove_leftovers, run_tag, ssh_hosts, unavailable_reason
from shoal.connectors.inventory import load_inventory
from waiting import wait_until

MakeHosts = Callable[..., list[NetnsHost]]

# What a host runs to reach ADDRESS:PORT (argv 1, 2) and say its name (argv 3).
CONNECT = """
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3) as s:
    s.sendall(sys.argv[3].encode())
"""


async def _ssh_run(host: NetnsHost, command: str, key_file: Path | None = None) -> str:
    async with asyncssh.connect(
        host.address,
        port=host.port,
        username=host.user,
        client_keys=[str(key_file or host.key_file)],
        known_hosts=str(host.known_hosts),
        connect_timeout=10,
    ) as conn:
        result = await conn.run(command, check=True, timeout=10)
        return str(result.stdout)


def _ip_names(*args: str) -> str:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=True).stdout


def _reach_bridge(host: NetnsHost, listener: socket.socket) -> subprocess.CompletedProcess[str]:
    address, port = listener.getsockname()
    return host.run(["python3", "-c", CONNECT, address, str(port), host.name], timeout=20)


def test_hosts_accept_ssh_with_the_client_key_only(make_hosts: MakeHosts, tmp_path: Path) -> None:
    hosts = make_hosts(2)
    assert len({h.address for h in hosts}) == 2
    assert len({h.workdir for h in hosts}) == 2
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)

    async def check() -> None:
        for host in hosts:
            out = await _ssh_run(host, "ip -4 -o addr show eth0; echo $PIP_CONFIG_FILE; id -u")
            assert f"{host.address}/24" in out
            assert out.split()[-2:] == [os.devnull, "0"]
        with pytest.raises(asyncssh.PermissionDenied):
            await _ssh_run(hosts[0], "true", key_file=other)

    asyncio.run(check())


def test_host_reaches_the_bridge_until_its_link_is_down(make_hosts: MakeHosts) -> None:
    (host,) = make_hosts(1)
    with socket.create_server((host.bridge_address, 0)) as listener:
        listener.settimeout(10)

        def reached() -> bytes:
            result = _reach_bridge(host, listener)
            assert result.returncode == 0, result.stderr
            conn, peer = listener.accept()
            with conn:
                assert peer[0] == host.address
                return conn.recv(100)

        assert reached() == host.name.encode()

        host.link_down()
        started = time.monotonic()
        result = _reach_bridge(host, listener)
        assert result.returncode != 0
        assert "No route to host" in result.stderr
        assert time.monotonic() - started < 10
        with pytest.raises(OSError):
            socket.create_connection((host.address, host.port), timeout=1).close()

        host.link_up()
        assert reached() == host.name.encode()
        assert asyncio.run(_ssh_run(host, "echo back")) == "back\n"


def test_hosts_have_no_route_off_the_bridge(make_hosts: MakeHosts) -> None:
    (host,) = make_hosts(1)
    for target in ("192.0.2.1", "151.101.0.223", "pypi.org"):
        started = time.monotonic()
        result = host.run(["python3", "-c", CONNECT, target, "443", "x"], timeout=20)
        assert result.returncode != 0, target
        assert time.monotonic() - started < 5, f"{target} took long to fail: {result.stderr}"


def test_stopped_sshd_refuses_connections_until_started(make_hosts: MakeHosts) -> None:
    host, other = make_hosts(2)
    host.stop_sshd()
    assert not host.sshd_running
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host.address, host.port), timeout=5).close()
    assert asyncio.run(_ssh_run(other, "echo up")) == "up\n"
    host.start_sshd()
    assert asyncio.run(_ssh_run(host, "echo up")) == "up\n"


def test_inventory_of_the_hosts_loads(make_hosts: MakeHosts, tmp_path: Path) -> None:
    hosts = make_hosts(2)
    hosts[0].properties["kind"] = "first"
    path = write_inventory(
        tmp_path / "inventory.toml",
        hosts,
        python=sys.executable,
        per_host={"host-2": {"key_file": str(tmp_path / "wrong")}},
    )
    inventory = load_inventory(path)
    assert [h.node for h in inventory] == ["host-1", "host-2"]
    first, second = inventory
    assert (first.address, first.user, first.port) == (hosts[0].address, "root", 22)
    assert first.key_file == hosts[0].key_file
    assert first.workdir == str(hosts[0].workdir)
    assert second.workdir == str(hosts[1].workdir)
    assert first.python == second.python == sys.executable
    assert dict(first.properties) == {"kind": "first"}
    assert second.key_file == tmp_path / "wrong"


def _leftovers(tag: str) -> list[str]:
    """The namespaces and links whose names carry ``tag``."""
    names = [line.split()[0] for line in _ip_names("netns", "list").splitlines() if line]
    names += [
        line.split(":")[1].strip().split("@")[0]
        for line in _ip_names("-o", "link", "show").splitlines()
    ]
    return [name for name in names if tag in name]


@pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))
def test_leaving_removes_every_namespace_link_and_process(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="the body failed"), ssh_hosts(2, tmp_path) as hosts:
        tag = hosts[0].netns[len(PREFIX) + 1 :].rsplit("-", 1)[0]
        # a process that left its parent, as a deployed agent does
        stray = hosts[1].popen(["sleep", "600"], start_new_session=True, stdout=subprocess.DEVNULL)
        wait_until(lambda: stray.pid in hosts[1].processes(), 10, "sleep in host-2")
        pids = [p for h in hosts for p in h.processes()]
        assert len(_leftovers(tag)) == 5  # a bridge, two veths, two namespaces
        raise RuntimeError("the body failed")
    assert stray.wait(5) is not None
    assert _leftovers(tag) == []
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or _is_zombie(pid), pid


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))
def test_leftovers_of_a_dead_run_are_removed_and_a_live_runs_kept() -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    dead_tag, live_tag = run_tag(dead.pid, 1295), run_tag(os.getpid(), 1295)
    made = [
        ("netns", "add", f"{PREFIX}n{dead_tag}-0"),
        ("link", "add", f"{PREFIX}b{dead_tag}", "type", "bridge"),
        ("netns", "add", f"{PREFIX}n{live_tag}-0"),
    ]
    try:
        for args in made:
            _ip_names(*args)
        sleeper = subprocess.Popen(
            ["ip", "netns", "exec", f"{PREFIX}n{dead_tag}-0", "sleep", "600"],
            start_new_session=True,
        )
        wait_until(
            lambda: _ip_names("netns", "pids", f"{PREFIX}n{dead_tag}-0").strip(),
            10,
            "a process in the dead run's namespace",
        )
        removed = remove_leftovers()
        assert sorted(removed) == sorted([f"{PREFIX}n{dead_tag}-0", f"{PREFIX}b{dead_tag}"])
        assert sleeper.wait(5) is not None
        assert _leftovers(dead_tag) == []
        assert _leftovers(live_tag) == [f"{PREFIX}n{live_tag}-0"]
    finally:
        subprocess.run(["ip", "netns", "delete", f"{PREFIX}n{live_tag}-0"], check=False)
        subprocess.run(["ip", "netns", "delete", f"{PREFIX}n{dead_tag}-0"], check=False)
        subprocess.run(["ip", "link", "delete", f"{PREFIX}b{dead_tag}"], check=False)
