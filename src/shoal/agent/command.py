"""Commands on this node: a process group with live stdio, driven from a client."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shlex
import signal
from collections.abc import Callable
from pathlib import Path

from shoal.agent.child_env import child_environment
from shoal.protocol import CommandExit, CommandOutput, CommandStarted, PutFile, RunCommand

log = logging.getLogger("shoal.agent")
Emit = Callable[[object], None]
CHUNK = 64 * 1024
# A line with none of these runs without a shell: one exec less per command.
_SHELL_SYNTAX = re.compile(r"[|&;<>()$`\\\"'*?\[\]#~=%{}!\n]")
# Programs block-buffer stdout into a pipe. coreutils' stdbuf library, preloaded
# (and inherited by a shell's children), makes them write line by line, so output
# arrives as written; set up here as `stdbuf -oL -eL` would, without its exec.
_LIBSTDBUF = next(
    (
        path
        for path in (
            "/usr/libexec/coreutils/libstdbuf.so",
            "/usr/lib/coreutils/libstdbuf.so",
            "/usr/local/libexec/coreutils/libstdbuf.so",
        )
        if os.path.exists(path)
    ),
    None,
)


def line_buffered(env: dict[str, str]) -> dict[str, str]:
    """``env`` with stdbuf's preload set for line-buffered stdout and stderr."""
    if _LIBSTDBUF is None:
        return env
    preload = env.get("LD_PRELOAD")
    return {
        **env,
        "LD_PRELOAD": f"{_LIBSTDBUF} {preload}" if preload else _LIBSTDBUF,
        "_STDBUF_O": "L",
        "_STDBUF_E": "L",
    }


class CommandRunner:
    def __init__(self, spec: RunCommand, emit: Emit) -> None:
        self.spec = spec
        self.id = spec.command
        self.emit = emit
        self.proc: asyncio.subprocess.Process | None = None
        self._outstanding = 0
        self._acked = asyncio.Event()
        self._timed_out = False
        self._killed = False
        # Input may arrive before the process exists; a queue keeps it, in order.
        self._stdin: asyncio.Queue[tuple[bytes, bool]] = asyncio.Queue()
        if spec.stdin is not None:
            self._stdin.put_nowait((spec.stdin, True))

    async def run(self) -> None:
        """Start, stream, and report the exit; never raises (but may be cancelled)."""
        try:
            await self._run()
        except Exception as exc:
            # One command going wrong must not take the agent (and every other task) down.
            log.exception("command %s failed inside the agent", self.id)
            with contextlib.suppress(Exception):
                await self.kill(grace=0.1)
            self.emit(CommandExit(command=self.id, error=f"agent error: {exc!r}"))

    async def _run(self) -> None:
        try:
            self.proc = await self._spawn()
        except OSError as exc:
            self.emit(CommandExit(command=self.id, error=f"cannot start {self.spec.cmd!r}: {exc}"))
            return
        self.emit(CommandStarted(command=self.id, pid=self.proc.pid))
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._pump(self.proc.stdout, "stdout"))
                tg.create_task(self._pump(self.proc.stderr, "stderr"))
                helpers = [tg.create_task(self._feed_stdin())]
                if self.spec.timeout:
                    helpers.append(tg.create_task(self._timeout(self.spec.timeout)))
                code = await self.proc.wait()
                for helper in helpers:
                    helper.cancel()
        except asyncio.CancelledError:
            await asyncio.shield(self.kill(grace=0.2))
            raise
        error = (
            f"timed out after {self.spec.timeout:g} s and was killed" if self._timed_out else None
        )
        self.emit(CommandExit(command=self.id, code=code, error=error, timed_out=self._timed_out))

    async def _spawn(self) -> asyncio.subprocess.Process:
        env = line_buffered(child_environment(self.spec.env))
        common = {
            "stdin": asyncio.subprocess.PIPE,
            "stdout": asyncio.subprocess.PIPE,
            "stderr": asyncio.subprocess.PIPE,
            "start_new_session": True,  # its own process group: kill reaches its children
            "cwd": self.spec.cwd or None,
            "env": env,
        }
        if _SHELL_SYNTAX.search(self.spec.cmd) is None and self.spec.cmd.strip():
            # Builtins (exit, cd, ...) and missing programs are the shell's business.
            with contextlib.suppress(FileNotFoundError, PermissionError):
                return await asyncio.create_subprocess_exec(*shlex.split(self.spec.cmd), **common)
        return await asyncio.create_subprocess_exec("/bin/sh", "-c", self.spec.cmd, **common)

    async def _pump(self, stream: asyncio.StreamReader | None, name: str) -> None:
        if stream is None:
            return
        while chunk := await stream.read(CHUNK):
            # Back-pressure: a slow client holds the node's reads, not its memory.
            while self._outstanding >= self.spec.window:
                self._acked.clear()
                await self._acked.wait()
            self._outstanding += len(chunk)
            self.emit(CommandOutput(command=self.id, stream=name, data=chunk))

    def ack(self, consumed: int) -> None:
        self._outstanding = max(0, self._outstanding - consumed)
        self._acked.set()

    async def _timeout(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self._timed_out = True
        await self.kill(grace=1.0)

    def write_stdin(self, data: bytes, close: bool) -> None:
        self._stdin.put_nowait((data, close))

    async def _feed_stdin(self) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        pipe = self.proc.stdin
        while True:
            data, close = await self._stdin.get()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                if data:
                    pipe.write(data)
                    await pipe.drain()
                if close:
                    pipe.close()
                    return

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, sig)

    async def kill(self, grace: float = 1.0) -> None:
        """TERM the group; KILL whatever is left after ``grace`` (ignoring TERM is no escape)."""
        if self.proc is None:
            return
        self._killed = True
        self.signal(signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.proc.wait()), grace)
        # The leader may be gone while children that ignored TERM live on in the group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)


def put_file(spec: PutFile) -> CommandExit:
    """Write an uploaded file; the answer says where it went or why it could not."""
    try:
        path = Path(spec.path).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(spec.data)
        if spec.mode is not None:
            path.chmod(spec.mode)
    except OSError as exc:
        return CommandExit(command=spec.command, error=f"cannot write {spec.path}: {exc}")
    return CommandExit(command=spec.command, code=0)
