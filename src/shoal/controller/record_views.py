"""The JSON every experiment record adds: its truthful state, counts of its units of
work, and (for one record) its items and reproduction info."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from shoal.store import records as record_queries

#: The unit of work each kind of record counts.
UNITS = {"pipelines": "step", "netunicorn": "step", "runner": "command", "graph": "task"}


def unit_of(kind: str) -> str:
    return UNITS.get(kind, "job")


def truthful_state(row: dict[str, Any], counts: dict[str, int]) -> tuple[str, str | None]:
    """The state to show, and why if it differs from the stored status.

    A pipeline (or network) that ran to its end with failed steps (jobs) did not
    succeed: it shows FAILED, while ``status`` keeps what netUnicorn clients
    expect (FINISHED: it ran to its end). A run's commands may exit non-zero on
    purpose (its function decides), so a run shows its own status.
    """
    status = row["status"]
    failed = counts.get("failed", 0)
    if status == "FINISHED" and failed and row["kind"] != "runner":
        unit = unit_of(row["kind"])
        return "FAILED", f"{failed} of {counts.get('total', 0)} {unit}s failed"
    return status, None


def summarise(kind: str, per_kind: dict[str, dict[str, int]]) -> dict[str, int]:
    """``{"total": n, "failed": n, <state>: n, ...}`` over the record's unit of work."""
    states = per_kind.get(unit_of(kind), {})
    counts = dict(sorted(states.items()))
    counts["total"] = sum(states.values())
    # Work lost with its node did not get done either: it counts among the failed.
    counts["failed"] = states.get("failed", 0) + states.get("lost", 0)
    return counts


def item_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["seq"],
        "name": row["name"],
        "type": row["type"],
        "node": row["node"],
        "state": row["state"],
        "started_at": row["started_at"],
        "finished_at": row["finished_at"],
        "error": row["error"],
        "info": row["info"],
    }


async def describe_records(
    conn: AsyncConnection, rows: list[dict[str, Any]], with_items: bool
) -> dict[str, dict[str, Any]]:
    """experiment id -> the fields every record adds to its JSON (see the API docs)."""
    counts = await record_queries.item_counts(conn, [r["id"] for r in rows])
    out = {}
    for row in rows:
        per_kind = counts[row["id"]]
        summary = summarise(row["kind"], per_kind)
        state, why = truthful_state(row, summary)
        extra: dict[str, Any] = {
            "state": state,
            "state_reason": why,
            "unit": unit_of(row["kind"]),
            "counts": summary,
            "objects_count": sum(per_kind.get("object", {}).values()),
            "summary": row.get("summary"),
        }
        if with_items:
            extra["reproduction"] = row.get("reproduction")
            items = await record_queries.list_items(conn, row["id"])
            for key, kind in (("tasks", "task"), ("objects", "object"), ("jobs", "job")):
                extra[key] = [item_json(i) for i in items if i["kind"] == kind]
        out[row["id"]] = extra
    return out
