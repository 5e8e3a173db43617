"""Servers (nodes) an experiment runs commands on, and lists of them."""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from shoal.runner import handlers as out
from shoal.runner.command import Command, finished, raise_failed_in_background
from shoal.runner.context import current
from shoal.runner.stdin_controller import StdinController

DEFAULT_PORT = 20000


class Server:
    """A node by its shoal name (``id``); ``ip`` and ``port`` are kept as attributes.

    Extra keyword arguments become attributes, for filtering::

        Server("node01", "10.0.0.1", 20000, gpu=True)
    """

    def __init__(self, id: str, ip: str, port: int = DEFAULT_PORT, **attributes: Any) -> None:
        if not isinstance(id, str) or not id:
            raise TypeError(f"a Server id must be a non-empty string, got {id!r}")
        self.id = id
        self.ip = ip
        self.port = port
        self.working_directory: str | None = None
        for key in attributes:
            if key.startswith("_"):
                raise ValueError(f"Server attribute {key!r}: names starting with _ are reserved")
            if hasattr(self, key):
                raise ValueError(f"Server attribute {key!r} would replace Server.{key}")
        self.attributes = dict(attributes)
        for key, value in attributes.items():
            setattr(self, key, value)

    def cd(self, directory: str | None) -> None:
        """Run later commands in ``directory`` on the node, as distexprunner did: it
        replaces the last one (a relative path is relative to where the agent
        runs, ``~`` is the home directory there; None: the agent's own). Each
        experiment starts in its ServerList's ``working_directory``."""
        self.working_directory = directory

    def run_cmd(
        self,
        cmd: str,
        stdout: Any = None,
        stderr: Any = None,
        stdin: str | bytes | StdinController | None = None,
        env: Mapping[str, object] | None = None,
        timeout: float | None = None,
    ) -> Command:
        """Start ``cmd`` on this node and return at once; its output reaches the handlers live.

        Handlers get each line with its newline, as distexprunner gave them.
        ``stdin`` text: written to the command and closed. A ``StdinController``:
        you type into the command when it ``wait()``s. Not given: write later
        with ``cmd.stdin(...)``. ``timeout``: the command is killed after that
        many seconds and ``wait()`` returns ``ReturnCode.TIMEOUT``.
        """
        context = current()
        on_stdout = out.combine(stdout, out.Console(fmt=f"{self.id}: %s"))
        on_stderr = out.combine(stderr, out.Console(fmt=f"{self.id}: %s"))
        if isinstance(stdin, StdinController):
            controller, data = stdin, None
        elif stdin is None or isinstance(stdin, str | bytes):
            controller, data = None, stdin.encode() if isinstance(stdin, str) else stdin
        else:
            raise TypeError(f"run_cmd stdin: text, bytes or a StdinController, got {stdin!r}")
        state = context.channel.run(
            context.nodes[self.id],
            cmd,
            handlers={"stdout": out.WithNewline(on_stdout), "stderr": out.WithNewline(on_stderr)},
            experiment=context.experiment_id,
            env={k: str(v) for k, v in (env or {}).items()},
            cwd=self.working_directory,
            timeout=timeout,
            stdin=data,
            on_exit=lambda s: finished(s, [on_stdout, on_stderr], context),
        )
        command = Command(context, self, state)
        with context.lock:
            context.running.append(command)
        if controller is not None:
            controller.add(command)
        return command

    def send_file(self, src: str | os.PathLike[str], target: str) -> None:
        """Upload a local file to ``target`` on the node (relative to the working directory)."""
        context = current()
        raise_failed_in_background(context)  # a blocking call, as upstream's was
        source = Path(src)
        if self.working_directory and not target.startswith("/"):
            target = posixpath.join(self.working_directory, target)
        context.channel.put_file(
            context.nodes[self.id], target, source.read_bytes(), source.stat().st_mode & 0o777
        )

    def __repr__(self) -> str:
        return f"Server({self.id!r}, {self.ip!r}, {self.port})"


Selector = int | str | slice | Callable[[Server], bool] | tuple


class ServerList:
    """The servers of an experiment; index by position, id, slice, filter or a tuple of these.

    ::

        servers[0]; servers["node01"]; servers[1:]; servers[lambda s: s.gpu]
        servers[0, "node03"]
    """

    def __init__(
        self, *servers: Server | Iterable[Server], working_directory: str | None = None
    ) -> None:
        servers = tuple(_servers(servers))
        ids = [s.id for s in servers]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"server ids must be unique in a ServerList: {duplicates}")
        self._servers = list(servers)
        # Applied when an experiment of this list starts, not now: the servers
        # may be in other lists, of other experiments, with other directories.
        self.working_directory = working_directory

    def __getitem__(self, key: Selector) -> Any:
        if isinstance(key, int):
            return self._servers[key]
        if isinstance(key, str):
            for s in self._servers:
                if s.id == key:
                    return s
            raise KeyError(f"no server {key!r} in this list: {[s.id for s in self._servers]}")
        if isinstance(key, slice):
            return ServerList(*self._servers[key])
        if isinstance(key, tuple):
            picked: list[Server] = []
            for part in key:
                got = self[part]
                for s in got if isinstance(got, ServerList) else [got]:
                    if s not in picked:
                        picked.append(s)
            return ServerList(*picked)
        if callable(key):
            return ServerList(*[s for s in self._servers if key(s)])
        raise TypeError(f"cannot index a ServerList with {key!r}")

    def __iter__(self) -> Iterator[Server]:
        return iter(self._servers)

    def __len__(self) -> int:
        return len(self._servers)

    def cd(self, directory: str | None = "~/") -> None:
        """``Server.cd`` on every server of the list (by default to the home directory)."""
        for s in self._servers:
            s.cd(directory)

    def connect_to_all(self) -> None:
        """Older distexprunner's explicit connect: shoal reaches the nodes of each
        experiment by itself, so there is nothing to do."""

    def disconnect_from_all(self) -> None:
        """Older distexprunner's explicit disconnect: nothing to do (see connect_to_all)."""

    @property
    def unique_by_ip(self) -> ServerList:
        """The first server of each address (one per machine)."""
        first: dict[str, Server] = {}
        for s in self._servers:
            first.setdefault(s.ip, s)
        return ServerList(first.values())

    @property
    def ids(self) -> list[str]:
        return [s.id for s in self._servers]

    def __repr__(self) -> str:
        return f"ServerList({', '.join(repr(s) for s in self._servers)})"


def _servers(items: Iterable[object]) -> Iterator[Server]:
    """Servers given one by one or in (nested) iterables, in order."""
    for item in items:
        if isinstance(item, Server):
            yield item
        elif isinstance(item, Iterable) and not isinstance(item, str | bytes):
            yield from _servers(item)
        else:
            raise TypeError(f"ServerList takes Servers or iterables of them, got {item!r}")
