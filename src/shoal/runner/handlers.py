"""Output handlers: where the lines of a command's stdout and stderr go.

A handler is any callable taking one line. Lines reach it as distexprunner
passed them: with their ``"\\n"``, so ``File`` writes them as they are and a
handler called directly behaves as it would under distexprunner.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TextIO

from shoal.client.commands import deliver
from shoal.runner import output


class Console:
    """Print each line without its trailing whitespace, formatted with ``fmt`` (``%s``)::

    s.run_cmd("make", stdout=Console(fmt=f"{s.id}: %s"))

    Older distexprunner's ``rstrip`` and ``end`` are taken too: ``rstrip=False``
    keeps the line's trailing whitespace but its newline, ``end`` is written
    after the formatted line. Each line still prints as a line of its own (shoal
    ends it), so an ``end`` without a newline does not glue lines together.
    """

    def __init__(self, fmt: str = "%s", rstrip: bool = True, end: str = "") -> None:
        self.fmt = fmt
        self.rstrip = rstrip
        self.end = end

    def _format(self, line: str) -> str:
        text = line.rstrip() if self.rstrip else line.rstrip("\r\n")
        # The line break is the output's own: one from `end` would print an empty line.
        return (self.fmt % text + self.end).rstrip("\r\n")

    def __call__(self, line: str) -> None:
        output.emit(self._format(line))

    def write_lines(self, lines: list[str]) -> None:
        output.emit_many([self._format(line) for line in lines])


class File:
    """Write each line, as it comes (newline included), to a file on the client.

    ``File("results", "run1.log", append=True, flush=True)``: the path is joined
    from its parts; ``append`` keeps what is there; ``flush`` writes every line
    through at once (otherwise the file is flushed when the command ends).
    """

    def __init__(
        self, path: str | os.PathLike[str], *parts: str, append: bool = False, flush: bool = False
    ) -> None:
        self.path = Path(path, *parts)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a" if append else "w", encoding="utf-8")  # noqa: SIM115
        self._flush_each = flush
        self._lock = threading.Lock()

    @property
    def file(self) -> TextIO:
        """The open file (distexprunner's attribute), e.g. to write a header first."""
        return self._file

    def __call__(self, line: str) -> None:
        with self._lock:
            self._file.write(line)
            if self._flush_each:
                self._file.flush()

    def write_lines(self, lines: list[str]) -> None:
        self.write_block("".join(lines))

    def write_block(self, text: str) -> None:
        """Write lines already joined, newlines included (the fast path for bulk output)."""
        with self._lock:
            self._file.write(text)
            if self._flush_each:
                self._file.flush()

    def flush(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()

    def __del__(self) -> None:
        file = getattr(self, "_file", None)
        if file is not None and not file.closed:
            file.close()


class SubstrMatcher:
    """Remembers whether a line containing ``text`` was seen; ``wait()`` blocks until then::

    ready = SubstrMatcher("listening")
    server = s.run_cmd("./server", stdout=ready)
    ready.wait()
    """

    def __init__(self, substr: str) -> None:
        self.text = substr
        self.reset()

    @property
    def substr(self) -> str:
        """distexprunner's name for ``text``."""
        return self.text

    def __call__(self, line: str) -> None:
        if not self._seen.is_set() and self.text in line:
            self.line = line
            self._seen.set()

    def wait(self, timeout: float | None = None) -> bool:
        """True once the text appeared; False if ``timeout`` seconds passed first.

        With raise_on_rc=True a command of the experiment that fails meanwhile
        (the one to print the text, say) raises BadReturnCode instead of
        leaving this waiting for a line that will never come.
        """
        # Imported here: command.py needs this module first.
        from shoal.runner.command import wait_watching

        return wait_watching(self._seen, timeout)

    def matched(self) -> bool:
        """Whether the text was seen (without waiting)."""
        return self._seen.is_set()

    def reset(self) -> None:
        """Forget the match: wait for the next line containing the text."""
        self.line: str | None = None
        self._seen = threading.Event()


class EnvParser:
    """Collects ``NAME=value`` lines (the output of ``env``) as attributes and items::

    env = EnvParser()
    s.run_cmd("env", stdout=env).wait()
    env["HOME"], env.PATH
    """

    def __call__(self, line: str) -> None:
        # distexprunner raised on a line without '=' (a multi-line value in `env`); skip it.
        name, sep, value = line.partition("=")
        if sep and name:
            self.__dict__[name] = value.rstrip()

    def __getitem__(self, name: str) -> str:
        return self.__dict__[name]

    def __contains__(self, name: object) -> bool:
        return name in self.__dict__

    def __repr__(self) -> str:
        return f"EnvParser({len(self.__dict__)} variables)"


Handler = Callable[[str], None]


def combine(given: Handler | Iterable[Handler] | None, default: Handler) -> Handler:
    """One callable for the handlers a user gave (one, any iterable of them, or None
    for the default). A callable iterable (an ``IterClassGen`` of handlers is not
    one) counts as one handler."""
    if given is None:
        return default
    handlers = [given] if callable(given) or not isinstance(given, Iterable) else list(given)
    for h in handlers:
        if not callable(h):
            raise TypeError(f"an output handler must be callable, got {h!r}")
    return handlers[0] if len(handlers) == 1 else AllOf(handlers)


class AllOf:
    """Several handlers for one stream."""

    def __init__(self, handlers: list[Handler]) -> None:
        self.handlers = handlers

    def __call__(self, line: str) -> None:
        for h in self.handlers:
            h(line)

    def write_lines(self, lines: list[str]) -> None:
        for h in self.handlers:
            deliver(h, lines)


class WithNewline:
    """Gives ``handler`` the lines the channel splits, with their newline put back."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler

    def __call__(self, line: str) -> None:
        self.handler(line + "\n")

    def write_lines(self, lines: list[str]) -> None:
        block = getattr(self.handler, "write_block", None)
        if block is not None:
            # One join instead of a new string per line: bulk output stays fast.
            if lines:
                block("\n".join(lines) + "\n")
        else:
            deliver(self.handler, [line + "\n" for line in lines])

    def write_block(self, text: str) -> None:
        """Whole lines, each with its "\\n": to a handler that takes blocks as they
        are (bulk output is not split into lines only to be joined again)."""
        block = getattr(self.handler, "write_block", None)
        if block is not None:
            block(text)
        else:
            self.write_lines(text[:-1].split("\n"))


def flush(handler: Handler) -> None:
    for h in getattr(handler, "handlers", [handler]):
        flusher = getattr(h, "flush", None)
        if callable(flusher):
            flusher()
