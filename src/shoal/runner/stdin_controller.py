"""Typing into running commands from the terminal: ``StdinController``, ``forward_stdin_to``.

On a terminal the keys are read raw, as distexprunner read them; from a pipe or
file (a script feeding the controller, a test), input is read line by line.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import select
import sys
import termios
import tty
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, TextIO

from shoal.runner.command import raise_failed_in_background

if TYPE_CHECKING:
    from shoal.runner.command import Command

CTRL_C, CTRL_D, CTRL_H, BACKSPACE, ESC = "\x03", "\x04", "\x08", "\x7f", "\x1b"
POLL = 0.2  # how soon the controller notices that its commands have all ended


@contextlib.contextmanager
def _raw(fd: int) -> Iterator[bool]:
    """Raw keys on a terminal (restored afterwards, also on errors); False elsewhere."""
    if not os.isatty(fd):
        yield False
        return
    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    try:
        yield True
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _text(fd: int, alive: Callable[[], bool]) -> Iterator[str]:
    """What arrives on ``fd``, decoded, until end of input or until ``alive()`` is False."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    while True:
        ready, _, _ = select.select([fd], [], [], POLL)
        if not ready:
            if not alive():
                return
            continue
        data = os.read(fd, 4096)
        if not data:
            return
        yield decoder.decode(data)


class StdinController:
    """Lets you type into commands while they run: pass it as ``run_cmd(..., stdin=...)``,
    then ``wait()`` shows a menu of them; pick one by number and type lines to it::

        controller = StdinController()
        cmd = s.run_cmd(f"{GDB} ./crashes", stdout=File("gdb.log", flush=True), stdin=controller)
        controller.wait()

    On a terminal: Enter sends the line, Ctrl-D closes the command's stdin and
    returns, Ctrl-C returns, Ctrl-H shows the menu again. From a pipe: the first
    line picks the command, the next ones go to it, end of input closes its stdin.
    ``wait()`` also returns once every command it knows has ended.
    """

    def __init__(self, input: TextIO | None = None, output: TextIO | None = None) -> None:
        self._input = input
        self._output = output
        self.cmds: list[Command] = []
        self._active: Command | None = None
        self._typed = ""
        self._eol = "\n"

    def add(self, command: Command) -> None:
        """Offer ``command`` in the menu (``run_cmd(stdin=controller)`` calls this)."""
        self.cmds.append(command)

    def _say(self, text: str = "") -> None:
        out = self._output or sys.stdout
        out.write(text.replace("\n", self._eol))
        out.flush()

    def _menu(self) -> None:
        self._active = None
        self._say(
            "\nInterfacing with commands in progress...\n"
            "Ctrl-C: quit this controller. Ctrl-D: close stdin of the active command. "
            "Ctrl-H: this menu.\nSelect a command:\n"
        )
        for i, command in enumerate(self.cmds):
            self._say(f"\t[{i}] {command.server.id}: {command.cmd!r}\n")
        self._say("Enter selection: ")

    def _select(self, choice: str) -> None:
        try:
            index = int(choice)
        except ValueError:
            self._say(f"\nnot a number: {choice!r}\nEnter selection: ")
            return
        if not 0 <= index < len(self.cmds):
            self._say(f"\nno command [{index}]: 0 to {len(self.cmds) - 1}\nEnter selection: ")
            return
        self._active = self.cmds[index]
        self._say(f"\nwriting to stdin of {self._active.cmd!r} on {self._active.server.id}\n")

    def _enter(self) -> None:
        line, self._typed = self._typed, ""
        if self._active is None:
            self._select(line)
        else:
            self._active.stdin(line + "\n")
            self._say("\n")

    def _close(self) -> None:
        if self._active is not None:
            self._active.stdin("", close=True)

    def _alive(self) -> bool:
        # A blocking call of the experiment: a failed command stops it (raise_on_rc).
        raise_failed_in_background()
        return any(not c.done for c in self.cmds)

    def wait(self) -> None:
        """Run the menu until you quit, close a command's stdin, or every command ends."""
        if not self.cmds:
            return
        fd = (self._input or sys.stdin).fileno()
        with _raw(fd) as keys:
            self._eol = "\r\n" if keys else "\n"
            self._menu()
            if keys:
                self._keys(fd)
            else:
                self._lines(fd)
        self._eol = "\n"
        self._say("\ncontroller exited, continuing the experiment\n")

    def _keys(self, fd: int) -> None:
        for text in _text(fd, self._alive):
            for char in text:
                if char == CTRL_C:
                    return
                if char == CTRL_D:
                    if self._active is not None:
                        self._close()
                        return
                elif char == CTRL_H:
                    self._menu()
                elif char == BACKSPACE:
                    if self._typed:
                        self._typed = self._typed[:-1]
                        self._say("\b\033[K")
                elif char in "\r\n":
                    self._enter()
                else:
                    self._typed += char
                    self._say(char)

    def _lines(self, fd: int) -> None:
        for text in _text(fd, self._alive):
            for char in text:
                if char == "\n":
                    self._enter()
                else:
                    self._typed += char
        if self._typed:
            self._enter()
        self._close()


def forward_stdin_to(cmd: Command, esc: str = ESC, input: TextIO | None = None) -> None:
    """Send what you type to ``cmd`` until you press ``esc`` (raw keys on a terminal;
    from a pipe, until ``esc`` or the end of input)."""
    command = cmd

    def alive() -> bool:
        raise_failed_in_background()  # a blocking call: a failed command stops it (raise_on_rc)
        return not command.done

    fd = (input or sys.stdin).fileno()
    with _raw(fd) as keys:
        for text in _text(fd, alive):
            head, found, _ = text.partition(esc)
            if keys:
                head = head.replace("\r", "\n")
            if head:
                command.stdin(head)
            if found:
                return
