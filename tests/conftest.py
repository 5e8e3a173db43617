"""Fixtures: real local clusters (controller + agent processes on loopback)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from shoal import LocalCluster, RemoteClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

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
