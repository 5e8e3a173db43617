"""Reading one value from a controller's /metrics, as Prometheus would parse it."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families


def metric_value(endpoint: str, token: str, name: str) -> float:
    """The value of the unlabelled sample ``name`` in the controller's /metrics."""
    reply = httpx.get(
        f"{endpoint}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert reply.status_code == 200, reply.text
    for family in text_string_to_metric_families(reply.text):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    raise AssertionError(f"no {name} in /metrics")
