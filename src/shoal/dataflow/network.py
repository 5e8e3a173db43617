"""Loading a network's config module and checking it before anything starts."""

from __future__ import annotations

import csv
import importlib
import inspect
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from shoal.dataflow import registry
from shoal.dataflow.errors import DefinitionError
from shoal.dataflow.jobs import BaseJob, LocalJob
from shoal.dataflow.nodes import BaseNode, LocalNode, as_groups
from shoal.dataflow.pipes import BasePipe

__all__ = ["Network", "PipeEnds", "dependency_files", "dependency_paths", "load_network"]


@dataclass
class PipeEnds:
    """One pipe and the jobs at its two ends (by job id)."""

    pipe: BasePipe
    source: int
    destination: int


@dataclass
class Network:
    """A checked network: its jobs (ids from 1, in ``JOBS`` order), pipes and nodes."""

    name: str
    directory: Path
    jobs: list[BaseJob]
    nodes: list[BaseNode]
    pipes: dict[int, PipeEnds]
    pre_copy: bool = False
    log_level: str = "INFO"
    log_file: str | None = None
    client_ip: str | None = None
    module: ModuleType | None = field(default=None, repr=False)

    def job(self, job_id: int) -> BaseJob:
        return self.jobs[job_id - 1]

    def is_local(self, job: BaseJob) -> bool:
        return isinstance(job, LocalJob) or "LOCAL" in as_groups(job.GROUPS)

    def neighbours(self, job: BaseJob) -> list[int]:
        """Ids of the jobs at the other end of this job's pipes."""
        ids = [self.pipes[p.id].source for p in job.inputs]
        ids += [self.pipes[p.id].destination for p in job.outputs]
        return sorted(set(ids))


def load_network(target: str | Path | ModuleType, open_ends: bool = False) -> Network:
    """Import a network's config module and check it.

    ``target`` is a network folder holding ``config.py``, a config file, or an
    imported module. The folder's parent goes on ``sys.path`` so the config
    can import ``<network>.jobs.jobs`` and sibling packages like ``shared``.
    Raises :class:`DefinitionError` naming the job and pipe at fault.
    """
    if isinstance(target, ModuleType):
        module = target
        directory = Path(getattr(module, "__file__", None) or ".").resolve().parent
    else:
        path = Path(target).resolve()
        if path.is_dir():
            path = path / "config.py"
        if not path.is_file():
            raise DefinitionError(f"no network config at {path}")
        directory = path.parent
        if str(directory.parent) not in sys.path:
            sys.path.insert(0, str(directory.parent))
        name = f"{directory.name}.{path.stem}"
        try:
            module = importlib.import_module(name)
        except DefinitionError:
            raise
        except Exception as exc:
            raise DefinitionError(f"cannot import {path}: {type(exc).__name__}: {exc}") from exc
    return check_network(module, directory, open_ends)


