"""Live metrics of this node, sent with every heartbeat."""

from __future__ import annotations

import os

import psutil

from shoal.protocol import Heartbeat


class MetricsSampler:
    def __init__(self) -> None:
        psutil.cpu_percent(interval=None)  # the first call only sets the baseline

    def sample(self) -> Heartbeat:
        memory = psutil.virtual_memory()
        try:
            load = os.getloadavg()[0]
        except OSError:
            load = 0.0
        return Heartbeat(
            cpu=psutil.cpu_percent(interval=None),
            memory=memory.percent,
            memory_used=memory.used,
            load=load,
        )
