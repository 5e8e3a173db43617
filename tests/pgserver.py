"""A throwaway PostgreSQL server for the test suite.

Usage::

    with PostgresServer() as pg:
        engine = create_async_engine(pg.url)

The server lives in its own temporary directory, listens on a free TCP port on
127.0.0.1 (plus a unix socket inside the temporary directory), is tuned for speed
rather than durability (``fsync=off`` and friends) and is stopped and deleted on
exit.  PostgreSQL refuses to run as root, so when the tests run as uid 0 every
server command is run as the ``postgres`` system user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import stat
import tempfile
from pathlib import Path
from types import TracebackType

from pg_tools import as_user, find_pg_bin, find_psql, run_tool, wait_accepting
from pids import wait_pid_gone
from processes import free_port

__all__ = ["PostgresServer"]

# Longest unix socket path the kernel accepts (sun_path is 108 bytes incl. NUL).
_MAX_SOCKET_PATH = 107

# Settings appended to postgresql.conf: speed over durability, nothing surprising.
_FAST_SETTINGS: dict[str, str] = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "autovacuum": "off",
    "huge_pages": "off",
    "shared_buffers": "32MB",
    "max_connections": "100",
    "logging_collector": "off",
    "password_encryption": "'scram-sha-256'",
    "timezone": "'UTC'",
}


def _traversable_by_others(path: Path) -> bool:
    """Whether every directory from ``/`` to ``path`` has the other-execute bit."""
    for part in [path, *path.parents]:
        try:
            if not part.stat().st_mode & stat.S_IXOTH:
                return False
        except OSError:
            return False
    return True


class PostgresServer:
    """A throwaway PostgreSQL server, used as a context manager.

    On enter: create a temp dir, ``initdb``, start the server on a free port of
    127.0.0.1 and create the login role and database ``shoal`` (owned by that role,
    password authentication over TCP). On exit: ``pg_ctl stop -m immediate`` and
    delete the temp dir.

    Attributes (valid inside the ``with`` block): ``url`` (SQLAlchemy asyncpg URL),
    ``dsn`` (plain libpq/asyncpg DSN), ``host``, ``port``, ``user``, ``password``,
    ``database``, ``base_dir``, ``data_dir``, ``socket_dir`` and ``log_file``.
    """

    host = "127.0.0.1"
    user = "shoal"
    database = "shoal"
    os_user = "postgres"  #: system user that runs the server when we are root

    def __init__(
        self,
        *,
        bin_dir: Path | None = None,
        superuser: bool = False,
        start_timeout: float = 30.0,
        command_timeout: float = 60.0,
        port_attempts: int = 3,
        durable: bool = False,
    ) -> None:
        """Configure (but do not start) the server.

        Args:
            bin_dir: directory with ``initdb``/``pg_ctl``; found by ``find_pg_bin`` if None.
            superuser: make the ``shoal`` role a superuser (default: owner of its database).
            start_timeout: seconds to wait for the server to accept connections.
            command_timeout: upper bound for any single helper command (initdb, psql...).
            port_attempts: how many free ports to try if the chosen one gets taken.
            durable: keep ``synchronous_commit`` on, so every commit a client saw
                survives :meth:`stop`. The fast default may lose the last commits
                in an immediate stop, which a test of an outage cannot tell from a
                controller that lost them.
        """
        self.bin_dir = bin_dir if bin_dir is not None else find_pg_bin()
        self.superuser = superuser
        self.start_timeout = start_timeout
        self.command_timeout = command_timeout
        self.port_attempts = max(1, port_attempts)
        self.durable = durable
        self.password = secrets.token_hex(16)
        self.port = 0
        self._base_dir: Path | None = None
        self._running = False
        self._as_root = os.geteuid() == 0

    # -- public API ---------------------------------------------------------------

    @property
    def url(self) -> str:
        """SQLAlchemy URL: ``postgresql+asyncpg://shoal:<password>@127.0.0.1:<port>/shoal``."""
        return (
            f"postgresql+asyncpg://{self.user}:{self.password}"
            f"@{self.host}:{self.port}/{self.database}"
        )

    @property
    def dsn(self) -> str:
        """Plain DSN for libpq/asyncpg: ``postgresql://shoal:<password>@127.0.0.1:<port>/shoal``."""
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{self.database}"

    @property
    def base_dir(self) -> Path:
        """The server's temporary directory (raises if the server is not set up)."""
        if self._base_dir is None:
            raise RuntimeError("PostgresServer is not running; use it as a context manager")
        return self._base_dir

    @property
    def data_dir(self) -> Path:
        """The cluster's data directory."""
        return self.base_dir / "data"

    @property
    def socket_dir(self) -> Path:
        """Directory holding the server's unix socket."""
        return self.base_dir / "sock"

    @property
    def log_file(self) -> Path:
        """The server log written by ``pg_ctl -l``."""
        return self.base_dir / "server.log"

    def log_tail(self, lines: int = 40) -> str:
        """Return the last ``lines`` lines of the server log ('' if there is none)."""
        if self._base_dir is None:
            return ""
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Stop the server as an outage would (immediate mode); its data is kept
        (every acknowledged commit only when the server was made ``durable``).

        Returns once the server process is gone; :meth:`start` brings it back.
        """
        if self._base_dir is None:
            raise RuntimeError("PostgresServer is not set up; use it as a context manager")
        if self._running:
            self._stop()

    def start(self) -> None:
        """Start a server stopped by :meth:`stop` again, on the same port.

        Returns once it accepts connections (clients reconnect to the same URL).
        """
        if self._base_dir is None:
            raise RuntimeError("PostgresServer is not set up; use it as a context manager")
        if self._running:
            return
        self._pg_ctl_start()
        self._running = True
        self._wait_ready()

    def __enter__(self) -> PostgresServer:
        """Create, start and provision the server; clean up fully if any step fails."""
        if self._base_dir is not None:
            raise RuntimeError("PostgresServer is already running")
        try:
            self._make_base_dir()
            self._initdb()
            self._start()
            self._provision()
            self._wait_ready()
        except BaseException:
            self._teardown()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server (immediate mode) and delete its temp dir."""
        self._teardown()

    # -- steps --------------------------------------------------------------------

    def _make_base_dir(self) -> None:
        """Create the temp dir, owned by the server's OS user and mode 0700."""
        parent = Path(tempfile.gettempdir())
        # The postgres user must be able to reach the dir, and the socket path must fit.
        too_long = len(str(parent)) + 40 > _MAX_SOCKET_PATH
        if too_long or (self._as_root and not _traversable_by_others(parent)):
            parent = Path("/tmp")
        base = Path(tempfile.mkdtemp(prefix="shoal-pg-", dir=parent))
        self._base_dir = base
        (base / "sock").mkdir()
        if self._as_root:
            try:
                entry = pwd.getpwnam(self.os_user)
            except KeyError:
                raise RuntimeError(
                    f"running as root, but there is no '{self.os_user}' system user to run "
                    "PostgreSQL as (PostgreSQL refuses to run as root); install the "
                    "`postgresql` package or run the tests as a non-root user"
                ) from None
            for path in (base, base / "sock"):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        for path in (base, base / "sock"):
            path.chmod(0o700)

    def _initdb(self) -> None:
        """Run initdb (trust on the unix socket, SCRAM over TCP) and tune the config."""
        pwfile = self.base_dir / "pwfile"
        pwfile.write_text(self.password + "\n")
        self._give_to_os_user(pwfile)
        try:
            self._run(
                [
                    str(self.bin_dir / "initdb"),
                    "--pgdata",
                    str(self.data_dir),
                    "--username",
                    "postgres",
                    "--pwfile",
                    str(pwfile),
                    "--auth-local",
                    "trust",
                    "--auth-host",
                    "scram-sha-256",
                    "--encoding",
                    "UTF8",
                    "--locale",
                    "C",
                    "--no-sync",
                ],
                what="initdb",
            )
        finally:
            pwfile.unlink(missing_ok=True)

        settings = dict(_FAST_SETTINGS)
        if self.durable:
            # fsync may stay off: stop() kills the server, not the machine, and the
            # kernel keeps what was written; only the WAL write at commit matters.
            settings["synchronous_commit"] = "on"
        settings["listen_addresses"] = f"'{self.host}'"
        settings["unix_socket_directories"] = f"'{self.socket_dir}'"
        conf = self.data_dir / "postgresql.conf"
        with conf.open("a") as fh:  # appending keeps the file's owner
            fh.write("\n# --- added by tests/pgserver.py ---\n")
            for key, value in settings.items():
                fh.write(f"{key} = {value}\n")

    def _start(self) -> None:
        """Start the server with ``pg_ctl -w``, retrying on another port if needed."""
        last_error: RuntimeError | None = None
        for _ in range(self.port_attempts):
            self.port = free_port()
            try:
                self._pg_ctl_start()
            except RuntimeError as err:
                last_error = err
                self._stop()  # in case it half-started
                log = self.log_tail(200).lower()
                if "could not bind" not in log and "could not create any tcp/ip" not in log:
                    break  # not a port clash: retrying will not help
                continue
            self._running = True
            return
        assert last_error is not None
        raise last_error

    def _pg_ctl_start(self) -> None:
        """``pg_ctl start -w`` on ``self.port``; raises RuntimeError if it fails."""
        self._run(
            [
                str(self.bin_dir / "pg_ctl"),
                "start",
                "-w",
                "-t",
                str(max(1, int(self.start_timeout))),
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-o",
                f"-p {self.port}",
            ],
            what="pg_ctl start",
            timeout=self.start_timeout + 10,
        )

    def _provision(self) -> None:
        """Create the ``shoal`` login role and the ``shoal`` database it owns."""
        attrs = "LOGIN SUPERUSER" if self.superuser else "LOGIN CREATEDB"
        script = (
            f"CREATE ROLE {self.user} {attrs} PASSWORD '{self.password}';\n"
            f"CREATE DATABASE {self.database} OWNER {self.user};\n"
        )
        self._run(
            [
                find_psql(self.bin_dir),
                "--no-psqlrc",
                "--quiet",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                str(self.socket_dir),
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                "postgres",
            ],
            what="creating role/database",
            stdin=script,
        )

    def _wait_ready(self) -> None:
        """Wait (bounded) until the ``shoal`` database accepts TCP connections."""
        wait_accepting(
            self.bin_dir,
            host=self.host,
            port=self.port,
            user=self.user,
            database=self.database,
            timeout=self.start_timeout,
            log_tail=self.log_tail,
        )

    def _teardown(self) -> None:
        """Stop the server if it may be running and delete the temp dir (idempotent)."""
        if self._base_dir is None:
            return
        try:
            if self._running or (self.data_dir / "postmaster.pid").exists():
                self._stop()
        finally:
            shutil.rmtree(self._base_dir, ignore_errors=True)
            self._base_dir = None
            self._running = False

    def _stop(self) -> None:
        """``pg_ctl stop -m immediate``; SIGKILL the postmaster if that fails.

        Returns once the postmaster process is gone (it reaps its children first),
        so no server process outlives the context manager.
        """
        pid = self._postmaster_pid()
        try:
            self._run(
                [
                    str(self.bin_dir / "pg_ctl"),
                    "stop",
                    "-w",
                    "-t",
                    "20",
                    "-m",
                    "immediate",
                    "-D",
                    str(self.data_dir),
                ],
                what="pg_ctl stop",
                timeout=30,
            )
        except RuntimeError:
            if pid is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        if pid is not None:
            wait_pid_gone(pid, timeout=10)
        self._running = False

    def _postmaster_pid(self) -> int | None:
        """The postmaster's pid from ``postmaster.pid``, if there is one."""
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    # -- helpers ------------------------------------------------------------------

    def _give_to_os_user(self, path: Path) -> None:
        """chown ``path`` to the server's OS user when running as root."""
        if self._as_root:
            entry = pwd.getpwnam(self.os_user)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _run(
        self,
        cmd: list[str],
        *,
        what: str,
        stdin: str | None = None,
        timeout: float | None = None,
    ) -> None:
        """Run a PostgreSQL tool (as the server's OS user), raising on failure/timeout."""
        run_tool(
            as_user(cmd, self.os_user) if self._as_root else cmd,
            what=what,
            timeout=self.command_timeout if timeout is None else timeout,
            cwd=self._base_dir,  # readable by the postgres user, unlike e.g. /root
            log_tail=self.log_tail,
            stdin=stdin,
        )
