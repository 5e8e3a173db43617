"""``shoal nodes``, ``experiments``, ``status``, ``cancel`` and ``flags``: what a
controller holds, asked through the client."""

from __future__ import annotations

import datetime as dt
from typing import Any

import click
from rich.table import Table

from shoal.cli import _client, _handle_errors, client_command, console


def _when(ts: float | None) -> str:
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


@click.command()
@click.option("--all", "include_offline", is_flag=True, help="Include offline nodes.")
@client_command
@_handle_errors
def nodes(
    include_offline: bool, endpoint: str | None, login: str | None, password: str | None
) -> None:
    """The nodes and their live metrics.

    A node is online, suspect (silent for a while: its work is kept until the
    controller's lost timeout) or offline (its running work was lost).
    """
    rows = _client(endpoint, login, password).raw_nodes(include_offline=True)
    table = Table("name", "state", "architecture", "cpus", "cpu %", "memory %", "properties")
    for n in rows:
        state = n.get("state") or ("online" if n["online"] else "offline")
        if state == "offline" and not include_offline:
            continue
        m = n.get("metrics") or {}
        table.add_row(
            n["name"],
            f"[{_NODE_STATE_STYLE.get(state, 'white')}]{state}[/]",
            n["architecture"],
            str(n["cpus"]),
            f"{m['cpu']:.0f}" if "cpu" in m else "-",
            f"{m['memory']:.0f}" if "memory" in m else "-",
            ", ".join(f"{k}={v}" for k, v in sorted(n["properties"].items())),
        )
    console.print(table)


_NODE_STATE_STYLE = {"online": "green", "suspect": "yellow", "offline": "red"}

_STATUS_STYLE = {
    "FINISHED": "green",
    "RUNNING": "cyan",
    "READY": "blue",
    "PREPARING": "yellow",
    "FAILED": "red",
    "CANCELLED": "magenta",
}


@click.command()
@client_command
@_handle_errors
def experiments(endpoint: str | None, login: str | None, password: str | None) -> None:
    """My experiments of every kind: pipelines, runs, graph sessions, dataflow networks.

    STATE is what happened (a pipeline whose step failed is FAILED); WORK counts
    the steps, commands, tasks or jobs and how many failed. Piped into another
    program, the table is plain tab-separated text, names never cut.
    """
    data = _client(endpoint, login, password)._call("GET", "/api/experiments")
    header = ("name", "kind", "state", "work", "failed", "created", "finished")
    lines = []
    for name, e in data.items():
        counts = e.get("counts") or {}
        work = f"{counts.get('total', 0)} {e.get('unit', 'step')}s"
        if e["deployments"] and e["kind"] != "graph":
            work += f", {_deployment_counts(e['deployments'])} deployments"
        lines.append(
            (
                name,
                e["kind"],
                e.get("state", e["status"]),
                work,
                str(counts.get("failed", 0)),
                _when(e["created_at"]),
                _when(e["finished_at"]),
            )
        )
    if not console.is_terminal:
        # Rich cuts long cells to the width it guesses; a pipe gets every character.
        click.echo("\t".join(header))
        for line in lines:
            click.echo("\t".join(line))
        return
    table = Table(*header)
    for line in lines:
        style = _STATUS_STYLE.get(line[2], "white")
        failed = f"[red]{line[4]}[/]" if line[4] != "0" else line[4]
        table.add_row(line[0], line[1], f"[{style}]{line[2]}[/]", line[3], failed, *line[5:])
    console.print(table)


def _deployment_counts(deployments: list[dict[str, Any]]) -> str:
    """'3', or '3 (1 lost, 1 failed)' when some did not get their work done."""
    bad: dict[str, int] = {}
    for d in deployments:
        if d["state"] in ("failed", "lost", "cancelled"):
            bad[d["state"]] = bad.get(d["state"], 0) + 1
    detail = ", ".join(f"{count} {state}" for state, count in sorted(bad.items()))
    return f"{len(deployments)} ({detail})" if detail else str(len(deployments))


