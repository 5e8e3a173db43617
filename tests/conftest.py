"""Fixtures: real local clusters (controller + agent processes on loopback)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest

from shoal import LocalCluster, RemoteClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from netns import NetnsHost, ssh_hosts, unavailable_reason  # noqa: E402 (needs the path)

# The graph client's in-memory transport and its fixtures (`transport`, `session`).
pytest_plugins = ["graph_fakes"]

SEED_NODES = [
    "snl-server-5",
    "raspi-e4:5f:01:56:d8:cd",
    "raspi-e4:5f:01:9b:85:9c",
    "raspi-e4:5f:01:75:6b:2c",
]


@pytest.fixture(autouse=True)
def _no_ambient_controller(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests pick their controller explicitly; a developer's SHOAL_* must not leak in.
    for key in list(os.environ):
        if key.startswith("SHOAL_"):
            monkeypatch.delenv(key)


@pytest.fixture(scope="module")
def seed_cluster() -> Iterator[LocalCluster]:
    """The seed's testbed: one server and three Raspberry Pis, shared by a module."""
    with LocalCluster(SEED_NODES) as cluster:
        yield cluster


@pytest.fixture
def client(seed_cluster: LocalCluster) -> Iterator[RemoteClient]:
    with seed_cluster.client() as c:
        yield c


@pytest.fixture
def make_hosts(tmp_path: Path) -> Iterator[Callable[..., list[NetnsHost]]]:
    """``make_hosts(n, **options)``: n real SSH hosts in network namespaces
    (tests/netns.py's ssh_hosts); all of them removed at teardown, also on failure.
    Skips when this machine cannot make them (not root, no sshd or no ip)."""
    if reason := unavailable_reason():
        pytest.skip(f"namespace SSH hosts: {reason}")
    with contextlib.ExitStack() as stack:
        count = 0

        def make(n: int, **options: object) -> list[NetnsHost]:
            nonlocal count
            count += 1
            folder = tmp_path / f"hosts-{count}"
            folder.mkdir()
            return stack.enter_context(ssh_hosts(n, folder, **options))  # type: ignore[arg-type]

        yield make


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Debian's Chromium, once per module (tests/browser.py)."""
    from browser import browser_session

    yield from browser_session()


@pytest.fixture
def page(browser: object, cluster: LocalCluster) -> Iterator[object]:
    """A fresh browser context, no token, that may reach the module's controller only."""
    from browser import offline_page

    yield from offline_page(browser, cluster)


LOG_TAIL_LINES = 60  # of each log a failed test's folder holds, shown with the failure
LOG_FILES_SHOWN = 6


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    # A test that failed in CI leaves only its own output: the controller's and
    # agents' logs in its folder say what they were doing (a stall, a refusal).
    report = yield
    folder = getattr(item, "funcargs", {}).get("tmp_path")
    if report.failed and isinstance(folder, Path):
        logs = sorted(folder.rglob("*.log"), key=lambda p: p.stat().st_mtime)[-LOG_FILES_SHOWN:]
        for log in logs:
            with contextlib.suppress(OSError):
                lines = log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
                if lines:
                    name = log.relative_to(folder)
                    report.sections.append((f"log {name} (last lines)", "\n".join(lines)))
    return report
