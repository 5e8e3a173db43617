"""Agents' experiment reports between their arrival and the store."""

from __future__ import annotations

import asyncio

from shoal.controller.links import Link

# Reports waiting for the store, per agent; past this the agent is sent away and
# reports again when it reconnects, rather than the controller growing without end.
MAX_WAITING_REPORTS = 100_000


class ReportQueue:
    """The experiment reports of all agents waiting to be stored, each agent's
    oldest first: taken all at once, to be stored in one batch."""

    def __init__(self) -> None:
        self._waiting: dict[Link, list] = {}
        self._taken: dict[Link, int] = {}  # being stored now, per agent
        self._ready = asyncio.Event()

    def put(self, link: Link, messages: list) -> bool:
        """Queue ``messages`` of ``link``'s agent; False if too many of its are waiting."""
        waiting = self._waiting.setdefault(link, [])
        if len(waiting) + self._taken.get(link, 0) + len(messages) > MAX_WAITING_REPORTS:
            return False
        waiting.extend(messages)
        self._ready.set()
        return True

    def drop(self, link: Link) -> None:
        """``link`` closed: its agent reports again what waits here when it is back."""
        self._waiting.pop(link, None)

    async def take(self) -> list[tuple[Link, list]]:
        """All that waits now (at least one message), to store in one batch."""
        while True:
            await self._ready.wait()
            self._ready.clear()
            taken = [(link, messages) for link, messages in self._waiting.items() if messages]
            if taken:
                break
        self._waiting = {}
        self._taken = {link: len(messages) for link, messages in taken}
        return taken

    def done(self, taken: list[tuple[Link, list]]) -> None:
        """``taken`` is stored: its agents may queue that many again."""
        for link, _ in taken:
            self._taken.pop(link, None)
