"""Flag access from inside an executor, limited to its own experiment.

A pipeline executor started by an agent sends its calls over the socketpair it
already has to that agent, which relays them on its WebSocket to the controller
(:class:`FlagRelay`); no HTTP request per operation. Anywhere else the
executor finds the controller and its token in the environment the agent set
and uses the REST API. Calls retry while the controller is unreachable (it may
be restarting), so a pipeline waiting at a barrier survives a controller restart.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from _thread import LockType
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from shoal.model.flags import FlagValues
from shoal.protocol.flag_messages import FlagAnswer, FlagCall

if TYPE_CHECKING:
    import httpx

RECONNECT_FOR = 120.0
# (HTTP method, path suffix) of each operation in the REST API
_REST = {"get": ("GET", ""), "set": ("PUT", ""), "add": ("POST", None), "wait": ("POST", "/wait")}


class FlagCallError(RuntimeError):
    """The controller refused a flag call (``status`` as in HTTP: 403, 409...)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class FlagRelay:
    """Flag calls over an executor's socketpair to its agent; thread-safe.

    ``send`` puts a call on the socketpair; whoever reads the socketpair hands
    each ``FlagAnswer`` to :meth:`answered`.
    """

    def __init__(self, send: Callable[[FlagCall], None]) -> None:
        self._send = send
        self._ids = itertools.count(1)
        # call id -> (a lock held until the answer is in, the answer's slot): a
        # bare lock is the cheapest wake-up a thread has, and at thousands of
        # calls a second per executor the wake-up is most of a call's cost.
        self._waiting: dict[int, tuple[LockType, list[FlagAnswer]]] = {}

    def call(self, op: str, flag: str, patience: float, **fields: Any) -> FlagAnswer:
        """Send one call and block for its answer (``TimeoutError`` after ``patience`` s)."""
        answered, slot = threading.Lock(), []
        answered.acquire()
        call_id = next(self._ids)  # itertools.count is atomic under the GIL
        self._waiting[call_id] = (answered, slot)
        try:
            self._send(FlagCall(id=call_id, op=op, flag=flag, **fields))
            if not answered.acquire(timeout=patience):
                raise TimeoutError(f"no answer from the controller to a {op} of flag {flag!r}")
        finally:
            self._waiting.pop(call_id, None)
        return slot[0]

    def answered(self, answer: FlagAnswer) -> None:
        waiting = self._waiting.pop(answer.id, None)
        if waiting is not None:
            lock, slot = waiting
            slot.append(answer)
            lock.release()


