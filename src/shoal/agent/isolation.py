"""One unprivileged OS user per shoal user for graph tasks (``shoal agent --isolate-users``).

An agent run as root with ``--isolate-users`` runs each user's graph tasks (Python
workers and the programs Execute starts) under a system account of that user's
own, ``shoal-<login>``, created on first need. That user's object folders
(``objects/<session>``) and work folder are 0700 and owned by the account, so
another user's task can neither list nor read them. Without the option every
user's tasks run as the agent's own OS user and can read each other's objects.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import logging
import os
import pwd
import re
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("shoal.agent.graph")

PREFIX = "shoal-"
NAME_LIMIT = 32  # what useradd accepts on common systems
_BAD = re.compile(r"[^a-z0-9_-]")
USERADD_ATTEMPTS = 5  # useradd fails while another holds /etc/passwd's lock
# Taken by every agent of the host around finding or creating an account.
ACCOUNTS_LOCK = "/run/shoal-accounts.lock" if os.path.isdir("/run") else "/tmp/shoal-accounts.lock"


class IsolationError(Exception):
    """A user's tasks cannot be given an OS user of their own; ``str()`` says why."""


@dataclass(frozen=True)
class Account:
    """The OS user a shoal user's tasks run as."""

    name: str
    uid: int
    gid: int


def account_name(login: str) -> str:
    """``shoal-<login>``, made a valid user name (a hash tells apart logins that clash)."""
    clean = _BAD.sub("-", login.lower())
    name = PREFIX + clean
    if clean != login or len(name) > NAME_LIMIT:
        digest = hashlib.sha256(login.encode()).hexdigest()[:8]
        name = f"{PREFIX}{clean[: NAME_LIMIT - len(PREFIX) - 9]}-{digest}"
    return name


def setup_problem(graph_root: Path | None) -> str:
    """Why ``--isolate-users`` cannot work here, or "" when it can."""
    if os.geteuid() != 0:
        return "--isolate-users needs the agent to run as root (it switches to each user's uid)"
    if shutil.which("useradd") is None:
        return "--isolate-users needs `useradd` to create the users' accounts"
    if graph_root is not None:
        for folder in [graph_root, *graph_root.parents]:
            if folder.exists() and not folder.stat().st_mode & stat.S_IXOTH:
                return (
                    f"--isolate-users: the users' accounts cannot reach {graph_root}, "
                    f"because {folder} is not searchable by others (chmod o+x {folder}, "
                    "or choose another --workdir)"
                )
    return ""


class UserIsolation:
    """Finds or creates the account of each shoal user, once per agent."""

    def __init__(self) -> None:
        self._accounts: dict[str, Account] = {}
        self._lock = asyncio.Lock()

    async def account(self, login: str) -> Account:
        """The account of ``login``'s tasks, created if it does not exist yet."""
        if not login:
            raise IsolationError("the controller did not say which user the task belongs to")
        found = self._accounts.get(login)
        if found is not None:
            return found
        async with self._lock:
            found = self._accounts.get(login)
            if found is None:
                found = await self._find_or_create(account_name(login))
                self._accounts[login] = found
        return found

    async def _find_or_create(self, name: str) -> Account:
        return await asyncio.to_thread(_find_or_create, name)


def _find_or_create(name: str) -> Account:
    """Look ``name`` up, creating it if it is missing, under a lock every agent of
    this host takes: two useradds of one name at once were seen to both succeed,
    the second overwriting the first's entry (and uid) in /etc/passwd."""
    with open(ACCOUNTS_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        message = ""
        for _ in range(USERADD_ATTEMPTS):
            entry = _lookup(name)
            if entry is not None:
                break
            done = subprocess.run(
                [
                    "useradd",
                    "--system",
                    "--no-create-home",
                    "--home-dir",
                    "/nonexistent",
                    "--shell",
                    "/usr/sbin/nologin",
                    "--user-group",
                    name,
                ],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                check=False,
            )
            message = done.stderr.strip()
            if done.returncode == 0:
                log.info("created OS user %s for graph tasks", name)
        else:
            entry = _lookup(name)
    if entry is None:
        raise IsolationError(f"cannot create OS user {name!r}: {message or 'useradd failed'}")
    if entry.pw_uid == 0 or entry.pw_gid == 0:
        raise IsolationError(f"OS user {name!r} is privileged (uid or gid 0); refusing it")
    return Account(name, entry.pw_uid, entry.pw_gid)


def _lookup(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def private_folder(path: Path, account: Account | None) -> None:
    """Make ``path`` (if missing) a folder only ``account`` (None: this process) can use."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if account is not None:
        os.chown(path, account.uid, account.gid)
    os.chmod(path, 0o700)


__all__ = [
    "Account",
    "IsolationError",
    "UserIsolation",
    "account_name",
    "private_folder",
    "setup_problem",
]
