"""Commands on this node: process groups with live stdio, driven over channels.

A client opens a channel to the ``commands`` endpoint (``commands/RUN_ID`` for a
run's commands; the controller granted it only to the run's owner) and sends
commands over it; their output goes back on the same channel, within its
credit, so a slow client holds the node's reads of the pipe, not its memory.
What the controller keeps (the record, the dashboard's live view) is reported
to it separately and bounded: what ran, the first ``KEEP`` bytes of each
stream, the exit. A command's reports wait ``REPORT_HOLD`` seconds before the
first goes, so a short command's start and end reach the controller in one
message (it wakes once per command, not twice, while the client waits).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shlex
import signal
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import BinaryIO

import msgspec

from shoal.agent.child_env import child_environment
from shoal.agent.command_process import PipeReader, PipeWriter, Process
from shoal.agent.command_records import CommandLedger
from shoal.channel.aio import AsyncChannel
from shoal.channel.errors import ChannelError
from shoal.protocol import command_messages as cm

log = logging.getLogger("shoal.agent")
Report = Callable[[object], None]
Send = Callable[[cm.ToClient], Awaitable[None]]
ENDPOINT = "commands"
CHUNK = 256 * 1024  # most bytes read from a pipe at once
STDIN_LIMIT = 4 * 1024 * 1024  # input queued for a process before its channel waits
ENDED_RUNS = 4096  # ended runs remembered (to refuse a late channel's commands)
REPORT_HOLD = 0.05  # seconds a command's first reports wait to go with its end
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
    """One command: spawns it, streams its output to ``send`` (the channel) and,
    bounded, to ``report`` (the controller), feeds its stdin, and ends it. A
    run's command also keeps its record in ``ledger`` until the controller
    stored it."""

    def __init__(
        self,
        spec: cm.RunCommand,
        send: Send,
        report: Report,
        run: str,
        opener: str,
        ledger: CommandLedger | None = None,
    ):
        self.spec = spec
        self.id = spec.command
        self.run_id = run
        self.opener = opener
        self._send = send
        self._report = report
        self._ledger = ledger if run else None
        self.record = ledger.new_id() if self._ledger is not None else ""
        self._held: list[object] | None = []  # reports not sent yet (None: sent as made)
        self._release: asyncio.TimerHandle | None = None
        self.proc: Process | None = None
        self._spawn_error: Exception | None = None
        self._timed_out = False
        self._kept = {"stdout": 0, "stderr": 0}
        # Input may arrive before the process exists; a queue keeps it, in order.
        self._stdin: asyncio.Queue[tuple[bytes, bool]] = asyncio.Queue()
        self._stdin_bytes = 0
        self._stdin_closed = False  # input after the end of input is dropped
        self._stdin_room = asyncio.Event()
        self._stdin_room.set()
        self._ended = asyncio.Event()
        if spec.stdin is not None:
            self._queue_stdin(spec.stdin, True)

    async def run(self) -> None:
        """Start, stream, and report the exit; never raises (but may be cancelled)."""
        ended = False
        try:
            exit_message = await self._run()
            ended = True
        except ChannelError:
            exit_message = cm.CommandExit(command=self.id, error="its client went away")
        except Exception as exc:
            # One command going wrong must not take the agent (and every other task) down.
            log.exception("command %s failed inside the agent", self.id)
            exit_message = cm.CommandExit(command=self.id, error=f"agent error: {exc!r}")
        finally:
            self._ended.set()
            self._stdin_room.set()
            if not ended:
                with contextlib.suppress(Exception):
                    await self.kill(grace=0.1)
            if self.proc is not None:
                self.proc.close()
        # The client first: the report to the controller is not on its way.
        with contextlib.suppress(ChannelError):
            await self._send(exit_message)
        if self._ledger is not None:
            self._ledger.ended(self.record, exit_message)
        self._tell(exit_message)
        self.release_reports()

    def _tell(self, message: object) -> None:
        """Report to the controller: held back at first (see REPORT_HOLD), in order."""
        if self._held is None:
            self._report(message)
            return
        self._held.append(message)
        if self._release is None:
            loop = asyncio.get_running_loop()
            self._release = loop.call_later(REPORT_HOLD, self.release_reports)

    def release_reports(self) -> None:
        """Send what was held back; later reports go as they are made."""
        if self._release is not None:
            self._release.cancel()
            self._release = None
        held, self._held = self._held, None
        for message in held or ():
            self._report(message)

    def _started(self, pid: int | None) -> None:
        started = cm.CommandStarted(
            command=self.id,
            pid=pid,
            cmd=self.spec.cmd,
            run=self.run_id,
            opener=self.opener,
            record=self.record,
        )
        if self._ledger is not None:
            self._ledger.started(self.record, self.id, self.run_id, self.spec.cmd, self.opener, pid)
        self._tell(started)

    def spawn(self) -> None:
        """Start the process now, as the command arrives (not a loop turn later in
        ``run``): input, signals and kills that follow it on the channel find it.
        A failure is ``run``'s to tell."""
        try:
            self.proc = self._spawn()
        except Exception as exc:
            self._spawn_error = exc

    async def _run(self) -> cm.CommandExit:
        if self.proc is None and self._spawn_error is None:
            self.spawn()
        if self._spawn_error is not None:
            if not isinstance(self._spawn_error, OSError):
                raise self._spawn_error
            self._started(None)
            error = f"cannot start {self.spec.cmd!r}: {self._spawn_error}"
            return cm.CommandExit(command=self.id, error=error)
        assert self.proc is not None
        await self._send(cm.CommandStarted(command=self.id, pid=self.proc.pid))
        self._started(self.proc.pid)
        try:
            code = await self._supervise(self.proc)
        except asyncio.CancelledError:
            await asyncio.shield(self.kill(grace=0.2))
            raise
        error = (
            f"timed out after {self.spec.timeout:g} s and was killed" if self._timed_out else None
        )
        return cm.CommandExit(command=self.id, code=code, error=error, timed_out=self._timed_out)

    async def _supervise(self, proc: Process) -> int:
        """Stream the output, feed the input, enforce the timeout; the return code."""
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._pump(proc.stdout, "stdout"))
                tg.create_task(self._pump(proc.stderr, "stderr"))
                helpers = [tg.create_task(self._feed_stdin(proc.stdin))]
                if self.spec.timeout:
                    helpers.append(tg.create_task(self._timeout(self.spec.timeout)))
                code = await proc.wait()
                for helper in helpers:
                    helper.cancel()
        except* ChannelError as group:
            raise group.exceptions[0] from None
        return code

    def _spawn(self) -> Process:
        env = line_buffered(child_environment(self.spec.env))
        # `~` is this node's home, as a shell's `cd ~/x` would have it.
        cwd = os.path.expanduser(self.spec.cwd) if self.spec.cwd else None
        if _SHELL_SYNTAX.search(self.spec.cmd) is None and self.spec.cmd.strip():
            # Builtins (exit, cd, ...) and missing programs are the shell's business.
            with contextlib.suppress(FileNotFoundError, PermissionError):
                return Process.start(shlex.split(self.spec.cmd), cwd=cwd, env=env)
        return Process.start(["/bin/sh", "-c", self.spec.cmd], cwd=cwd, env=env)

    async def _pump(self, pipe: PipeReader, name: str) -> None:
        while chunk := await pipe.read(CHUNK):
            # Waits while the channel's credit is spent: the pipe fills, the process waits.
            await self._send(cm.CommandOutput(command=self.id, stream=name, data=chunk))
            kept = self._kept[name]
            if kept <= cm.KEEP:
                # One byte past KEEP tells the controller the record is truncated.
                part = chunk[: cm.KEEP + 1 - kept]
                self._kept[name] = kept + len(part)
                if self._ledger is not None:
                    self._ledger.output(self.record, name, part)
                self._tell(cm.CommandOutput(command=self.id, stream=name, data=part))

    async def _timeout(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self._timed_out = True
        await self.kill(grace=1.0)

    async def write_stdin(self, data: bytes, close: bool) -> None:
        """Queue input; waits while much is queued (the process reads slowly), so
        the channel's credit holds the client back."""
        while self._stdin_bytes >= STDIN_LIMIT and not self._ended.is_set():
            self._stdin_room.clear()
            await self._stdin_room.wait()
        if not self._ended.is_set():
            self._queue_stdin(data, close)

    def _queue_stdin(self, data: bytes, close: bool) -> None:
        if self._stdin_closed:
            return
        self._stdin_closed = close
        self._stdin_bytes += len(data)
        self._stdin.put_nowait((data, close))

    async def _feed_stdin(self, pipe: PipeWriter) -> None:
        while True:
            data, close = await self._stdin.get()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                if data:
                    await pipe.write(data)
            if close:
                pipe.close()
            self._stdin_bytes -= len(data)
            self._stdin_room.set()
            if close:
                return

    def abandon(self) -> None:
        """End the process group at once and close the pipes (``run`` never ran)."""
        self.signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.close()

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, sig)

    async def kill(self, grace: float = 1.0) -> None:
        """TERM the group; KILL whatever is left after ``grace`` (ignoring TERM is no escape)."""
        if self.proc is None:
            return
        self.signal(signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.proc.wait(), grace)
        # The leader may be gone while children that ignored TERM live on in the group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)


