"""``shoal show NAME`` and ``shoal export NAME``: an experiment's record, of any kind."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import sys
from pathlib import Path
from typing import Any

import click

from shoal.cli import _client, _handle_errors, client_command

FORMATS = ("csv", "json", "parquet")
COLUMNS = (
    "experiment",
    "kind",
    "unit",
    "node",
    "name",
    "type",
    "index",
    "state",
    "started_at",
    "finished_at",
    "seconds",
    "error",
    "result",
)


def _when(ts: float | None) -> str:
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def _seconds(start: float | None, end: float | None) -> float | None:
    return round(end - start, 6) if start and end else None


def rows(e: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per step, command, task, object or job of the record ``e`` (its JSON)."""
    base = {"experiment": e["name"], "kind": e["kind"]}
    out: list[dict[str, Any]] = []
    for d in e.get("deployments", []):
        node = d["node"]["name"]
        for s in d["steps"]:
            out.append(
                {
                    **base,
                    "unit": "step",
                    "node": node,
                    "name": s["task_name"],
                    "type": "step",
                    "index": s["index"],
                    "state": "finished" if s["ok"] else "failed",
                    "started_at": d["started_at"],
                    "finished_at": d["finished_at"],
                    "seconds": None,
                    "error": None if s["ok"] else s["text"],
                    "result": s["text"],
                }
            )
        if not d["steps"] and d["state"] in ("failed", "lost", "cancelled"):
            # Nothing ran: the deployment itself is the row that says why.
            out.append(
                {
                    **base,
                    "unit": "deployment",
                    "node": node,
                    "name": "(deployment)",
                    "type": "deployment",
                    "index": None,
                    "state": d["state"],
                    "started_at": d["started_at"],
                    "finished_at": d["finished_at"],
                    "seconds": _seconds(d["started_at"], d["finished_at"]),
                    "error": d["error"],
                    "result": None,
                }
            )
    for i, c in enumerate(e.get("commands", [])):
        bad = c["error"] is not None or (c["return_code"] not in (None, 0))
        out.append(
            {
                **base,
                "unit": "command",
                "node": c["node"],
                "name": c["cmd"],
                "type": "command",
                "index": i,
                "state": "failed" if bad else "finished",
                "started_at": c["started_at"],
                "finished_at": c["finished_at"],
                "seconds": _seconds(c["started_at"], c["finished_at"]),
                "error": c["error"],
                "result": c["return_code"],
            }
        )
    for unit, key in (("task", "tasks"), ("object", "objects"), ("job", "jobs")):
        for item in e.get(key, []):
            info = item.get("info") or {}
            result = info.get("size") if unit == "object" else info.get("rounds")
            out.append(
                {
                    **base,
                    "unit": unit,
                    "node": item["node"],
                    "name": item["name"],
                    "type": item["type"],
                    "index": item["id"],
                    "state": item["state"],
                    "started_at": item["started_at"],
                    "finished_at": item["finished_at"],
                    "seconds": _seconds(item["started_at"], item["finished_at"]),
                    "error": item["error"],
                    "result": result,
                }
            )
    return out


def _write(table: list[dict[str, Any]], fmt: str, output: str | None) -> None:
    if fmt == "parquet":
        if output is None:
            raise click.ClickException("parquet is binary: give a file with -o FILE")
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise click.ClickException(
                "writing parquet needs pyarrow: pip install pyarrow"
            ) from None
        columns = {c: [_plain(r[c]) for r in table] for c in COLUMNS}
        pq.write_table(pa.table(columns), output)
        return
    buffer = io.StringIO()
    if fmt == "json":
        json.dump(table, buffer, indent=1)
        buffer.write("\n")
    else:
        writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(table)
    if output is None:
        sys.stdout.write(buffer.getvalue())
    else:
        Path(output).write_text(buffer.getvalue())


def _plain(value: Any) -> Any:
    # One type per parquet column: results and indexes of mixed kinds go as text.
    return None if value is None else str(value)