def check_network(module: ModuleType, directory: Path, open_ends: bool = False) -> Network:
    """Check a config module's network; ``open_ends`` lets a pipe miss its source or
    destination (an emulation feeds and reads those; their missing end is job 0)."""
    jobs = getattr(module, "JOBS", None)
    if jobs is None and getattr(module, "XML_FILE", None):
        jobs = []
    if not isinstance(jobs, list | tuple) or not (jobs or getattr(module, "XML_FILE", None)):
        raise DefinitionError(f"{module.__name__}: JOBS must be a non-empty list of jobs")
    for position, job in enumerate(jobs, start=1):
        if not isinstance(job, BaseJob):
            hint = " (a class: instantiate it)" if isinstance(job, type) else ""
            raise DefinitionError(f"JOBS[{position - 1}] is {job!r}, not a job{hint}")
        registry.renumber_job(job, position)
    xml = getattr(module, "XML_FILE", None)
    if xml:
        from shoal.dataflow.xmlnet import load_xml

        xml_jobs, xml_nodes = load_xml(
            _resolve(directory, str(xml)), **dict(getattr(module, "XML_ARGS", None) or {})
        )
        jobs = [*jobs, *xml_jobs]
        for position, job in enumerate(jobs, start=1):
            registry.renumber_job(job, position)
    else:
        xml_nodes = []
    nodes: list[BaseNode] = []
    for node in [*(getattr(module, "NODES", None) or []), *xml_nodes]:
        if isinstance(node, str):
            nodes += _csv_nodes(_resolve(directory, node))
        elif isinstance(node, LocalNode):
            continue  # the client is always there
        elif not isinstance(node, BaseNode):
            raise DefinitionError(f"NODES holds {node!r}, not a BaseNode")
        elif not any(n.name == node.name for n in nodes):
            nodes.append(node)  # an XML node also in NODES counts once
    names = [n.name for n in nodes]
    if len(set(names)) != len(names):
        raise DefinitionError(f"NODES names a node twice: {names}")
    head_size = getattr(module, "HEAD_SIZE", 1)
    if isinstance(head_size, bool) or not isinstance(head_size, int) or head_size < 1:
        raise DefinitionError(f"HEAD_SIZE must be an int >= 1, not {head_size!r}")
    pipes = check_pipes(jobs, open_ends)
    for job in jobs:
        job.head_size = head_size
        problem = job.check_inputs()
        if problem:
            listed = ", ".join(repr(p) for p in job.inputs) or "no pipes"
            raise DefinitionError(f"job {job.label} with inputs [{listed}]: {problem}")
        try:
            as_groups(job.GROUPS)
        except TypeError as exc:
            raise DefinitionError(f"job {job.label}: GROUPS: {exc}") from None
        if not as_groups(job.GROUPS) and job.DEFAULT_NODE is None:
            raise DefinitionError(f"job {job.label}: GROUPS is empty and there is no DEFAULT_NODE")
        dependency_paths(directory, job)  # raises if one is missing
    level = str(getattr(module, "LOG_LEVEL", "INFO")).upper()
    if not isinstance(logging.getLevelName(level), int):
        raise DefinitionError(f"LOG_LEVEL {level!r} is not a logging level")
    return Network(
        name=directory.name,
        directory=directory,
        jobs=list(jobs),
        nodes=nodes,
        pipes=pipes,
        pre_copy=bool(getattr(module, "PRE_COPY", False)),
        log_level=level,
        log_file=getattr(module, "LOG_FILE", None),
        client_ip=getattr(module, "CLIENT_IP", None),
        module=module,
    )


def check_pipes(jobs: list[BaseJob], open_ends: bool = False) -> dict[int, PipeEnds]:
    first: dict[int, tuple[BasePipe, str]] = {}
    sources: dict[int, list[int]] = {}
    destinations: dict[int, list[int]] = {}
    for job in jobs:
        for side, pipes, ends in (
            ("outputs", job.outputs, sources),
            ("inputs", job.inputs, destinations),
        ):
            for pipe in pipes:
                if not isinstance(pipe, BasePipe):
                    raise DefinitionError(f"job {job.label}: {side} holds {pipe!r}, not a pipe")
                where = f"the {side} of job {job.label}"
                seen = first.setdefault(pipe.id, (pipe, where))
                if type(seen[0]) is not type(pipe):
                    raise DefinitionError(
                        f"pipe {pipe.id} is a {type(seen[0]).__name__} in {seen[1]} "
                        f"but a {type(pipe).__name__} in {where}"
                    )
                ends.setdefault(pipe.id, []).append(job.id)
    result: dict[int, PipeEnds] = {}
    for pipe_id, (pipe, _) in first.items():
        src, dst = sources.get(pipe_id, []), destinations.get(pipe_id, [])
        if open_ends and len(src) <= 1 and len(dst) <= 1:
            result[pipe_id] = PipeEnds(pipe, (src or [0])[0], (dst or [0])[0])
            continue
        if len(src) != 1 or len(dst) != 1:
            raise DefinitionError(_ends_problem(pipe, jobs, src, dst))
        result[pipe_id] = PipeEnds(pipe, src[0], dst[0])
    return result


