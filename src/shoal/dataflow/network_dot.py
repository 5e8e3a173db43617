"""A dataflow network as a Graphviz graph (DOT): FISSION's ``manage.py graphviz``.

Jobs are boxes, pipes dashed edges labelled with their pipe; when the network
ran (its state is known), the jobs are grouped by the node they run on, as
FISSION's detailed graph grouped them by node address.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from shoal.dataflow.network import Network


def _quoted(text: str) -> str:
    # DOT's double-quoted string: only the quote and the backslash need escaping.
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def network_dot(network: Network, placements: dict[int, str] | None = None) -> str:
    """The DOT text of ``network``; ``placements`` (job id -> node) groups jobs."""
    placements = placements or {}
    lines = [
        f"digraph {_quoted(network.name)} {{",
        "  rankdir=LR;",
        '  node [shape=box, style="rounded,filled", fillcolor=lightblue];',
    ]
    by_node: dict[str, list[str]] = {}
    for job in network.jobs:
        where = placements.get(job.id, "client" if network.is_local(job) else "")
        by_node.setdefault(where, []).append(_quoted(job.label))
    for position, (node, jobs) in enumerate(sorted(by_node.items())):
        if not node:
            lines += [f"  {job};" for job in jobs]
            continue
        lines.append(f"  subgraph cluster_{position} {{")
        lines.append(f"    label={_quoted(node)}; style=filled; color=lightgrey;")
        lines += [f"    {job};" for job in jobs]
        lines.append("  }")
    for ends in network.pipes.values():
        source, destination = network.job(ends.source), network.job(ends.destination)
        lines.append(
            f"  {_quoted(source.label)} -> {_quoted(destination.label)} "
            f"[label={_quoted(repr(ends.pipe))}, style=dashed, fontcolor=crimson];"
        )
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(dot_file: Path, output_format: str) -> Path | None:
    """Render ``dot_file`` with Graphviz's ``dot`` to the file beside it with the
    format's suffix; None if ``dot`` is not installed."""
    dot = shutil.which("dot")
    if dot is None:
        return None
    target = dot_file.with_suffix(f".{output_format}")
    done = subprocess.run(
        [dot, f"-T{output_format}", str(dot_file), "-o", str(target)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0:
        raise RuntimeError(f"dot could not render {dot_file}: {done.stderr.strip()}")
    return target


__all__ = ["network_dot", "render"]
