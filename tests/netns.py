"""Real SSH hosts for tests: network namespaces on a bridge, each running its own sshd.

:func:`ssh_hosts` makes N "hosts" as root::

    with ssh_hosts(3, tmp_path) as hosts:
        write_inventory(tmp_path / "inventory.toml", hosts)  # from inventory_file
        ...  # hosts[0].address, hosts[0].link_down(), hosts[0].stop_sshd(), ...

Each host is a network namespace with one veth end (``eth0``, 10.X.Y.(i+2)/24) on a
bridge in the root namespace (10.X.Y.1, the controller's address from the hosts' view),
and an ``sshd -D`` of its own (Debian's openssh-server) that lets root in with an
ed25519 key made here. The hosts have no way off the bridge: their default route is
``unreachable``, so reaching a package index fails at once instead of timing out.

The namespaces share this machine's filesystem and pid namespace: every host gets its own
work directory, and "every process of a host" means every process in its namespace.
Leaving the ``with`` kills those processes and removes namespaces, veths and the bridge,
also when the body raised; :func:`remove_leftovers` removes what a crashed run left.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pids import pid_alive
from waiting import wait_until

SSHD = "/usr/sbin/sshd"
SSH_KEYGEN = "ssh-keygen"
# Every name made here starts with this, then a kind letter (b bridge, v veth, n netns),
# then the creating pid and a per-process counter in base 36: what remove_leftovers parses.
PREFIX = "shl"
_NAME = re.compile(rf"^{PREFIX}[bvn]([0-9a-z]+)-([0-9a-z]+)(?:-[0-9a-z]+)?$")
_LOCK = Path(tempfile.gettempdir()) / "shoal-netns.lock"
_counter = 0

PropertyValue = str | int | float | bool


class NetnsUnavailable(RuntimeError):
    """This machine cannot make namespace hosts (not root, no ``ip`` or no sshd)."""


def unavailable_reason() -> str | None:
    """Why namespace hosts cannot be made here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root (ip netns, veth and a bridge)"
    if shutil.which("ip") is None:
        return "needs `ip` (iproute2): sh scripts/install-test-deps.sh"
    if not os.access(SSHD, os.X_OK):
        return f"needs {SSHD} (openssh-server): sh scripts/install-test-deps.sh"
    if shutil.which(SSH_KEYGEN) is None:
        return "needs ssh-keygen (openssh-client): sh scripts/install-test-deps.sh"
    return None


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {result.stderr.strip()}")
    return result


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, rest = divmod(n, 36)
        out = digits[rest] + out
        if n == 0:
            return out


def run_tag(pid: int, counter: int) -> str:
    """The part of a set's names that says which process made it (``pid``) and which of
    its sets it is (``counter``): what :func:`remove_leftovers` reads back."""
    return f"{_base36(pid)}-{_base36(counter)}"


