"""Debian's Chromium for the dashboard tests: the ``browser`` and ``page`` fixtures
(registered in conftest.py) and the offline check every page gets."""

from __future__ import annotations

import os
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, Playwright, Route, sync_playwright

from shoal import LocalCluster

CHROMIUM = "/usr/bin/chromium"
LIVE = 20_000  # ms a live change may take to show (a few ticks on a loaded machine)


def browser_session() -> Iterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: sh scripts/install-test-deps.sh installs it")
    with sync_playwright() as playwright:
        yield launch(playwright)


def launch(playwright: Playwright) -> Browser:
    # Debian's Chromium, never a browser Playwright would download; no sandbox
    # because the tests may run as root.
    return playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])


def offline_page(browser: Browser, cluster: LocalCluster) -> Iterator[Page]:
    """A fresh browser context (no token) that may reach the controller only."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(LIVE)
    blocked = offline(context, cluster.endpoint)
    try:
        yield context.new_page()
        assert blocked == [], f"requests left the machine: {blocked}"
    finally:
        context.close()


def offline(context, endpoint: str) -> list[str]:  # type: ignore[no-untyped-def]
    """Abort every request to a host other than the controller's; the list of them."""
    own = urlsplit(endpoint).netloc
    blocked: list[str] = []

    def route(r: Route) -> None:
        url = r.request.url
        if urlsplit(url).netloc == own or url.startswith(("data:", "blob:")):
            r.continue_()
        else:
            blocked.append(url)
            r.abort()

    context.route("**/*", route)
    return blocked
