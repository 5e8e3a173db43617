"""Flag access from inside an executor, with the token scoped to its experiment.

The executor finds the controller and its token in the environment the agent
set. Calls retry while the controller is unreachable (it may be restarting),
so a pipeline waiting at a barrier survives a controller restart.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any
from urllib.parse import quote

import httpx

from shoal.model.flags import FlagValues

RECONNECT_FOR = 120.0


class ExecutorFlags:
    """Flag calls of one executor; remembers the last version it saw of each flag."""

    def __init__(self, endpoint: str, token: str) -> None:
        self._seen: dict[str, int] = {}
        self._seen_lock = threading.Lock()
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

    def _call(self, method: str, flag: str, suffix: str = "", **kwargs: Any) -> dict[str, Any]:
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
            data = reply.json()
            with self._seen_lock:
                self._seen[flag] = max(self._seen.get(flag, 0), int(data.get("version", 0)))
            return data

    def get(self, flag: str) -> FlagValues:
        data = self._call("GET", flag)
        return FlagValues(data["text_value"], data["int_value"])

    def set(self, flag: str, values: FlagValues) -> None:
        self._call("PUT", flag, json=values.to_dict())

    def increment(self, flag: str) -> FlagValues:
        data = self._call("POST", flag, "/increment")
        return FlagValues(data["text_value"], data["int_value"])

    def decrement(self, flag: str) -> FlagValues:
        data = self._call("POST", flag, "/decrement")
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
                "POST",
                flag,
                "/wait",
                json={**values.to_dict(), "timeout": hold, "after": after},
                timeout=hold + 30.0,
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


def warm_up() -> None:
    """Build the client at prepare time, so start does not pay for it on every node."""
    if os.environ.get("SHOAL_EXECUTOR_TOKEN") and os.environ.get("SHOAL_ENDPOINT"):
        executor_flags()


def executor_flags() -> ExecutorFlags:
    """The executor's one flag client (shared by parallel steps)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = ExecutorFlags.from_environment()
        return _shared
