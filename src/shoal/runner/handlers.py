"""Output handlers: where the lines of a command's stdout and stderr go."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from shoal.client.commands import deliver
from shoal.runner import output


class Console:
    """Print each line, formatted with ``fmt`` (``'%s'`` is the line)::

    s.run_cmd("make", stdout=Console(fmt=f"{s.id}: %s"))
    """

    def __init__(self, fmt: str = "%s") -> None:
        self.fmt = fmt

    def __call__(self, line: str) -> None:
        output.emit(self.fmt % line)

    def write_lines(self, lines: list[str]) -> None:
        output.emit_many([self.fmt % line for line in lines])


class File:
    """Write each line to a file on the client (``append=True`` keeps what is there)."""

    def __init__(self, path: str | Path, append: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a" if append else "w", encoding="utf-8")  # noqa: SIM115
        self._lock = threading.Lock()

    def __call__(self, line: str) -> None:
        with self._lock:
            self._file.write(line + "\n")

    def write_lines(self, lines: list[str]) -> None:
        with self._lock:
            self._file.write("\n".join(lines))
            self._file.write("\n")

    def flush(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()


class SubstrMatcher:
    """Remembers whether a line containing ``text`` was seen; ``wait()`` blocks until then::

    ready = SubstrMatcher("listening")
    server = s.run_cmd("./server", stdout=ready)
    ready.wait()
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.line: str | None = None
        self._seen = threading.Event()

    def __call__(self, line: str) -> None:
        if not self._seen.is_set() and self.text in line:
            self.line = line
            self._seen.set()

    def wait(self, timeout: float | None = None) -> bool:
        """True once the text appeared; False if ``timeout`` seconds passed first."""
        return self._seen.wait(timeout)

    @property
    def matched(self) -> bool:
        return self._seen.is_set()


Handler = Callable[[str], None]


def combine(
    given: Handler | list[Handler] | tuple[Handler, ...] | None, default: Handler
) -> Handler:
    """One callable for the handlers a user gave (one, a list, or None for the default)."""
    if given is None:
        return default
    handlers = list(given) if isinstance(given, list | tuple) else [given]
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


def flush(handler: Handler) -> None:
    for h in getattr(handler, "handlers", [handler]):
        flusher = getattr(h, "flush", None)
        if callable(flusher):
            flusher()
