"""PostgreSQL's programs for the tests: finding the server binaries (:func:`find_pg_bin`),
running one and reporting its failure (:func:`run_tool`; :func:`as_user` makes it run as
the ``postgres`` system user when the tests run as root, which PostgreSQL refuses), and
asking pg_isready whether a server accepts connections yet (:func:`wait_accepting`).

tests/pgserver.py's ``PostgresServer`` runs initdb, pg_ctl, psql and pg_isready with these.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

#: Environment variable that may point at a directory holding ``initdb``/``pg_ctl``.
PG_BIN_ENV = "SHOAL_PG_BIN"

_REQUIRED_TOOLS = ("initdb", "pg_ctl", "postgres")
_INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found in "
    f"/usr/lib/postgresql/*/bin, ${PG_BIN_ENV} or on PATH. Install them, e.g. "
    "`apt-get install postgresql` (Debian/Ubuntu) or `dnf install postgresql-server` "
    f"(Fedora/RHEL), or set {PG_BIN_ENV} to the directory that contains them."
)


def _version_key(bin_dir: Path) -> tuple[int, ...]:
    """Sort key for ``/usr/lib/postgresql/<version>/bin`` (non-numeric sorts first)."""
    numbers = re.findall(r"\d+", bin_dir.parent.name)
    return tuple(int(n) for n in numbers) if numbers else (-1,)


def _has_server_tools(bin_dir: Path) -> bool:
    """Whether ``bin_dir`` contains every server binary we need."""
    return all(os.access(bin_dir / tool, os.X_OK) for tool in _REQUIRED_TOOLS)


def find_pg_bin() -> Path:
    """Return the directory holding the PostgreSQL server binaries.

    Looks at ``$SHOAL_PG_BIN``, then the highest version under
    ``/usr/lib/postgresql/*/bin`` (Debian/Ubuntu layout), then ``pg_ctl`` on PATH.

    Raises:
        RuntimeError: no usable installation was found; the message says what to install.
    """
    override = os.environ.get(PG_BIN_ENV)
    if override:
        path = Path(override)
        if _has_server_tools(path):
            return path
        raise RuntimeError(f"{PG_BIN_ENV}={override} does not contain {', '.join(_REQUIRED_TOOLS)}")

    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    for bin_dir in candidates:
        if _has_server_tools(bin_dir):
            return bin_dir

    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl is not None and _has_server_tools(Path(pg_ctl).parent):
        return Path(pg_ctl).parent

    raise RuntimeError(_INSTALL_HINT)


def find_psql(bin_dir: Path) -> str:
    """Path of ``psql``: next to the server binaries in ``bin_dir``, else on PATH."""
    local = bin_dir / "psql"
    if os.access(local, os.X_OK):
        return str(local)
    found = shutil.which("psql")
    if found is None:
        raise RuntimeError(
            "psql was not found (needed to create the test database); "
            "install it, e.g. `apt-get install postgresql-client`"
        )
    return found


def tool_env() -> dict[str, str]:
    """Child environment: no stray PG* variables, C locale messages."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    env["LANG"] = "C"
    return env


def as_user(cmd: list[str], user: str) -> list[str]:
    """Wrap ``cmd`` so it runs as the system user ``user`` (we are root)."""
    runuser = shutil.which("runuser") or next(
        (p for p in ("/usr/sbin/runuser", "/sbin/runuser") if os.access(p, os.X_OK)), None
    )
    if runuser is not None:
        return [runuser, "-u", user, "--", *cmd]
    su = shutil.which("su") or "/bin/su"
    return [su, user, "-s", "/bin/sh", "-c", shlex.join(cmd)]


def run_tool(
    cmd: list[str],
    *,
    what: str,
    timeout: float,
    cwd: Path | None,
    log_tail: Callable[[], str],
    stdin: str | None = None,
) -> None:
    """Run a PostgreSQL tool with :func:`tool_env` in ``cwd``, raising on failure/timeout.

    The RuntimeError names ``what`` failed and holds the tool's output and ``log_tail()``
    (the end of the server's log).
    """
    try:
        result = subprocess.run(
            cmd,
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=tool_env(),
            cwd=cwd,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as err:
        raise RuntimeError(
            f"{what} timed out after {timeout:.0f}s: {shlex.join(cmd)}\n"
            f"--- server log tail ---\n{log_tail()}"
        ) from err
    if result.returncode != 0:
        raise RuntimeError(
            f"{what} failed (exit {result.returncode}): {shlex.join(cmd)}\n"
            f"--- stdout ---\n{result.stdout.strip()}\n"
            f"--- stderr ---\n{result.stderr.strip()}\n"
            f"--- server log tail ---\n{log_tail()}"
        )


def wait_accepting(
    bin_dir: Path,
    *,
    host: str,
    port: int,
    user: str,
    database: str,
    timeout: float,
    log_tail: Callable[[], str],
) -> None:
    """Wait (bounded by ``timeout`` seconds) until ``database`` on ``host:port`` accepts
    TCP connections as ``user``, asking pg_isready; RuntimeError with ``log_tail()`` if not.

    Returns at once when ``bin_dir`` has no pg_isready.
    """
    deadline = time.monotonic() + timeout
    pg_isready = bin_dir / "pg_isready"
    if not os.access(pg_isready, os.X_OK):
        return  # pg_ctl -w and the psql step already proved the server is up
    cmd = [
        str(pg_isready),
        "-q",
        "-h",
        host,
        "-p",
        str(port),
        "-U",
        user,
        "-d",
        database,
        "-t",
        "2",
    ]
    while True:
        result = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            env=tool_env(),
            timeout=10,
            check=False,
        )
        if result.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"PostgreSQL on {host}:{port} did not accept connections within "
                f"{timeout:.0f}s (pg_isready exit {result.returncode}).\n"
                f"--- server log tail ---\n{log_tail()}"
            )
        time.sleep(0.1)