class ExecutorFlags:
    """Flag calls of one executor; remembers the last version it saw of each flag.

    Through ``relay`` when given, else over HTTP to ``endpoint`` with ``token``.
    """

    def __init__(self, endpoint: str = "", token: str = "", relay: FlagRelay | None = None) -> None:
        self._seen: dict[str, int] = {}
        self._seen_lock = threading.Lock()
        self._relay = relay
        self._http: httpx.Client | None = None
        if relay is None:
            # Imported here: an executor that relays its calls never needs httpx.
            import httpx

            self._http = httpx.Client(
                base_url=endpoint,
                headers={"Authorization": f"Bearer {token}"},
                timeout=httpx.Timeout(30.0),
                # Loading the CA bundle costs tens of ms per executor; plain http needs none.
                verify=endpoint.startswith("https://"),
            )

    @classmethod
    def from_environment(cls) -> ExecutorFlags:
        endpoint = os.environ.get("SHOAL_ENDPOINT")
        token = os.environ.get("SHOAL_EXECUTOR_TOKEN")
        if not endpoint or not token:
            raise RuntimeError(
                "flag tasks run inside a shoal executor: SHOAL_ENDPOINT and "
                "SHOAL_EXECUTOR_TOKEN are not set here"
            )
        return cls(endpoint, token)

    def _call(self, op: str, flag: str, hold: float = 0.0, **fields: Any) -> dict[str, Any]:
        if self._relay is not None:
            data = self._relayed(op, flag, hold, fields)
        else:
            data = self._rest(op, flag, fields)
        with self._seen_lock:
            self._seen[flag] = max(self._seen.get(flag, 0), int(data.get("version", 0)))
        return data

    def _relayed(self, op: str, flag: str, hold: float, fields: dict[str, Any]) -> dict[str, Any]:
        assert self._relay is not None
        deadline = time.monotonic() + RECONNECT_FOR
        delay = 0.05
        while True:
            # The agent sends the call again after a reconnect: wait as long as
            # a controller restart may take, on top of the hold of a wait.
            answer = self._relay.call(op, flag, hold + RECONNECT_FOR + 30.0, **fields)
            if answer.status == 503 and time.monotonic() < deadline:
                time.sleep(delay)  # the store is away: nothing changed; try again
                delay = min(delay * 2, 2.0)
                continue
            if answer.status == 404:
                raise KeyError(f"flag {flag!r} is not set")
            if answer.status:
                raise FlagCallError(answer.status, f"flag {flag!r}: {answer.error}")
            return {
                "text_value": answer.text_value,
                "int_value": answer.int_value,
                "version": answer.version,
                "matched": answer.matched,
            }

    def _rest(self, op: str, flag: str, fields: dict[str, Any]) -> dict[str, Any]:
        import httpx

        assert self._http is not None
        method, suffix = _REST[op]
        if suffix is None:
            suffix = "/increment" if fields["delta"] > 0 else "/decrement"
        kwargs: dict[str, Any] = {}
        if op in ("set", "wait"):
            body = {"text_value": fields["text_value"], "int_value": fields["int_value"]}
            if op == "wait":
                body.update(timeout=fields["timeout"], after=fields["after"])
                kwargs["timeout"] = fields["timeout"] + 30.0
            kwargs["json"] = body
        path = f"/api/executor/flags/{quote(flag, safe='')}{suffix}"
        deadline = time.monotonic() + RECONNECT_FOR
        delay = 0.05
        while True:
            try:
                reply = self._http.request(method, path, **kwargs)
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(delay)  # the controller is away; back off and try again
                delay = min(delay * 2, 2.0)
                continue
            if reply.status_code == 404:
                raise KeyError(f"flag {flag!r} is not set")
            if reply.status_code >= 500 and time.monotonic() < deadline:
                time.sleep(delay)
                continue
            reply.raise_for_status()
            return reply.json()

    def get(self, flag: str) -> FlagValues:
        data = self._call("get", flag)
        return FlagValues(data["text_value"], data["int_value"])

    def set(self, flag: str, values: FlagValues) -> None:
        self._call("set", flag, text_value=values.text_value, int_value=values.int_value)

    def increment(self, flag: str) -> FlagValues:
        data = self._call("add", flag, delta=1)
        return FlagValues(data["text_value"], data["int_value"])

    def decrement(self, flag: str) -> FlagValues:
        data = self._call("add", flag, delta=-1)
        return FlagValues(data["text_value"], data["int_value"])

    def wait_for(self, flag: str, values: FlagValues, timeout: float | None = None) -> FlagValues:
        """Block until the flag equals ``values``; the controller wakes us on the change.

        Any value the flag took since this executor last looked at it counts, so
        a value that was there only briefly (another node already moved the flag
        on) is not missed.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._seen_lock:
            after = self._seen.get(flag, 0)
        while True:
            hold = 25.0 if deadline is None else max(0.0, min(25.0, deadline - time.monotonic()))
            data = self._call(
                "wait",
                flag,
                hold,
                text_value=values.text_value,
                int_value=values.int_value,
                timeout=hold,
                after=after,
            )
            if data["matched"]:
                return FlagValues(data["text_value"], data["int_value"])
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(
                    f"flag {flag!r} did not become {values!r} within {timeout:g} s "
                    f"(it is {FlagValues(data['text_value'], data['int_value'])!r})"
                )


_shared: ExecutorFlags | None = None
_shared_lock = threading.Lock()


def use_relay(relay: FlagRelay) -> None:
    """Make the executor's flag client send its calls through ``relay`` (set up by
    the pipeline executor before its steps run)."""
    global _shared
    with _shared_lock:
        _shared = ExecutorFlags(relay=relay)


def executor_flags() -> ExecutorFlags:
    """The executor's one flag client (shared by parallel steps)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = ExecutorFlags.from_environment()
        return _shared
