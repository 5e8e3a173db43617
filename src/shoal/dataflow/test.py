"""FISSION's pytest plugin (``fission.test``) on shoal: fixtures for a network's tests.

Load it from a ``conftest.py`` in the folder holding the network folder::

    pytest_plugins = ["shoal.dataflow.test"]

or run ``shoal dataflow NET test [pytest arguments]``, which runs the tests in
``NET/tests`` with it, as FISSION's ``manage.py NET test`` did. It offers:

- ``fission_cfg``: the network's config module. The network is the one
  ``shoal dataflow NET test`` names, else ``--dataflow-config PATH`` (or
  ``$SHOAL_DATAFLOW_CONFIG``), else the nearest folder above the test file
  that holds a ``config.py``.
- ``fission_cfg_jobs``: a function ``(index, path=".emulate")`` giving an
  emulator of ``config.JOBS[index]``; every one is killed after the test.
- ``fission_test_emulator``: an emulator of the test's own ``fission_test_job``
  fixture, with the caches reset around it (as ``fission_reset``).
- ``fission_reset``: :func:`shoal.dataflow.base.reset` before and after the test.
- ``@pytest.mark.slow`` tests are skipped unless pytest runs with ``--runslow``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from shoal.dataflow.emulation import emulate
from shoal.dataflow.errors import DataflowError
from shoal.dataflow.network import load_network
from shoal.dataflow.registry import reset

__all__ = [
    "fission_cfg",
    "fission_cfg_jobs",
    "fission_reset",
    "fission_test_emulator",
    "use_config",
]

CONFIG_ENV = "SHOAL_DATAFLOW_CONFIG"

# The network `shoal dataflow NET test` already loaded (it runs pytest in-process).
_config: ModuleType | None = None
_loaded: dict[Path, ModuleType] = {}


def use_config(config: ModuleType | None) -> None:
    """Make ``config`` the module ``fission_cfg`` gives (None: find it per test again)."""
    global _config
    _config = config


def pytest_addoption(parser: pytest.Parser) -> None:
    # A conftest of the user's may define --runslow itself (pytest's own recipe
    # does): then theirs stands and this one steps aside.
    with contextlib.suppress(ValueError):
        parser.addoption(
            "--runslow", action="store_true", default=False, help="run tests marked slow"
        )
    parser.addoption(
        "--dataflow-config",
        default=None,
        help="the network (folder or config.py) whose config fission_cfg gives",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: a slow test, run only with --runslow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--runslow", default=False):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def _load(path: Path) -> ModuleType:
    path = path.resolve()
    if path not in _loaded:
        try:
            network = load_network(path)
        except DataflowError as exc:
            raise pytest.UsageError(f"the network config {path}: {exc}") from None
        assert network.module is not None
        _loaded[path] = network.module
    return _loaded[path]


def _find_config(request: pytest.FixtureRequest) -> ModuleType:
    if _config is not None:
        return _config
    given = request.config.getoption("--dataflow-config") or os.environ.get(CONFIG_ENV)
    if given:
        return _load(Path(given))
    start = Path(request.path).resolve().parent
    for folder in [start, *start.parents]:
        if (folder / "config.py").is_file():
            return _load(folder / "config.py")
    raise pytest.UsageError(
        f"fission_cfg: no config.py in {start} or a folder above it; "
        f"run `shoal dataflow NET test`, or pass --dataflow-config NET (or set ${CONFIG_ENV})"
    )


@pytest.fixture
def fission_cfg(request: pytest.FixtureRequest) -> ModuleType:
    """The network's config module (its ``JOBS``, ``NODES``, ...)."""
    return _find_config(request)


@pytest.fixture
def fission_cfg_jobs(fission_cfg: ModuleType) -> Iterator[Callable[..., Any]]:
    """``make(index, path=".emulate")``: an emulator of the config's ``JOBS[index]``."""
    emulators: list[Any] = []

    def make(index: int, path: str | Path = ".emulate") -> Any:
        jobs = fission_cfg.JOBS
        if not -len(jobs) <= index < len(jobs):
            raise IndexError(f"fission_cfg_jobs({index}): the config has {len(jobs)} jobs")
        emulator = emulate(jobs[index], path=path)
        emulators.append(emulator)
        return emulator

    yield make
    for emulator in emulators:
        emulator.kill()


@pytest.fixture
def fission_reset() -> Iterator[None]:
    """Clear the pipe, job, node and group caches before and after the test."""
    reset()
    yield None
    reset()


@pytest.fixture
def fission_test_emulator(fission_test_job: Any, fission_reset: None) -> Iterator[Any]:
    """An emulator of the test module's ``fission_test_job`` fixture."""
    emulator = emulate(fission_test_job)
    yield emulator
    emulator.kill()
