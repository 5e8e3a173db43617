"""Posting a summary of a run to a webhook (e.g. a Slack incoming webhook)."""

from __future__ import annotations

import logging
from typing import Any

import httpx

log = logging.getLogger("shoal.runner")


def post_summary(url: str, summary: dict[str, Any]) -> None:
    try:
        reply = httpx.post(url, json=summary, timeout=10)
        reply.raise_for_status()
    except httpx.HTTPError as exc:
        log.error("could not notify %s: %s", url, exc)