def _ends_problem(pipe: BasePipe, jobs: list[BaseJob], src: list[int], dst: list[int]) -> str:
    def named(ids: list[int]) -> str:
        return " and ".join(f"job {jobs[i - 1].label}" for i in ids)

    if not src:
        return f"pipe {pipe.id} has no source: {named(dst)} reads it but no job writes it"
    if not dst:
        return f"pipe {pipe.id} has no destination: {named(src)} writes it but no job reads it"
    if len(src) > 1:
        return f"pipe {pipe.id} has {len(src)} sources: {named(src)} all write it"
    return f"pipe {pipe.id} has {len(dst)} destinations: {named(dst)} all read it"


def describe(network: Network, placements: dict[int, Any] | None = None) -> str:
    """The graph as text: each job, its pipes, and where it runs (if known)."""
    lines = [f"network {network.name}: {len(network.jobs)} jobs, {len(network.pipes)} pipes"]
    for job in network.jobs:
        where = (placements or {}).get(job.id, "client" if network.is_local(job) else "-")
        lines.append(f"  job {job.label} on {where}")
        for pipe in job.inputs:
            lines.append(
                f"    <- {pipe!r} from job {network.job(network.pipes[pipe.id].source).label}"
            )
        for pipe in job.outputs:
            lines.append(
                f"    -> {pipe!r} to job {network.job(network.pipes[pipe.id].destination).label}"
            )
    return "\n".join(lines)


def _resolve(directory: Path, relative: str) -> Path:
    """A path from a config: absolute, in the network folder, or in the folder
    above it (where FISSION's manage.py ran, which its paths were relative to)."""
    path = Path(relative)
    if path.is_absolute():
        return path
    for base in (directory, directory.parent):
        if (base / path).exists():
            return base / path
    return directory / path


def dependency_paths(directory: Path, job: BaseJob) -> list[tuple[Path, str]]:
    """Each dependency of ``job`` as (path, where it goes in the job's folder).

    A list (shoal's form) names files and folders kept at their relative
    place; modules and classes in it are skipped (job code travels by value).
    A single folder as a string (FISSION's form) becomes the job's folder.
    """
    deps = job.DEPENDENCIES
    if deps is None:
        return []
    if isinstance(deps, str):
        folder = _resolve(directory, deps)
        if not folder.is_dir():
            raise DefinitionError(f"job {job.label}: DEPENDENCIES {deps!r} is not a folder")
        return [(folder, "")]
    if not isinstance(deps, list | tuple):
        raise DefinitionError(
            f"job {job.label}: DEPENDENCIES must be a str or a list, not {type(deps).__name__}"
        )
    found = []
    for dependency in deps:
        if inspect.ismodule(dependency) or inspect.isclass(dependency):
            continue
        if not isinstance(dependency, str | Path):
            raise DefinitionError(f"job {job.label}: dependency {dependency!r} is not a path")
        path = _resolve(directory, str(dependency))
        if not path.exists():
            raise DefinitionError(
                f"job {job.label}: dependency {str(dependency)!r} not found in {directory}"
            )
        place = str(dependency) if not Path(dependency).is_absolute() else path.name
        found.append((path, place))
    return found


def dependency_files(directory: Path, job: BaseJob) -> dict[str, bytes]:
    """The files to write into ``job``'s folder: relative path -> contents."""
    files: dict[str, bytes] = {}
    for path, place in dependency_paths(directory, job):
        if path.is_file():
            files[str(Path(place)) if place else path.name] = path.read_bytes()
            continue
        for member in sorted(p for p in path.rglob("*") if p.is_file()):
            files[str(Path(place) / member.relative_to(path))] = member.read_bytes()
    return files


def _csv_nodes(path: Path) -> list[BaseNode]:
    """FISSION's node file: one ``name, ip, group, ...`` row per node."""
    if not path.is_file():
        raise DefinitionError(f"NODES names {path}, which is not a file")
    nodes = []
    with open(path, newline="") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            cells = [cell.strip() for cell in row]
            if not any(cells):
                continue
            if len(cells) < 2 or not cells[1]:
                raise DefinitionError(f"{path} row {number}: a node needs a name and an ip")
            nodes.append(BaseNode(cells[1], groups=cells[2:] or None, name=cells[0]))
    return nodes
