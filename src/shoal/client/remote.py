"""RemoteClient: the user's handle on a controller (the seeds' BaseClient, and more)."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

import httpx

from shoal.client import serialize
from shoal.client.commands import CommandChannel
from shoal.client.experiment_wire import (
    deployment_preparation,
    execution_information,
    pipelines_reproduction,
)
from shoal.client.retry import RECONNECT_DEADLINE, retry_call
from shoal.client.settings import resolve
from shoal.model import (
    Deployment,
    Experiment,
    ExperimentExecutionInformation,
    FlagValues,
    Node,
    Nodes,
)
from shoal.model.execution_graph import ExecutionGraphError
from shoal.model.pipeline import Workload

TERMINAL = frozenset({"FINISHED", "FAILED", "CANCELLED"})


class RemoteClientException(Exception):
    """The controller refused a call, or could not be reached; ``status_code`` says which."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class RemoteClient:
    """Talks to a shoal controller over HTTP.

    Arguments default from ``SHOAL_ENDPOINT``, ``SHOAL_LOGIN`` and
    ``SHOAL_PASSWORD`` (environment, ``.env``, or a running ``shoal up``).
    A controller that cannot be reached (it restarts) is retried for
    ``retry_deadline`` seconds before a call fails::

        client = RemoteClient("http://127.0.0.1:8642", "alice", "secret")
        client.healthcheck()
        nodes = client.get_nodes()

    ``authentication_context`` is netUnicorn's (credentials for its
    connectors); shoal has no connectors to pass it to, so it is only kept.
    """

    def __init__(
        self,
        endpoint: str | None = None,
        login: str | None = None,
        password: str | None = None,
        authentication_context: dict[str, dict[str, str]] | None = None,
        *,
        timeout: float = 30.0,
        retry_deadline: float = RECONNECT_DEADLINE,
    ) -> None:
        if authentication_context is not None and not isinstance(authentication_context, dict):
            raise TypeError(
                "authentication_context must be a dict ({connector: {key: value}}) or None, "
                f"got {authentication_context!r} (timeout and retry_deadline are keywords)"
            )
        self.authentication_context = authentication_context
        settings = resolve(endpoint, login, password)
        self.endpoint = settings.endpoint
        self.login = settings.login
        self._password = settings.password
        self._timeout = timeout
        self.retry_deadline = retry_deadline
        self._http = httpx.Client(base_url=self.endpoint, timeout=httpx.Timeout(timeout))
        self._token: str | None = None
        self._commands: CommandChannel | None = None

    # ------------------------------------------------------------------ plumbing

    def close(self) -> None:
        if self._commands is not None:
            self._commands.close()
            self._commands = None
        self._http.close()

    def __enter__(self) -> RemoteClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _authenticate(self, retry: bool = True) -> None:
        try:
            reply = retry_call(
                self._http.post,
                "/api/token",
                json={"login": self.login, "password": self._password},
                what=f"logging in to {self.endpoint}",
                retry_on=(httpx.TransportError,),
                deadline=self.retry_deadline if retry else 0.0,
            )
        except httpx.TransportError as exc:
            raise RemoteClientException(f"cannot reach {self.endpoint}: {exc}") from exc
        if reply.status_code != 200:
            raise RemoteClientException(
                f"login as {self.login!r} failed: {_detail(reply)}", reply.status_code
            )
        self._token = reply.json()["access_token"]

    def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        timeout: float | None = None,
        retry: bool = True,
    ) -> Any:
        """One API call; logs in as needed and retries transport errors when safe
        (every call is: prepare and start are idempotent by name)."""
        if self._token is None:
            self._authenticate(retry)
        relogged = False
        while True:
            try:
                reply = retry_call(
                    self._http.request,
                    method,
                    path,
                    json=json,
                    params=params,
                    headers={"Authorization": f"Bearer {self._token}"},
                    timeout=timeout if timeout is not None else self._timeout,
                    what=f"{method} {path}",
                    retry_on=(httpx.TransportError,),
                    deadline=self.retry_deadline if retry else 0.0,
                )
            except httpx.TransportError as exc:
                raise RemoteClientException(f"cannot reach {self.endpoint}: {exc}") from exc
            if reply.status_code == 401 and not relogged:
                relogged = True
                self._authenticate()
                continue
            if reply.status_code >= 400:
                raise RemoteClientException(_detail(reply), reply.status_code)
            return reply.json()

    # ------------------------------------------------------------- the seed API

    def healthcheck(self) -> bool:
        """True if the controller answers and accepts our login."""
        try:
            return self._call("GET", "/api/health", retry=False).get("status") == "ok"
        except RemoteClientException:
            return False

    def get_nodes(self) -> Nodes:
        """The nodes online now."""
        return Nodes(Node.from_dict(d) for d in self._call("GET", "/api/nodes"))

    def get_experiments(self) -> dict[str, ExperimentExecutionInformation]:
        """Every experiment of the current user, by name."""
        data = self._call("GET", "/api/experiments")
        return {name: execution_information(info) for name, info in data.items()}

    def delete_experiment(self, experiment_name: str) -> None:
        """Delete an experiment (not while it runs) so its name can be used again."""
        self._call("DELETE", f"/api/experiments/{_quote(experiment_name)}")

    def prepare_experiment(
        self,
        experiment: Experiment,
        experiment_id: str,
        deployment_context: dict[str, dict[str, str]] | None = None,
    ) -> str:
        """Ship the experiment to its nodes and bring its executors up.

        Each node first runs its deployment's environment commands and its
        tasks' requirements, then loads the pipeline with the environment's
        variables set. ``deployment_context`` defaults to the experiment's.

        Returns once the controller accepted it; the experiment is READY when
        every node has its pipeline loaded (see :meth:`wait`). Safe to retry:
        a second call with the same name changes nothing.
        """
        if not isinstance(experiment, Experiment):
            raise TypeError(f"prepare_experiment expects an Experiment, got {type(experiment)}")
        if deployment_context is None:
            deployment_context = experiment.deployment_context
        # One payload per pipeline: a thousand nodes running the same pipeline
        # ship it once. The pipelines are kept so ids stay unique.
        shipped: dict[int, str] = {}
        kept: list[Workload] = []
        plan: list[tuple[Deployment, Workload, list[str]]] = []
        deployments = []
        for position, deployment in enumerate(experiment):
            pipeline = deployment.pipeline
            if not isinstance(pipeline, Workload):
                raise TypeError(f"the deployment on {deployment.node} has no pipeline")
            # a pipeline assigned after the deployment was made is dispatched here
            pipeline = pipeline.dispatched(deployment.node)
            kept.append(pipeline)
            where = f"deployment {position} (node {deployment.node.name!r})"
            try:
                pipeline.validate()
            except ExecutionGraphError as exc:
                raise ExecutionGraphError(f"{where}: {exc}") from None
            requirements, variables = deployment_preparation(where, deployment, pipeline)
            key = id(pipeline)
            if key not in shipped:
                data = serialize.dumps(pipeline, {type(t) for t in pipeline.tasks})
                shipped[key] = base64.b64encode(data).decode()
            plan.append((deployment, pipeline, requirements))
            entry = {
                "node": deployment.node.name,
                "pipeline": shipped[key],
                "requirements": requirements,
            }
            if variables:
                # Kept with the deployment; the node sets them in its executor.
                entry["environment"] = variables
            deployments.append(entry)
        body: dict[str, Any] = {
            "name": experiment_id,
            "deployments": deployments,
            "reproduction": pipelines_reproduction(plan, shipped.values()),
        }
        if deployment_context is not None:
            body["deployment_context"] = deployment_context
        return self._call("POST", "/api/experiments", json=body)["name"]

    def start_execution(
        self, experiment_id: str, execution_context: dict[str, dict[str, str]] | None = None
    ) -> str:
        """Start a READY experiment; safe to retry."""
        body = {"execution_context": execution_context} if execution_context else None
        path = f"/api/experiments/{_quote(experiment_id)}/start"
        return self._call("POST", path, json=body)["name"]

    def get_experiment_status(self, experiment_id: str) -> ExperimentExecutionInformation:
        """Status, deployments and (once running) results of an experiment."""
        return execution_information(self._call("GET", f"/api/experiments/{_quote(experiment_id)}"))

    def cancel_experiment(
        self, experiment_id: str, cancellation_context: dict[str, dict[str, str]] | None = None
    ) -> str:
        """Stop every executor of the experiment."""
        return self._call("POST", f"/api/experiments/{_quote(experiment_id)}/cancel")["name"]

    def cancel_executors(
        self,
        executors: Iterable[str],
        cancellation_context: dict[str, dict[str, str]] | None = None,
    ) -> list[str]:
        """Stop particular executors (``executor_id`` of a deployment)."""
        body = {"executors": list(executors)}
        return self._call("POST", "/api/executors/cancel", json=body)["cancelled"]

    def get_flag_values(self, experiment_id: str, flag_name: str) -> FlagValues:
        """The current values of a flag."""
        path = f"/api/experiments/{_quote(experiment_id)}/flags/{_quote(flag_name)}"
        return FlagValues.from_dict(self._call("GET", path))

    def set_flag_values(self, experiment_id: str, flag_name: str, flag_values: FlagValues) -> None:
        """Set both values of a flag."""
        path = f"/api/experiments/{_quote(experiment_id)}/flags/{_quote(flag_name)}"
        self._call("PUT", path, json=flag_values.to_dict())

    # ------------------------------------------------------------ shoal's extras

    def wait(
        self, experiment_id: str, timeout: float = 300.0, until: str = "finished"
    ) -> ExperimentExecutionInformation:
        """Block until the experiment is finished (or ``until="ready"``: READY).

        The controller holds the request until the status changes, so this
        returns as soon as it happens. Raises TimeoutError after ``timeout``.
        """
        wanted = TERMINAL | ({"READY", "RUNNING"} if until == "ready" else set())
        deadline = time.monotonic() + timeout
        path = f"/api/experiments/{_quote(experiment_id)}/wait"
        while True:
            left = deadline - time.monotonic()
            hold = max(0.0, min(left, 50.0))
            data = self._call(
                "GET",
                path,
                params={"timeout": hold, "until": until},
                timeout=hold + self._timeout,
            )
            if data["status"] in wanted:
                return execution_information(data)
            if left <= 0:
                raise TimeoutError(
                    f"experiment {experiment_id!r} is still {data['status']} after {timeout:g} s"
                )

    def wait_for_nodes(self, names: Iterable[str], timeout: float = 30.0) -> None:
        """Block until every named node is online."""
        names = list(names)
        data = self._call(
            "GET",
            "/api/nodes/wait",
            params={"names": names, "timeout": timeout},
            timeout=timeout + self._timeout,
        )
        if not data["online"]:
            raise TimeoutError(f"nodes not online after {timeout:g} s: {data['missing']}")

    def wait_flag(
        self, experiment_id: str, flag_name: str, values: FlagValues, timeout: float = 60.0
    ) -> FlagValues:
        """Block until the flag equals ``values``; woken by the change, not by polling."""
        path = f"/api/experiments/{_quote(experiment_id)}/flags/{_quote(flag_name)}/wait"
        deadline = time.monotonic() + timeout
        while True:
            hold = max(0.0, min(deadline - time.monotonic(), 50.0))
            data = self._call(
                "POST", path, json={**values.to_dict(), "timeout": hold}, timeout=hold + 30
            )
            if data["matched"]:
                return FlagValues(data["text_value"], data["int_value"])
            if time.monotonic() >= deadline:
                raise TimeoutError(f"flag {flag_name!r} did not become {values!r} in {timeout:g} s")

    def token(self) -> str:
        """A bearer token for this user (logs in on first use), for the WebSocket APIs."""
        if self._token is None:
            self._authenticate()
        assert self._token is not None
        return self._token

    def commands(self) -> CommandChannel:
        """The stream that runs commands on nodes (opened on first use)."""
        if self._commands is None:
            if self._token is None:
                self._authenticate()
            assert self._token is not None
            self._commands = CommandChannel(self.endpoint, self._token)
        return self._commands

    def open_run(self, name: str, reproduction: dict[str, Any] | None = None) -> str:
        """Open a run (a client-driven experiment) named ``name``; returns its id.

        ``reproduction`` (see :mod:`shoal.client.reproduction`) is kept with its record.
        """
        body: dict[str, Any] = {"name": name}
        if reproduction is not None:
            body["reproduction"] = reproduction
        return self._call("POST", "/api/runs", json=body)["id"]

    def open_record(self, name: str, kind: str, reproduction: dict[str, Any]) -> str:
        """Open the record of a client-driven run of another front-end (``dataflow``);
        returns its name (made unique with a suffix if ``name`` is taken)."""
        body = {"name": name, "kind": kind, "reproduction": reproduction}
        return str(self._call("POST", "/api/records", json=body)["name"])

    def update_record(
        self,
        name: str,
        items: list[dict[str, Any]] | None = None,
        summary: dict[str, Any] | None = None,
        status: str | None = None,
        error: str | None = None,
    ) -> str:
        """Store a record's changed items, its summary and (at the end) its status;
        the status it has now (CANCELLED if its user cancelled it meanwhile)."""
        body: dict[str, Any] = {"items": items or []}
        if summary is not None:
            body["summary"] = summary
        if status is not None:
            body["status"] = status
            body["error"] = error
        reply = self._call("PUT", f"/api/records/{_quote(name)}", json=body)
        return str(reply["status"])

    def finish_run(self, name: str, status: str = "FINISHED", error: str | None = None) -> str:
        """Close a run with its outcome; the status it has now (CANCELLED stays)."""
        reply = self._call(
            "POST", f"/api/runs/{_quote(name)}/finish", json={"status": status, "error": error}
        )
        return str(reply["status"])

    def get_flags(self, experiment_id: str) -> dict[str, FlagValues]:
        data = self._call("GET", f"/api/experiments/{_quote(experiment_id)}/flags")
        return {name: FlagValues.from_dict(v) for name, v in data.items()}

    def get_logs(self, experiment_id: str, after: int = 0) -> list[dict[str, Any]]:
        """Log lines of the experiment's tasks, oldest first, with ids above ``after``."""
        path = f"/api/experiments/{_quote(experiment_id)}/logs"
        return self._call("GET", path, params={"after": after})

    def raw_status(self, experiment_id: str) -> dict[str, Any]:
        """The controller's JSON for an experiment (for tools like the CLI)."""
        return self._call("GET", f"/api/experiments/{_quote(experiment_id)}")

    def raw_nodes(self, include_offline: bool = False) -> list[dict[str, Any]]:
        return self._call("GET", "/api/nodes", params={"all": include_offline})

    def forget_node(self, name: str) -> None:
        """Free node ``name``: its credential stops working and its agent is
        disconnected; the next agent with the join token and this name enrolls."""
        self._call("DELETE", f"/api/nodes/{_quote(name)}")


def _quote(part: str) -> str:
    return quote(part, safe="")


def _detail(reply: httpx.Response) -> str:
    try:
        detail = reply.json().get("detail")
    except ValueError:
        detail = None
    if isinstance(detail, list):  # FastAPI's validation errors
        detail = "; ".join(
            f"{'.'.join(str(p) for p in d.get('loc', []))}: {d.get('msg')}" for d in detail
        )
    return f"{reply.status_code}: {detail or reply.text or reply.reason_phrase}"