@click.command()
@click.argument("name")
@click.option("--logs", "show_logs", is_flag=True, help="Also print the tasks' log lines.")
@client_command
@_handle_errors
def status(
    name: str, show_logs: bool, endpoint: str | None, login: str | None, password: str | None
) -> None:
    """Status, deployments and step results of experiment NAME."""
    client = _client(endpoint, login, password)
    e = client.raw_status(name)
    state = e.get("state", e["status"])
    style = _STATUS_STYLE.get(state, "white")
    console.print(
        f"[bold]{e['name']}[/] ({e['kind']}): [{style}]{state}[/]  "
        f"created {_when(e['created_at'])}, started {_when(e['started_at'])}, "
        f"finished {_when(e['finished_at'])}"
    )
    if e.get("state_reason") or e.get("error"):
        console.print(f"[red]{e.get('state_reason') or e['error']}[/]")
    for d in e["deployments"]:
        console.print(
            f"\n[bold]{d['node']['name']}[/]  state {d['state']}  prepared {d['prepared']}"
        )
        if d["error"]:
            console.print(f"  [red]{d['error']}[/]")
        if d["steps"]:
            table = Table("#", "task", "ok", "result")
            for s in d["steps"]:
                table.add_row(
                    str(s["index"]),
                    s["task_name"],
                    "[green]yes[/]" if s["ok"] else "[red]no[/]",
                    s["text"],
                )
            console.print(table)
    if e.get("commands"):
        table = Table("node", "command", "rc", "seconds", "output (last line)")
        for c in e["commands"]:
            seconds = (c["finished_at"] or c["started_at"]) - c["started_at"]
            tail = (c["stdout"].strip().splitlines() or [""])[-1][:60]
            rc = "-" if c["return_code"] is None else str(c["return_code"])
            if c["error"]:
                rc += f" ({c['error']})"
            table.add_row(c["node"], c["cmd"], rc, f"{seconds:.3f}", tail)
        console.print(table)
    _print_items(e)
    if show_logs:
        for line in client.get_logs(name):
            console.print(
                f"[dim]{line['node']} {line['stream']}:[/] {line['line']}",
                markup=False,
                highlight=False,
            )


def _print_items(e: dict[str, Any]) -> None:
    """A graph session's tasks and a network's jobs, named by type and node."""
    for key, title in (("tasks", "task"), ("jobs", "job")):
        items = e.get(key) or []
        if not items:
            continue
        table = Table(title, "type", "node", "state", "seconds", "error")
        for item in items:
            took = (
                f"{item['finished_at'] - item['started_at']:.3f}"
                if item["started_at"] and item["finished_at"]
                else "-"
            )
            state = item["state"]
            style = "red" if state == "failed" else "green" if state == "finished" else "white"
            error = (str(item["error"]).strip().splitlines() or [""])[-1][:60]
            table.add_row(
                f"#{item['id']} {item['name']}",
                item["type"],
                item["node"] or "-",
                f"[{style}]{state}[/]",
                took,
                error,
            )
        console.print(table)


@click.command()
@click.argument("name")
@client_command
@_handle_errors
def cancel(name: str, endpoint: str | None, login: str | None, password: str | None) -> None:
    """Cancel experiment NAME, or the `shoal exp` run NAME (its commands are killed)."""
    client = _client(endpoint, login, password)
    client.cancel_experiment(name)
    after = client.raw_status(name)
    what = "run " if after["kind"] == "runner" else ""
    if after["status"] == "CANCELLED":
        console.print(f"cancelled {what}{name}")
    else:
        console.print(f"{what}{name} had already ended: {after['status']}")


@click.command()
@click.argument("name")
@click.argument("flag", required=False)
@client_command
@_handle_errors
def flags(
    name: str, flag: str | None, endpoint: str | None, login: str | None, password: str | None
) -> None:
    """The flags of experiment NAME (or just FLAG)."""
    client = _client(endpoint, login, password)
    values = {flag: client.get_flag_values(name, flag)} if flag else client.get_flags(name)
    table = Table("flag", "text_value", "int_value")
    for key, v in values.items():
        table.add_row(key, repr(v.text_value), repr(v.int_value))
    console.print(table)
