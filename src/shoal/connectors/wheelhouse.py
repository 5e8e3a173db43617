"""Wheels of shoal's dependencies for a host that cannot reach a package index.

A testbed node often has no route to PyPI. Then the deploying machine fetches
the wheels for the node's platform (its Python, CPU and C library, as the probe
reported them) with ``pip download`` and ships them. They are kept in
``~/.cache/shoal/wheels/PLATFORM`` so the next deploy to such a host is offline
too: pip resolves the same requirements there first, without the index.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
from pathlib import Path

from shoal.connectors.wheel import requirements


class WheelhouseError(RuntimeError):
    """The wheels for a host's platform could not be fetched; the message says why."""


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "shoal" / "wheels"


def platform_tags(machine: str, libc: tuple[str, str]) -> list[str]:
    """pip's ``--platform`` values a Linux host with this CPU and C library accepts."""
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
    name, version = libc
    tags: list[str] = []
    major, _, minor = version.partition(".")
    if name == "glibc" and major == "2" and minor.isdigit():
        tags += [f"manylinux_2_{m}_{arch}" for m in range(int(minor), 4, -1)]
        tags += [f"manylinux2014_{arch}", f"manylinux2010_{arch}", f"manylinux1_{arch}"]
    elif name == "musl" or not name:
        # platform.libc_ver() does not name musl; Alpine's wheels are musllinux.
        tags += [f"musllinux_1_{m}_{arch}" for m in range(2, -1, -1)]
    tags.append(f"linux_{arch}")
    return tags


class Wheelhouse:
    """Fetches (once per platform and requirement set) the dependency wheels for hosts."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or cache_root()
        self._locks: dict[str, asyncio.Lock] = {}

    async def for_host(self, probe: dict) -> Path:
        """The folder of wheels for the host the probe describes, fetched if needed."""
        major, minor = probe["python"][:2]
        machine = probe["machine"]
        libc = (probe["libc"][0], probe["libc"][1])
        if probe.get("implementation", "cpython") != "cpython":
            raise WheelhouseError(
                f"cannot fetch wheels for {probe['implementation']}; give --wheels DIR"
            )
        wanted = requirements()
        key = hashlib.sha256("\n".join(sorted(wanted)).encode()).hexdigest()[:12]
        folder = self.root / f"cp{major}{minor}-{machine}-{libc[0] or 'libc'}{libc[1]}"
        done = folder / f".complete-{key}"
        lock = self._locks.setdefault(str(folder), asyncio.Lock())
        async with lock:
            if done.exists():
                return folder
            folder.mkdir(parents=True, exist_ok=True)
            args = [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--disable-pip-version-check",
                "--quiet",
                "--dest",
                str(folder),
                "--only-binary=:all:",
                "--implementation",
                "cp",
                "--python-version",
                f"{major}.{minor}",
                "--abi",
                f"cp{major}{minor}",
                "--abi",
                "abi3",
                "--abi",
                "none",
            ]
            for tag in platform_tags(machine, libc):
                args += ["--platform", tag]
            process = await asyncio.create_subprocess_exec(
                *args,
                *wanted,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            output, _ = await process.communicate()
            if process.returncode != 0:
                lines = output.decode(errors="replace").strip().splitlines()
                raise WheelhouseError(
                    f"cannot fetch shoal's dependencies for Python {major}.{minor} on "
                    f"{machine} here ({lines[-1] if lines else 'pip download failed'}); "
                    "give --wheels DIR with them"
                )
            done.touch()
            return folder
