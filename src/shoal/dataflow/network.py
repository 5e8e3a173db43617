"""Loading a network's config module and checking it before anything starts."""

from __future__ import annotations

import importlib
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from shoal.dataflow.errors import DefinitionError
from shoal.dataflow.jobs import BaseJob, LocalJob
from shoal.dataflow.nodes import BaseNode, as_groups
from shoal.dataflow.pipes import BasePipe

__all__ = ["Network", "PipeEnds", "load_network"]


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


def load_network(target: str | Path | ModuleType) -> Network:
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
    return check_network(module, directory)


def check_network(module: ModuleType, directory: Path) -> Network:
    jobs = getattr(module, "JOBS", None)
    if not isinstance(jobs, list | tuple) or not jobs:
        raise DefinitionError(f"{module.__name__}: JOBS must be a non-empty list of jobs")
    for position, job in enumerate(jobs, start=1):
        if not isinstance(job, BaseJob):
            hint = " (a class: instantiate it)" if isinstance(job, type) else ""
            raise DefinitionError(f"JOBS[{position - 1}] is {job!r}, not a job{hint}")
        job.id = position
    nodes = list(getattr(module, "NODES", None) or [])
    for node in nodes:
        if not isinstance(node, BaseNode):
            raise DefinitionError(f"NODES holds {node!r}, not a BaseNode")
    names = [n.name for n in nodes]
    if len(set(names)) != len(names):
        raise DefinitionError(f"NODES names a node twice: {names}")
    pipes = _check_pipes(jobs)
    for job in jobs:
        problem = job.check_inputs()
        if problem:
            listed = ", ".join(repr(p) for p in job.inputs) or "no pipes"
            raise DefinitionError(f"job {job.name} with inputs [{listed}]: {problem}")
        try:
            as_groups(job.GROUPS)
        except TypeError as exc:
            raise DefinitionError(f"job {job.name}: GROUPS: {exc}") from None
        if not as_groups(job.GROUPS) and job.DEFAULT_NODE is None:
            raise DefinitionError(f"job {job.name}: GROUPS is empty and there is no DEFAULT_NODE")
        for dependency in job.DEPENDENCIES:
            if not (directory / dependency).exists():
                raise DefinitionError(
                    f"job {job.name}: dependency {dependency!r} not found in {directory}"
                )
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


def _check_pipes(jobs: list[BaseJob]) -> dict[int, PipeEnds]:
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
                    raise DefinitionError(f"job {job.name}: {side} holds {pipe!r}, not a pipe")
                where = f"the {side} of job {job.name}"
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
        if len(src) != 1 or len(dst) != 1:
            raise DefinitionError(_ends_problem(pipe, jobs, src, dst))
        result[pipe_id] = PipeEnds(pipe, src[0], dst[0])
    return result


def _ends_problem(pipe: BasePipe, jobs: list[BaseJob], src: list[int], dst: list[int]) -> str:
    def named(ids: list[int]) -> str:
        return " and ".join(f"job {jobs[i - 1].name}" for i in ids)

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
        lines.append(f"  job {job.name} on {where}")
        for pipe in job.inputs:
            lines.append(
                f"    <- {pipe!r} from job {network.job(network.pipes[pipe.id].source).name}"
            )
        for pipe in job.outputs:
            lines.append(
                f"    -> {pipe!r} to job {network.job(network.pipes[pipe.id].destination).name}"
            )
    return "\n".join(lines)