def _keygen(path: Path, comment: str) -> str:
    """Make an ed25519 key at ``path``; its public line."""
    subprocess.run(
        [SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return path.with_name(path.name + ".pub").read_text().strip()


def _netns_pids(netns: str) -> list[int]:
    result = _ip("netns", "pids", netns, check=False)
    return [int(word) for word in result.stdout.split()]


def _kill_netns_processes(netns: str, grace: float = 5.0) -> None:
    """SIGTERM every process in ``netns``, SIGKILL what is left after ``grace`` seconds,
    and wait until none is left (a zombie no longer counts: it has no namespace)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = _netns_pids(netns)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        try:
            wait_until(lambda: not _netns_pids(netns), grace, f"the processes of {netns}")
        except AssertionError:
            if sig == signal.SIGKILL:
                left = _netns_pids(netns)
                raise RuntimeError(
                    f"processes {left} in namespace {netns} survived SIGKILL"
                ) from None


def _wait_banner(address: str, port: int, timeout: float, proc: subprocess.Popen[bytes]) -> None:
    """Wait until an sshd at ``address:port`` greets a connection with its banner."""

    def greets() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd for {address} exited with code {proc.returncode}")
        try:
            with socket.create_connection((address, port), timeout=2) as sock:
                sock.settimeout(2)
                return sock.recv(64).startswith(b"SSH-")
        except OSError:
            return False

    try:
        wait_until(greets, timeout, f"sshd at {address}:{port} to greet")
    except AssertionError as exc:
        raise RuntimeError(str(exc)) from None


@dataclass
class NetnsHost:
    """One SSH host: a network namespace with its own address and sshd."""

    name: str  # its node name in an inventory
    address: str
    netns: str
    veth: str  # the root namespace's end, on the bridge; ``eth0`` is the host's
    workdir: Path  # a folder of its own for the agent (the filesystem is shared)
    key_file: Path  # the client's private key that root on every host accepts
    known_hosts: Path  # every host's key, by address, for a checking SSH client
    authorized_keys: Path  # the public keys root on this host accepts (key_file's)
    bridge_address: str  # the controller's address as the host sees it
    port: int = 22
    user: str = "root"
    properties: dict[str, PropertyValue] = field(default_factory=dict)
    # The environment of SSH sessions on this host (sshd's SetEnv), read at start_sshd.
    session_env: dict[str, str] = field(default_factory=dict)
    sshd_config: Path = field(default=Path(), repr=False)
    sshd_log: Path = field(default=Path(), repr=False)
    _sshd: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def run(
        self, cmd: Sequence[str], *, check: bool = False, timeout: float = 60, **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` in this host's namespace (as root, on the shared filesystem)."""
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        return subprocess.run(
            ["ip", "netns", "exec", self.netns, *cmd], check=check, timeout=timeout, **kwargs
        )

    def popen(self, cmd: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``cmd`` in this host's namespace; the caller waits for it."""
        return subprocess.Popen(["ip", "netns", "exec", self.netns, *cmd], **kwargs)

    def link_down(self) -> None:
        """Cut the host off the bridge (its ``eth0`` down): nothing reaches it, nor it anything."""
        _ip("-n", self.netns, "link", "set", "eth0", "down")

    def link_up(self, timeout: float = 10) -> None:
        """Put the host back on the bridge; returns once the bridge's end has carrier."""
        _ip("-n", self.netns, "link", "set", "eth0", "up")
        operstate = Path("/sys/class/net") / self.veth / "operstate"
        wait_until(lambda: operstate.read_text().strip() == "up", timeout, f"{self.veth} up")

    @property
    def sshd_running(self) -> bool:
        """Whether this host's listening sshd (started by start_sshd) is alive."""
        return self._sshd is not None and self._sshd.poll() is None

    def start_sshd(self, timeout: float = 20) -> None:
        """Start this host's sshd (if it is not running) and wait until it greets."""
        if self.sshd_running:
            return
        self.sshd_config.write_text(_sshd_config(self))
        with self.sshd_log.open("ab") as log:
            self._sshd = self.popen(
                [SSHD, "-D", "-e", "-f", str(self.sshd_config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        try:
            _wait_banner(self.address, self.port, timeout, self._sshd)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}; its log:\n{self.sshd_log.read_text()}") from None

    def stop_sshd(self) -> None:
        """Stop the listening sshd (new connections are refused); open sessions stay."""
        if self._sshd is None:
            return
        if self._sshd.poll() is None:
            self._sshd.terminate()
            try:
                self._sshd.wait(10)
            except subprocess.TimeoutExpired:
                self._sshd.kill()
                self._sshd.wait()
        self._sshd = None

    def processes(self) -> list[int]:
        """The pids of every process in this host's namespace."""
        return _netns_pids(self.netns)


def _sshd_config(host: NetnsHost) -> str:
    folder = host.sshd_config.parent
    env = " ".join(json.dumps(f"{key}={value}") for key, value in host.session_env.items())
    return "\n".join(
        [
            f"ListenAddress {host.address}:{host.port}",
            f"HostKey {folder / 'ssh_host_ed25519_key'}",
            f"PidFile {folder / 'sshd.pid'}",
            f"AuthorizedKeysFile {host.authorized_keys}",
            "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",  # the key files live in a test's tmp folder
            "UseDNS no",
            # deploy opens many channels and connections at once
            "MaxSessions 100",
            "MaxStartups 100",
            "Subsystem sftp internal-sftp",
            "LogLevel VERBOSE",
            *([f"SetEnv {env}"] if env else []),
            "",
        ]
    )


def _free_subnet() -> ipaddress.IPv4Network:
    """A 10.X.Y.0/24 that no address or route here uses (the caller holds _LOCK)."""
    used = [
        ipaddress.ip_network(word, strict=False)
        for line in _ip("-4", "-o", "addr").stdout.splitlines()
        for word in line.split()[3:4]
    ]
    used += [
        ipaddress.ip_network(line.split()[0], strict=False)
        for line in _ip("-4", "route").stdout.splitlines()
        if line.split()[0][0].isdigit()
    ]
    # resolv.conf's nameserver may sit in 10/8 too
    for line in (
        Path("/etc/resolv.conf").read_text().splitlines()
        if Path("/etc/resolv.conf").exists()
        else []
    ):
        parts = line.split()
        if len(parts) == 2 and parts[0] == "nameserver":
            with contextlib.suppress(ValueError):
                used.append(ipaddress.ip_network(parts[1]))
    rng = random.Random()
    for _ in range(1000):
        net = ipaddress.ip_network(f"10.{rng.randint(100, 199)}.{rng.randint(0, 255)}.0/24")
        if not any(net.overlaps(other) for other in used):
            return net
    raise RuntimeError("no free 10.X.Y.0/24 subnet for namespace hosts")


def remove_leftovers() -> list[str]:
    """Remove namespaces, veths and bridges of earlier runs whose creating process is dead
    (their names carry its pid); the names removed."""
    removed: list[str] = []
    for line in _ip("netns", "list").stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        match = _NAME.match(name)
        if match and name.startswith(PREFIX + "n") and not pid_alive(int(match[1], 36)):
            _kill_netns_processes(name)
            _ip("netns", "delete", name, check=False)
            removed.append(name)
    for line in _ip("-o", "link", "show").stdout.splitlines():
        # "7: shlvabc-1-0@if2: <...>" -> shlvabc-1-0
        name = line.split(":")[1].strip().split("@")[0]
        match = _NAME.match(name)
        if match and name[len(PREFIX)] in "bv" and not pid_alive(int(match[1], 36)):
            _ip("link", "delete", name, check=False)
            removed.append(name)
    return removed


class _HostSet:
    """The namespaces, links and sshds of one :func:`ssh_hosts`; teardown undoes all."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.bridge = f"{PREFIX}b{tag}"
        self.netns: list[str] = []
        self.veths: list[str] = []
        self.hosts: list[NetnsHost] = []
        self.bridge_made = False

    def teardown(self) -> None:
        errors: list[str] = []
        for host in self.hosts:
            host.stop_sshd()
        for netns in self.netns:
            try:
                _kill_netns_processes(netns)
            except RuntimeError as exc:
                errors.append(str(exc))
            result = _ip("netns", "delete", netns, check=False)
            if result.returncode != 0:
                errors.append(f"ip netns delete {netns}: {result.stderr.strip()}")
        for veth in self.veths:
            # deleting the namespace deleted its end, and with it this one; be sure
            _ip("link", "delete", veth, check=False)
        if self.bridge_made:
            _ip("link", "delete", self.bridge, check=False)
        if errors:
            raise RuntimeError("namespace hosts not fully cleaned up: " + "; ".join(errors))


@contextlib.contextmanager
def ssh_hosts(
    n: int,
    tmp: str | os.PathLike[str] | None = None,
    *,
    session_env: Mapping[str, str] | None = None,
    sshd_timeout: float = 20,
) -> Iterator[list[NetnsHost]]:
    """Make ``n`` SSH hosts (named ``host-1`` ... ``host-N``), each with sshd running;
    on exit kill every process in them and remove namespaces, veths and the bridge.

    ``tmp`` holds keys, sshd configs and logs, and each host's ``workdir``
    (a fresh temporary folder, removed on exit, when not given).
    ``session_env`` is every host's SSH session environment (``NetnsHost.session_env``);
    by default pip there reads no config file, because the hosts share this machine's
    home folder and its pip config (a local index, find-links) would hand them packages
    that a real host without a route to an index would not have.
    Raises :class:`NetnsUnavailable` when this machine cannot make them.
    """
    global _counter
    if reason := unavailable_reason():
        raise NetnsUnavailable(reason)
    if not 1 <= n <= 200:
        raise ValueError(f"n must be from 1 to 200, not {n}")
    remove_leftovers()
    _counter += 1
    # Linux caps interface names at 15 characters: "shlv" + pid (<= 5) + "-" + counter +
    # "-" + index stays within it for any pid and up to 36*36 sets per process.
    tag = run_tag(os.getpid(), _counter)
    with contextlib.ExitStack() as stack:
        if tmp is None:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="shoal-netns-"))
        root = Path(tmp) / f"netns-{tag}"
        root.mkdir(parents=True)
        hostset = _HostSet(tag)
        stack.callback(hostset.teardown)
        env = {"PIP_CONFIG_FILE": os.devnull} if session_env is None else session_env
        _build(hostset, n, root, env, sshd_timeout)
        yield hostset.hosts


def _build(
    hostset: _HostSet, n: int, root: Path, session_env: Mapping[str, str], sshd_timeout: float
) -> None:
    key_file = root / "client_ed25519"
    client_pub = _keygen(key_file, f"shoal-test-{hostset.tag}")
    authorized_keys = root / "authorized_keys"
    authorized_keys.write_text(client_pub + "\n")
    known_hosts = root / "known_hosts"
    # Debian's sshd refuses to start without its privilege separation directory.
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)

    with open(_LOCK, "w") as lock:
        # Two runs at once must not pick the same subnet: choose it and claim it by
        # putting its address on our bridge under one lock.
        fcntl.flock(lock, fcntl.LOCK_EX)
        subnet = _free_subnet()
        bridge_address = str(subnet.network_address + 1)
        _ip("link", "add", hostset.bridge, "type", "bridge", "forward_delay", "0")
        hostset.bridge_made = True
        _ip("addr", "add", f"{bridge_address}/{subnet.prefixlen}", "dev", hostset.bridge)
        _ip("link", "set", hostset.bridge, "up")

    known_lines: list[str] = []
    for i in range(n):
        netns = f"{PREFIX}n{hostset.tag}-{_base36(i)}"
        veth = f"{PREFIX}v{hostset.tag}-{_base36(i)}"
        address = str(subnet.network_address + 2 + i)
        _ip("netns", "add", netns)
        hostset.netns.append(netns)
        _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
        hostset.veths.append(veth)
        _ip("link", "set", veth, "master", hostset.bridge, "up")
        _ip("-n", netns, "link", "set", "lo", "up")
        _ip("-n", netns, "addr", "add", f"{address}/{subnet.prefixlen}", "dev", "eth0")
        _ip("-n", netns, "link", "set", "eth0", "up")
        # No way off the bridge, and saying so: a connection anywhere else fails at once
        # (EHOSTUNREACH/ENETUNREACH) instead of waiting for a timeout.
        _ip("-n", netns, "route", "add", "unreachable", "default")

        folder = root / f"host-{i + 1}"
        folder.mkdir()
        workdir = folder / "work"
        workdir.mkdir()
        host_key = folder / "ssh_host_ed25519_key"
        host_pub = _keygen(host_key, f"host-{i + 1}")
        known_lines.append(f"{address} {' '.join(host_pub.split()[:2])}")
        host = NetnsHost(
            name=f"host-{i + 1}",
            address=address,
            netns=netns,
            veth=veth,
            workdir=workdir,
            key_file=key_file,
            known_hosts=known_hosts,
            authorized_keys=authorized_keys,
            bridge_address=bridge_address,
            sshd_config=folder / "sshd_config",
            sshd_log=folder / "sshd.log",
            session_env=dict(session_env),
        )
        hostset.hosts.append(host)
    known_hosts.write_text("\n".join(known_lines) + "\n")
    for host in hostset.hosts:
        host.start_sshd(sshd_timeout)
