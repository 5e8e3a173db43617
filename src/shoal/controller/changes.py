"""Which experiments changed since the dashboard last looked.

A service that changes experiments (their rows, steps, log lines, flags,
command records) touches its feed with the ids it changed. The feed is read by
one consumer, the dashboard's live hub (``shoal.controller.live``), which
takes the ids once per tick and refreshes only what its watchers look at.

Nobody pays for it while no dashboard page is open: a feed that is not
``active`` drops what it is told at once.
"""

from __future__ import annotations

from collections.abc import Iterable


class ChangeFeed:
    """A set of changed experiment ids, filled by a service, emptied by the hub."""

    def __init__(self) -> None:
        self.active = False
        self._changed: set[str] = set()

    def touch(self, experiment_ids: Iterable[str | None]) -> None:
        if self.active:
            self._changed.update(i for i in experiment_ids if i is not None)

    def take(self) -> set[str]:
        """The ids touched since the last ``take``; the feed is empty after it."""
        changed, self._changed = self._changed, set()
        return changed

    def stop(self) -> None:
        """No reader any more: forget what was collected and collect nothing."""
        self.active = False
        self._changed.clear()
