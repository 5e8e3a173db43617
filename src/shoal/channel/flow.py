"""Credit-based flow control of one channel end, without any I/O.

Each end grants its peer a *window*: how many messages and bytes it may send
before the reader has consumed some. The writer spends credit as it sends and
waits when it has none; the reader gives credit back as its application
consumes (in lumps of half a window, so a grant costs one small frame per many
messages). What one end holds in memory for its peer is thus bounded by its
window, however slow its application and however fast the peer: the bound is
end to end, so a relay in the middle holds no more than the window either.

A message larger than the remaining byte credit is sent when any byte credit
is left (the credit goes negative), so a message larger than the window still
passes; the bound is then the window plus one message.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from itertools import accumulate

from shoal.channel.errors import ChannelProtocolError


@dataclass(frozen=True)
class Window:
    """How much a reader lets its peer send ahead of its application."""

    messages: int = 65536
    bytes: int = 16 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.messages < 1 or self.bytes < 1:
            raise ValueError(f"a channel window must allow something, got {self}")


DEFAULT_WINDOW = Window()


class Flow:
    """The credit of one channel end: what it may send, what its peer may send it,
    and what its application consumed but has not yet given back."""

    __slots__ = (
        "_consumed_bytes",
        "_consumed_messages",
        "incoming_bytes",
        "incoming_messages",
        "send_bytes",
        "send_messages",
        "window",
    )

    def __init__(self, window: Window, send_messages: int = 0, send_bytes: int = 0) -> None:
        self.window = window
        self.send_messages = send_messages  # what we may still send
        self.send_bytes = send_bytes
        self.incoming_messages = window.messages  # what the peer may still send us
        self.incoming_bytes = window.bytes
        self._consumed_messages = 0
        self._consumed_bytes = 0

    # --- writing -------------------------------------------------------------

    def can_send(self) -> bool:
        return self.send_messages > 0 and self.send_bytes > 0

    def granted(self, messages: int, nbytes: int) -> None:
        """The peer gave us more credit."""
        if messages < 0 or nbytes < 0:
            raise ChannelProtocolError("the peer granted negative credit")
        self.send_messages += messages
        self.send_bytes += nbytes

    def spend(self, count: int, nbytes: int) -> bool:
        """Spend the credit for ``count`` messages of ``nbytes`` if it covers all of
        them (no overrun, unlike ``take``); False, spending nothing, if not."""
        if count > self.send_messages or nbytes > self.send_bytes:
            return False
        self.send_messages -= count
        self.send_bytes -= nbytes
        return True

    def take(
        self, queue: list[bytes], max_messages: int, max_bytes: int
    ) -> tuple[list[bytes], int]:
        """Cut off the front of ``queue`` what the credit allows (at most
        ``max_messages`` and about ``max_bytes``, at least one message if any
        credit is left), spending the credit; ``(payloads, their bytes)``."""
        if self.send_messages <= 0 or self.send_bytes <= 0 or not queue:
            return [], 0
        count = min(self.send_messages, max_messages, len(queue))
        batch = queue[:count]
        size = sum(map(len, batch))
        limit = min(self.send_bytes, max_bytes)
        if size > limit:
            # Every message that starts while credit is left goes (the last may overrun).
            ends = list(accumulate(map(len, batch)))
            count = max(1, bisect_left(ends, limit) + 1)
            batch = batch[:count]
            size = ends[count - 1]
        del queue[:count]
        self.send_messages -= count
        self.send_bytes -= size
        return batch, size

    # --- reading -------------------------------------------------------------

    def received(self, count: int, nbytes: int, largest: int) -> None:
        """The peer sent ``count`` messages of ``nbytes`` (``largest``: the biggest);
        raises ChannelProtocolError if that is more than we granted."""
        if count > self.incoming_messages or (
            nbytes - largest >= self.incoming_bytes and count > 0
        ):
            raise ChannelProtocolError(
                f"the peer sent {count} messages ({nbytes} bytes) with credit for only "
                f"{self.incoming_messages} messages ({self.incoming_bytes} bytes)"
            )
        self.incoming_messages -= count
        self.incoming_bytes -= nbytes

    def consumed(self, count: int, nbytes: int) -> tuple[int, int] | None:
        """The application took ``count`` messages of ``nbytes``; the credit to give
        back now ``(messages, bytes)``, or None while it is not worth a frame."""
        self._consumed_messages += count
        self._consumed_bytes += nbytes
        if (
            self._consumed_messages * 2 < self.window.messages
            and self._consumed_bytes * 2 < self.window.bytes
        ):
            return None
        grant = self._consumed_messages, self._consumed_bytes
        self.incoming_messages += grant[0]
        self.incoming_bytes += grant[1]
        self._consumed_messages = self._consumed_bytes = 0
        return grant


__all__ = ["DEFAULT_WINDOW", "Flow", "Window"]