class CommandService:
    """Serves this node's ``commands`` endpoint; ``report`` sends to the controller,
    ``clock()`` is the controller's time as this node knows it.

    ``running`` holds every command running here, by id (the agent's Hello lists
    them); ``ledger`` the records of run commands the controller has not
    confirmed yet. A channel's commands end when it does.
    """

    def __init__(self, report: Report, clock: Callable[[], float] = time.time) -> None:
        self.report = report
        self.running: dict[str, CommandRunner] = {}
        self.ledger = CommandLedger(clock)
        self._ended_runs: OrderedDict[str, None] = OrderedDict()

    async def serve(self, channel: AsyncChannel) -> None:
        """Run what comes over ``channel`` until it ends; then end its commands."""
        await self._serve(channel, channel.endpoint.partition("/")[2])

    async def _serve(self, channel: AsyncChannel, run: str) -> None:

        async def send(message: cm.ToClient) -> None:
            # Queued in call order: a command's Started, output and Exit stay in order.
            await channel.send(cm.encode(message))

        mine: dict[str, CommandRunner] = {}
        uploads: dict[str, _Upload] = {}
        async with asyncio.TaskGroup() as tg:
            try:
                async for body in channel:
                    try:
                        message = cm.decode_to_node(body)
                    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                        await channel.close(f"a malformed command message: {exc}"[:300])
                        return
                    if isinstance(message, cm.RunCommand):
                        self._start(message, run, channel.peer, send, mine, tg)
                    elif isinstance(message, cm.PutFile):
                        await self._put_file(message, uploads, send)
                    else:
                        runner = mine.get(message.command)
                        if runner is not None:
                            await self._drive(runner, message, tg)
            except ChannelError as exc:
                log.info("the command channel from %s ended: %s", channel.peer, exc)
            finally:
                for upload in uploads.values():
                    upload.abandon()
                # A client that goes away takes its running commands with it.
                for runner in mine.values():
                    tg.create_task(runner.kill(grace=0.5))

    def _start(
        self,
        spec: cm.RunCommand,
        run: str,
        opener: str,
        send: Send,
        mine: dict[str, CommandRunner],
        tg: asyncio.TaskGroup,
    ) -> None:
        if spec.command in mine or spec.command in self.running or not spec.command:
            error = f"command id {spec.command!r} is empty or already in use"
            tg.create_task(_answer(send, cm.CommandExit(command=spec.command, error=error)))
            return
        if run in self._ended_runs:
            error = f"run {run!r} is over; it takes no more commands"
            tg.create_task(_answer(send, cm.CommandExit(command=spec.command, error=error)))
            return
        runner = CommandRunner(spec, send, self.report, run, opener, self.ledger)
        mine[runner.id] = self.running[runner.id] = runner
        runner.spawn()

        def done(task: asyncio.Task[None], cid: str = runner.id) -> None:
            mine.pop(cid, None)
            self.running.pop(cid, None)
            if task.cancelled():
                runner.abandon()  # cancelled before it ran: its process is still ours

        tg.create_task(runner.run()).add_done_callback(done)

    async def _drive(
        self, runner: CommandRunner, message: cm.ToNode, tg: asyncio.TaskGroup
    ) -> None:
        if isinstance(message, cm.CommandInput):
            await runner.write_stdin(message.data, message.close)
        elif isinstance(message, cm.CommandSignal):
            runner.signal(message.signal)
        elif isinstance(message, cm.CommandKill):
            tg.create_task(runner.kill(message.grace))

    async def _put_file(self, part: cm.PutFile, uploads: dict[str, _Upload], send: Send) -> None:
        upload = uploads.get(part.command)
        if upload is None:
            upload = uploads[part.command] = _Upload(part.path, part.mode)
        if upload.error is None:
            upload.error = await asyncio.to_thread(upload.write, part.data, part.more)
            if upload.error:
                await send(cm.CommandExit(command=part.command, error=upload.error))
            elif not part.more:
                await send(cm.CommandExit(command=part.command, code=0))
        # A failed upload stays, so its parts still in flight start no new file.
        if not part.more:
            del uploads[part.command]

    # --- with the controller -----------------------------------------------------

    def resend_records(self) -> None:
        """After a reconnect: every record not confirmed yet, whole (each replaces
        what the controller has of its command). Reports held back go first, so
        nothing reported later is also in a record sent now."""
        for runner in self.running.values():
            runner.release_reports()
        for message in self.ledger.messages():
            self.report(message)

    def records_stored(self, message: cm.CommandsStored) -> None:
        self.ledger.stored(message.records)

    def end_run(self, message: cm.EndRun, tg: asyncio.TaskGroup) -> None:
        """The run is over: no new commands; with ``kill``, none running either."""
        self._ended_runs[message.run] = None
        while len(self._ended_runs) > ENDED_RUNS:
            self._ended_runs.popitem(last=False)
        for runner in list(self.running.values()):
            if runner.run_id == message.run:
                runner.release_reports()  # what they did so far goes before RunEnded
                if message.kill:
                    tg.create_task(runner.kill(0.5))
        # After every report of the run's commands so far (the reports are in order).
        self.report(cm.RunEnded(run=message.run))