@click.command()
@click.argument("name")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="csv",
    show_default=True,
    help="csv and json go to stdout unless -o is given; parquet needs -o and pyarrow.",
)
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), default=None)
@client_command
@_handle_errors
def export(
    name: str,
    fmt: str,
    output: str | None,
    endpoint: str | None,
    login: str | None,
    password: str | None,
) -> None:
    """Write the results of experiment NAME as a table: one row per step, command,
    task (and object) or job."""
    e = _client(endpoint, login, password).raw_status(name)
    table = rows(e)
    _write(table, fmt, output)
    if output is not None:
        click.echo(f"wrote {len(table)} rows of {name} to {output}", err=True)


@click.command()
@click.argument("name")
@click.option("--packages", is_flag=True, help="Also list the client's installed packages.")
@click.option("--source", is_flag=True, help="Also print the shipped Python source.")
@client_command
@_handle_errors
def show(
    name: str,
    packages: bool,
    source: bool,
    endpoint: str | None,
    login: str | None,
    password: str | None,
) -> None:
    """Print the record of experiment NAME: kind, state, timings, what is needed
    to reproduce it, and per node its steps, commands, tasks or jobs."""
    e = _client(endpoint, login, password).raw_status(name)
    echo = click.echo
    counts = e.get("counts") or {}
    state = e.get("state", e["status"])
    echo(f"{e['name']}  ({e['kind']})")
    echo(f"  state:     {state}" + (f" (status {e['status']})" if state != e["status"] else ""))
    if e.get("state_reason") or e.get("error"):
        echo(f"  why:       {e.get('state_reason') or e['error']}")
    detail = ", ".join(f"{n} {s}" for s, n in counts.items() if s != "total" and n)
    echo(
        f"  {e.get('unit', 'unit')}s:     {counts.get('total', 0)}"
        + (f" ({detail})" if detail else "")
    )
    echo(
        f"  created {_when(e['created_at'])}, started {_when(e['started_at'])}, "
        f"finished {_when(e['finished_at'])}"
    )
    _show_reproduction(e.get("reproduction") or {}, packages, source)
    by_node: dict[str, list[dict[str, Any]]] = {}
    for row in rows(e):
        by_node.setdefault(row["node"] or "-", []).append(row)
    for node, node_rows in sorted(by_node.items()):
        echo(f"\n{node}:")
        for row in node_rows:
            took = f"{row['seconds']:.3f} s" if row["seconds"] is not None else ""
            echo(f"  {row['unit']:<7} {row['name']!s:<30} {row['state']:<10} {took}")
            if row["error"] and row["state"] != "finished":
                first = str(row["error"]).strip().splitlines() or [""]
                echo(f"          error: {first[-1][:200]}")


def _show_reproduction(r: dict[str, Any], packages: bool, source: bool) -> None:
    echo = click.echo
    if not r:
        echo("  reproduction: not recorded (made by an older client)")
        return
    echo("  reproduction:")
    echo(f"    code hash: {r.get('code_hash') or '-'}")
    script = r.get("script") or {}
    if script:
        echo(f"    script:    {script.get('path')} (sha256 {script.get('sha256', '-')})")
    for s in r.get("sources", []):
        echo(f"    shipped:   {s.get('module')} from {s.get('path')} (sha256 {s.get('sha256')})")
    echo(
        f"    shoal {r.get('shoal_version')}, Python {r.get('python_version')}"
        f" on {r.get('platform', '-')}"
    )
    pkgs = r.get("packages", [])
    echo(
        f"    packages:  {len(pkgs)} installed on the client"
        + ("" if packages else " (--packages)")
    )
    if packages:
        for p in pkgs:
            echo(f"      {p}")
    params = r.get("parameters")
    if params:
        echo(f"    parameters: {json.dumps(params, default=str)[:2000]}")
    nodes = r.get("nodes", [])
    echo(f"    nodes at start: {len(nodes)}")
    for n in nodes:
        props = ", ".join(f"{k}={v}" for k, v in sorted((n.get("properties") or {}).items()))
        echo(
            f"      {n['name']} [{n.get('state')}] {n.get('architecture')} "
            f"{n.get('cpus')} cpus {props}"
        )
    if source:
        for s in ([script] if script.get("source") else []) + r.get("sources", []):
            echo(f"\n--- {s.get('path')} ---\n{s.get('source', '')}")
