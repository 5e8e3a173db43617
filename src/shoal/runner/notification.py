"""distexprunner's ``notification`` module: a message to a Slack incoming webhook.

``shoal exp --notify URL`` posts the run's summary by itself; these classes are
for experiment code that sends its own messages.
"""

from __future__ import annotations

import getpass
import logging
import os

import httpx

log = logging.getLogger("shoal.runner")


def get_user() -> str:
    """Who runs the experiments (the user behind sudo, if any)."""
    return os.environ.get("SUDO_USER") or getpass.getuser()


class Notifier:
    """Sends nothing: the base of notifiers."""

    def send(self, message: str) -> None:
        """Send ``message``."""

    def on_finish(self, num_exps: int) -> None:
        """Say that ``num_exps`` experiments finished."""


class Slack(Notifier):
    """Posts messages to a Slack incoming webhook; an error is logged, never raised."""

    def __init__(self, webhook_url: str) -> None:
        self.webhook_url = webhook_url

    def send(self, message: str) -> None:
        try:
            httpx.post(self.webhook_url, json={"text": message}, timeout=10).raise_for_status()
        except httpx.HTTPError as exc:
            log.error("could not notify %s: %s", self.webhook_url, exc)

    def on_finish(self, num_exps: int) -> None:
        self.send(f"*_Status report_*\n\n*{num_exps}* experiments from *{get_user()}* finished.")
