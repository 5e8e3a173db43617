"""The shoal a host gets: this install of shoal, packed as a wheel.

A deploy ships the very code that runs here, whether shoal was installed from a
wheel, from PyPI or as an editable checkout: the package folder is packed as it
is, with the installed distribution's metadata. No build backend and no network
are needed for that (a laptop on a testbed is often offline), and what the
hosts run is what the user tested locally.

The wheel's version carries a hash of its content as a local version label
(``0.1.0+h1a2b3c4d5e6f``), so a host whose code differs sees a new version and
pip upgrades it, while a host that has it already is left alone.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import io
import zipfile
from pathlib import Path

import shoal

_SKIP_DIRS = {"__pycache__"}
_SKIP_SUFFIXES = (".pyc", ".pyo")


def _package_files() -> list[tuple[str, bytes]]:
    """``(path in the wheel, content)`` of every file of the shoal package, sorted."""
    root = Path(shoal.__file__).resolve().parent
    files = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if any(part in _SKIP_DIRS for part in relative.parts) or not path.is_file():
            continue
        if path.suffix in _SKIP_SUFFIXES:
            continue
        files.append((f"shoal/{relative.as_posix()}", path.read_bytes()))
    return files


def _record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _metadata(version: str) -> tuple[str, str]:
    """This install's METADATA with ``version`` put in, and its entry points."""
    dist = importlib.metadata.distribution("shoal")
    lines = []
    for line in (dist.read_text("METADATA") or "").splitlines():
        lines.append(f"Version: {version}" if line.startswith("Version:") else line)
    return "\n".join(lines) + "\n", dist.read_text("entry_points.txt") or ""


def content_hash() -> str:
    """A hash of the package's files and metadata: what decides whether a host is current."""
    digest = hashlib.sha256()
    for name, data in _package_files():
        digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    metadata, entry_points = _metadata(importlib.metadata.version("shoal"))
    digest.update(metadata.encode() + entry_points.encode())
    return digest.hexdigest()


def build_wheel(folder: Path) -> Path:
    """Write this install's wheel into ``folder`` (once per content) and return its path."""
    base = importlib.metadata.version("shoal").split("+")[0]
    version = f"{base}+h{content_hash()[:12]}"
    path = folder / f"shoal-{version}-py3-none-any.whl"
    if path.exists():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    metadata, entry_points = _metadata(version)
    dist_info = f"shoal-{version}.dist-info"
    members = _package_files()
    members.append((f"{dist_info}/METADATA", metadata.encode()))
    members.append(
        (
            f"{dist_info}/WHEEL",
            b"Wheel-Version: 1.0\nGenerator: shoal deploy\nRoot-Is-Purelib: true\n"
            b"Tag: py3-none-any\n",
        )
    )
    if entry_points:
        members.append((f"{dist_info}/entry_points.txt", entry_points.encode()))
    record = io.StringIO()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            archive.writestr(name, data)
            record.write(f"{name},{_record_hash(data)},{len(data)}\n")
        record.write(f"{dist_info}/RECORD,,\n")
        archive.writestr(f"{dist_info}/RECORD", record.getvalue())
    partial = path.with_suffix(".partial")
    partial.write_bytes(buffer.getvalue())
    partial.replace(path)
    return path


def requirements() -> list[str]:
    """What a node needs besides shoal: the base dependencies, without any extra's."""
    required = importlib.metadata.requires("shoal") or []
    return [r for r in required if "extra ==" not in r.replace('"', "").replace("'", "")]
