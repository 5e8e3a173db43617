"""SIGUSR1 prints every asyncio task's stack to stderr: a look inside a stuck process."""

from __future__ import annotations

import asyncio
import contextlib
import io
import signal
import sys


def install() -> None:
    loop = asyncio.get_running_loop()

    def dump() -> None:
        out = io.StringIO()
        tasks = asyncio.all_tasks(loop)
        out.write(f"--- {len(tasks)} asyncio tasks ---\n")
        for task in tasks:
            out.write(f"{task.get_name()}:\n")
            coro = task.get_coro()
            # Walk the chain of awaited coroutines: get_stack() shows only the outermost.
            while coro is not None:
                frame = getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None)
                if frame is not None:
                    out.write(
                        f"  {frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}\n"
                    )
                coro = getattr(coro, "cr_await", None) or getattr(coro, "ag_await", None)
        sys.stderr.write(out.getvalue())
        sys.stderr.flush()

    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGUSR1, dump)
