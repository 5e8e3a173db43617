"""Running the discovered experiments: nodes, order, restarts, resume, progress, summary."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console as RichConsole
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from shoal.client.local_cluster import LocalCluster
from shoal.client.remote import RemoteClient
from shoal.client.reproduction import reproduction
from shoal.client.settings import lookup
from shoal.runner import output
from shoal.runner.actions import Action
from shoal.runner.command import raise_failed_in_background
from shoal.runner.context import RunContext, activate
from shoal.runner.discovery import ExperimentDefinitionError, discover
from shoal.runner.notify import post_summary
from shoal.runner.registry import ExperimentSpec, name_records
from shoal.runner.resume import ResumeState

log = logging.getLogger("shoal.runner")
INTERRUPT_PATIENCE = 10.0  # seconds an interrupted run waits for its commands to end


@dataclass
class Outcome:
    name: str
    status: str  # finished | failed | cancelled | skipped
    seconds: float = 0.0
    runs: int = 0
    error: str | None = None


@dataclass
class RunOptions:
    paths: list[Path]
    resume: bool = False
    progress: bool = True
    log_file: Path | None = None
    notify: str | None = None
    verbosity: int = 0
    outcomes: list[Outcome] = field(default_factory=list)


def controller_name(spec: ExperimentSpec) -> str:
    return (spec.record_name or spec.name).replace("/", "_")[:200]


def resolve_nodes(client: RemoteClient, specs: list[ExperimentSpec]) -> dict[str, str]:
    """Server id -> node name; by name first, then by an address the node reports."""
    nodes = client.raw_nodes(include_offline=True)
    by_name = {n["name"]: n for n in nodes}
    mapping, unknown = {}, []
    for spec in specs:
        for server in spec.servers:
            if server.id in mapping:
                continue
            if server.id in by_name:
                mapping[server.id] = server.id
                continue
            match = [n["name"] for n in nodes if server.ip in _addresses(n["properties"])]
            if len(match) == 1:
                mapping[server.id] = match[0]
            else:
                unknown.append(f"{server.id} ({server.ip})")
    if unknown:
        known = ", ".join(sorted(by_name)) or "none"
        raise ExperimentDefinitionError(
            f"no node for server(s) {', '.join(unknown)} on {client.endpoint} (nodes: {known})"
        )
    offline = sorted({node for node in mapping.values() if not by_name[node]["online"]})
    if offline:
        raise ExperimentDefinitionError(f"node(s) offline: {', '.join(offline)}")
    return mapping


def _addresses(properties: dict[str, Any]) -> set[str]:
    """The names and addresses a node answers to, from what its agent reports."""
    found = {str(properties.get("ip", "")), str(properties.get("hostname", ""))}
    found |= set(str(properties.get("addresses", "")).split(","))
    return found - {""}


@contextlib.contextmanager
def connect(specs: list[ExperimentSpec]) -> Iterator[tuple[RemoteClient, dict[str, str]]]:
    """The configured controller, or a local cluster with one node per server id."""
    if lookup("SHOAL_ENDPOINT"):
        with RemoteClient() as client:
            yield client, resolve_nodes(client, specs)
        return
    ids: list[str] = []
    for spec in specs:
        ids += [s.id for s in spec.servers if s.id not in ids]
    log.info("no SHOAL_ENDPOINT: starting a local cluster with nodes %s", ", ".join(ids))
    cluster = LocalCluster(ids)
    with RichConsole(stderr=True).status(f"starting a local cluster: {', '.join(ids)}"):
        cluster.start()
    try:
        with cluster.client() as client:
            yield client, {i: i for i in ids}
    finally:
        cluster.stop()


def run_experiment(client: RemoteClient, nodes: dict[str, str], spec: ExperimentSpec) -> Outcome:
    name = controller_name(spec)
    experiment_id = client.open_run(name, _reproduction(spec, nodes))
    context = RunContext(client.commands(), nodes, experiment_id, spec.raise_on_rc)
    started = time.perf_counter()
    runs, error = 0, None
    activate(context)
    log.info("%s: started", spec.name)
    try:
        while True:
            runs += 1
            # Every run starts where its list says, whatever an earlier one cd'ed to.
            spec.servers.cd(spec.servers.working_directory)
            try:
                result = spec.func(spec.servers, **spec.params)
                # A command that failed unseen, after the last blocking call: the
                # experiment fails now, at the latest (raise_on_rc).
                raise_failed_in_background(context)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                log.error("%s failed:\n%s", spec.name, traceback.format_exc().rstrip())
                result = None
            except BaseException:
                _end_commands(context, interrupted=True)
                raise
            _end_commands(context)
            restart = result is Action.RESTART and error is None
            if restart and (spec.max_restarts == 0 or runs < spec.max_restarts):
                log.warning("%s asked for a restart (run %d)", spec.name, runs + 1)
                continue
            break
    except KeyboardInterrupt:
        # Ctrl-C (or SIGTERM): its commands were killed above; the record says so.
        log.warning("%s: interrupted; recording the run as cancelled", spec.name)
        client.finish_run(name, "CANCELLED", "interrupted (Ctrl-C)")
        raise
    finally:
        activate(None)
    final = client.finish_run(name, "FAILED" if error else "FINISHED", error)
    if final == "CANCELLED":
        status, error = "cancelled", "cancelled (shoal cancel)"
    else:
        status = "failed" if error else "finished"
    seconds = time.perf_counter() - started
    log.info("%s: %s in %.2f s", spec.name, status, seconds)
    return Outcome(spec.name, status, seconds, runs, error)


def _reproduction(spec: ExperimentSpec, nodes: dict[str, str]) -> dict[str, Any]:
    """The run's function, file and parameters (the file's source is its code)."""
    parameters = {
        "function": spec.name,
        "file": str(spec.file),
        "params": {k: repr(v) for k, v in spec.params.items()},
        "servers": {server.id: nodes.get(server.id, server.id) for server in spec.servers},
        "max_restarts": spec.max_restarts,
        "raise_on_rc": spec.raise_on_rc,
    }
    module = sys.modules.get(getattr(spec.func, "__module__", ""))
    return reproduction(parameters, shipped=[module] if module is not None else [])


def _end_commands(context: RunContext, interrupted: bool = False) -> None:
    """Commands still running when the function returns are killed, on every node,
    all at once. ``interrupted`` (Ctrl-C): their output is dropped from here on
    (a fast command's output on its way can take long to hand to its handlers),
    and a command whose end is not told within INTERRUPT_PATIENCE is left to
    its node (which ends it when the client's channel closes)."""
    with context.lock:
        running, context.running = list(context.running), []
        timers, context.timers = list(context.timers), []
    for timer in timers:
        timer.cancel()
    running = [command for command in running if not command.done]
    for command in running:
        why = "was interrupted" if interrupted else "returned"
        log.info("killing %r: the experiment %s", command, why)
        command.request_kill(discard_output=interrupted)
    deadline = time.monotonic() + INTERRUPT_PATIENCE
    for command in running:
        if not interrupted:
            command.ended()  # not kill(): that would look for failures, and raise
        elif not command.ended(max(deadline - time.monotonic(), 0.0)):
            log.warning("%r did not end in %g s; its node ends it", command, INTERRUPT_PATIENCE)


class ProgressDisplay:
    """A rich progress bar over experiments, with log records and Console lines above it."""

    def __init__(self, enabled: bool, tee: TextIO | None, total: int) -> None:
        self.console = RichConsole(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
            disable=not enabled,
        )
        self.task = self.progress.add_task("experiments", total=total)
        self.enabled = enabled
        self.tee = tee

    def __enter__(self) -> ProgressDisplay:
        if self.enabled:
            self.progress.start()
            printer = self._print
        else:
            printer = None
        output.route(printer, self.tee)
        return self

    def _print(self, line: str) -> None:
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def step(self, description: str, advance: int = 0) -> None:
        self.progress.update(self.task, description=description, advance=advance)

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()
        output.route(None)


# Libraries under the experiment whose INFO lines (one per HTTP request...) say
# nothing to someone running experiments; their warnings still show.
_QUIET = ("httpx", "httpcore", "websockets", "asyncio", "urllib3")


def setup_logging(
    verbosity: int, progress: ProgressDisplay | None, log_file: TextIO | None
) -> None:
    """The root logger's handlers for `shoal exp`: the console (above the progress
    display) and the --log file. The root's, as distexprunner's client set up:
    an experiment file's own ``logging.info(...)`` shows at -vv and reaches the
    file, and shoal's lines are not printed twice once it logged."""
    # -v WARN, -vv INFO, -vvv DEBUG, as distexprunner's users know them.
    level = {0: logging.WARNING, 1: logging.WARNING, 2: logging.INFO}.get(verbosity, logging.DEBUG)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "shoal_exp", False)]:
        root.removeHandler(old)
    logging.getLogger("shoal").handlers.clear()
    console = progress.console if progress else RichConsole(stderr=True)
    handlers: list[logging.Handler] = [RichHandler(console=console, show_path=False, markup=False)]
    handlers[0].setLevel(level)
    root.setLevel(level)
    if log_file is not None:
        handlers.append(logging.StreamHandler(log_file))
        handlers[1].setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        handlers[1].setLevel(logging.DEBUG)
        root.setLevel(logging.DEBUG)
    for handler in handlers:
        handler.shoal_exp = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    for name in _QUIET:
        logging.getLogger(name).setLevel(max(logging.WARNING, level))


