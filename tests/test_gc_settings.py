"""shoal's own processes tune the garbage collector; a user's process keeps Python's."""

from __future__ import annotations

import subprocess
import sys

import pytest

from shoal.gc_settings import SERVICE_THRESHOLDS


def _in_a_fresh_python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout.strip()


@pytest.mark.timeout(60)
def test_a_service_collects_less_often_and_freezes_what_start_up_made() -> None:
    out = _in_a_fresh_python(
        "import gc; from shoal.gc_settings import tune_for_service; tune_for_service(); "
        "print(gc.get_threshold(), gc.get_freeze_count() > 0)"
    )
    assert out == f"{SERVICE_THRESHOLDS} True"


@pytest.mark.timeout(60)
def test_importing_shoal_leaves_a_users_collector_alone() -> None:
    out = _in_a_fresh_python(
        "import gc; before = gc.get_threshold(); import shoal, shoal.graph, shoal.runner; "
        "print(gc.get_threshold() == before, gc.get_freeze_count())"
    )
    assert out == "True 0"