async def _answer(send: Send, message: cm.ToClient) -> None:
    with contextlib.suppress(ChannelError):
        await send(message)


class _Upload:
    """A file being uploaded in parts: written beside its place, moved there whole."""

    def __init__(self, path: str, mode: int | None) -> None:
        self.path = path
        self.mode = mode
        self.target: Path | None = None
        self.partial: Path | None = None
        self.file: BinaryIO | None = None
        self.error: str | None = None  # once a part could not be written

    def write(self, data: bytes, more: bool) -> str | None:
        """Write a part (in a worker thread); the error, if it cannot."""
        try:
            if self.partial is None:
                self.target = Path(self.path).expanduser()
                self.target.parent.mkdir(parents=True, exist_ok=True)
                self.partial = self.target.with_name(f".{self.target.name}.{time.time_ns()}.part")
                self.file = open(self.partial, "wb")  # noqa: SIM115
            assert self.file is not None
            self.file.write(data)
            if not more:
                self.file.close()
                if self.mode is not None:
                    self.partial.chmod(self.mode)
                assert self.target is not None
                self.partial.replace(self.target)
                self.partial = None
        except OSError as exc:
            self.abandon()
            return f"cannot write {self.path}: {exc}"
        return None

    def abandon(self) -> None:
        if self.file is not None:
            with contextlib.suppress(OSError):
                self.file.close()
        if self.partial is not None:
            with contextlib.suppress(OSError):
                self.partial.unlink()
            self.partial = None