def run(options: RunOptions) -> int:
    """Run every experiment found in ``options.paths``; the exit status of `shoal exp`."""
    log_file = open(options.log_file, "a", encoding="utf-8") if options.log_file else None  # noqa: SIM115
    try:
        return _run(options, log_file)
    finally:
        if log_file is not None:
            log_file.close()


def _run(options: RunOptions, log_file: TextIO | None) -> int:
    setup_logging(options.verbosity, None, log_file)
    specs = discover(options.paths)
    if not specs:
        raise ExperimentDefinitionError(
            f"no @reg_exp experiments in {', '.join(map(str, options.paths))}"
        )
    name_records(specs)
    state = ResumeState(specs, options.resume)
    started = time.time()
    outcomes = options.outcomes
    with (
        connect(specs) as (client, nodes),
        ProgressDisplay(options.progress, log_file, len(specs)) as display,
    ):
        setup_logging(options.verbosity, display, log_file)
        stopped: str | None = None
        for spec in specs:
            # run_always: as in distexprunner, --resume does not skip it.
            if options.resume and state.finished(spec) and not spec.run_always:
                outcomes.append(Outcome(spec.name, "skipped", error="finished in an earlier run"))
                display.step(f"skip {spec.name}", advance=1)
                continue
            if stopped and not spec.run_always:
                outcomes.append(Outcome(spec.name, "skipped", error=f"run stopped: {stopped}"))
                display.step(f"skip {spec.name}", advance=1)
                continue
            display.step(spec.name)
            outcome = run_experiment(client, nodes, spec)
            outcomes.append(outcome)
            display.step(spec.name, advance=1)
            if outcome.status == "finished":
                state.mark(spec)
            elif stopped is None:
                stopped = f"{spec.name} {outcome.status}"
    summary = _summary(outcomes, time.time() - started)
    output.emit(summary["text"])
    if options.notify:
        post_summary(options.notify, summary)
    return 0 if summary["failed"] == 0 and summary["cancelled"] == 0 else 1


def _summary(outcomes: list[Outcome], seconds: float) -> dict[str, Any]:
    counts = {
        s: sum(1 for o in outcomes if o.status == s)
        for s in ("finished", "failed", "cancelled", "skipped")
    }
    shown = [s for s in counts if counts[s] or s != "cancelled"]  # "0 cancelled" is noise
    text = f"shoal exp: {', '.join(f'{counts[s]} {s}' for s in shown)} in {seconds:.1f} s"
    failed = [o for o in outcomes if o.status in ("failed", "cancelled")]
    if failed:
        text += "\n" + "\n".join(f"  {o.status}: {o.name}: {o.error}" for o in failed)
    return {
        "text": text,
        "total": len(outcomes),
        **counts,
        "seconds": round(seconds, 3),
        "experiments": [
            {
                "name": o.name,
                "status": o.status,
                "seconds": round(o.seconds, 3),
                "runs": o.runs,
                "error": o.error,
            }
            for o in outcomes
        ],
    }
